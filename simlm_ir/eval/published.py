"""Published reference numbers (SimLM, DPR, ColBERTv2, Pyserini BEIR), shown beside our tables.

Values are on the 0-1 scale of our ir-measures names. They were measured by others on the full
public collections and are printed in their own table, never mixed with measured rows. NQ's
"R@k" in these papers is DPR's top-k answer accuracy, our ``Success@k`` with answer-match qrels.
"""

from __future__ import annotations

from simlm_ir.eval.leaderboard import PublishedRow

SIMLM = "SimLM paper (Wang et al., ACL 2023)"
PYSERINI_BEIR = "Pyserini BEIR regressions (BM25 flat)"
COLBERTV2 = "ColBERTv2 paper (Santhanam et al., NAACL 2022)"

MSMARCO_DEV = [
    PublishedRow("BM25", {"RR@10": 0.185, "R@50": 0.585, "R@1000": 0.857}, SIMLM),
    PublishedRow("coCondenser", {"RR@10": 0.382, "R@50": 0.865, "R@1000": 0.984}, SIMLM),
    PublishedRow("ColBERTv2", {"RR@10": 0.397, "R@50": 0.868, "R@1000": 0.984}, SIMLM),
    PublishedRow("SimLM (distilled)", {"RR@10": 0.411, "R@50": 0.878, "R@1000": 0.987}, SIMLM),
    PublishedRow("SimLM re-ranker", {"RR@10": 0.438, "R@50": 0.892, "R@1000": 0.986}, SIMLM),
]
TREC_DL = {
    "2019": [("BM25", 0.512), ("coCondenser", 0.717), ("SimLM (distilled)", 0.714), ("SimLM re-ranker", 0.746)],
    "2020": [("BM25", 0.477), ("coCondenser", 0.684), ("SimLM (distilled)", 0.697), ("SimLM re-ranker", 0.727)],
}
NQ_TEST = [
    PublishedRow(name, {"Success@20": r20, "Success@100": r100}, SIMLM)
    for name, r20, r100 in (("BM25", 0.591, 0.737), ("DPR", 0.784, 0.854), ("coCondenser", 0.843, 0.890),
                            ("SimLM", 0.852, 0.897))
]
BEIR_NDCG10 = {  # dataset -> (BM25 flat, ColBERTv2)
    "scifact": (0.679, 0.693), "nfcorpus": (0.322, 0.338), "arguana": (0.397, 0.463), "fiqa": (0.236, 0.356),
    "scidocs": (0.149, 0.154), "trec-covid": (0.595, 0.738), "quora": (0.789, 0.852),
}


def beir_name(dataset_id: str) -> str | None:
    """``beir/scifact/test`` -> ``scifact``; None for a non-BEIR id."""
    parts = dataset_id.split("/")
    return parts[1] if parts[0] == "beir" and len(parts) >= 2 else None


def published_rows(dataset_id: str) -> list[PublishedRow]:
    """The published rows for an evaluation split, or [] when we know none."""
    if dataset_id in ("msmarco-passage/dev/small", "msmarco-passage/dev"):
        return list(MSMARCO_DEV)
    for year, rows in TREC_DL.items():
        if dataset_id.startswith(f"msmarco-passage/trec-dl-{year}"):
            return [PublishedRow(name, {"nDCG@10": v}, SIMLM) for name, v in rows]
    if dataset_id in ("nq-test", "dpr-w100/natural-questions/test"):
        return list(NQ_TEST)
    name = beir_name(dataset_id)
    if name in BEIR_NDCG10 and dataset_id.rstrip("/").split("/")[-1] in (name, "test"):
        bm25, colbert = BEIR_NDCG10[name]
        return [PublishedRow("BM25 flat", {"nDCG@10": bm25}, PYSERINI_BEIR),
                PublishedRow("ColBERTv2", {"nDCG@10": colbert}, COLBERTV2)]
    return []


def leaderboard_with_published(dataset_id: str, results, measures, out_dir, title: str | None = None) -> str:
    """Rewrite a collection's leaderboard with its published table under the measured one (when
    we know published numbers for it); returns the Markdown."""
    from pathlib import Path

    from simlm_ir.eval.leaderboard import to_markdown, write_leaderboard

    if title is None:
        judged = len(next(iter(results[0].evaluation.per_query.values()), {})) if results else 0
        title = f"{dataset_id}: {judged} judged queries"  # run_benchmark's title
    rows = published_rows(dataset_id)
    write_leaderboard(results, measures, Path(out_dir), title, rows)
    return to_markdown(results, measures, title, rows)

# SimLM paper, Table 6: MS MARCO dev MRR@10 after fine-tuning with BM25 negatives, by pre-training.
SIMLM_PRETRAINING_ABLATION = [
    ("BERT-base (no further pre-training)", 33.7), ("Condenser", 36.9), ("Enc-Dec MLM", 37.7),
    ("SimLM RLM 30%/50%", 38.0), ("RLM 15%/15%", 37.6), ("RLM 30%/100%", 36.6)]
