"""The late-interaction and hybrid baselines in a benchmark lineup, by short name.

``colbert`` adds :class:`~simlm_ir.search.colbert.ColBERTSystem` with exact MaxSim over fp16 token vectors,
``colbert-plaid`` the same model over ColBERTv2's compressed PLAID index; ``hybrid`` and ``rrf`` fuse the lineup's
SimLM and BM25 rows, ``lucene-hybrid`` its SimLM (Lucene HNSW) and BM25 rows
(:class:`~simlm_ir.search.fusion.FusionSystem`), whose searches are then shared with their own rows.
Missing pieces skip a system with a one-line message, as
:func:`simlm_ir.bench.systems.build_systems` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from simlm_ir.errors import SimLMIRError
from simlm_ir.search.fusion import DEFAULT_ALPHA_GRID, FusionSystem
from simlm_ir.search.run_cache import cached

BASELINE_CHOICES = ("colbert", "colbert-plaid", "hybrid", "rrf", "lucene-hybrid")
LUCENE_HNSW_ROW = "SimLM (Lucene HNSW)"  # simlm_ir.bench.lucene's name for the lucene-hnsw system
DEFAULT_COLBERT = "colbert"  # the shipped checkpoint (simlm_ir/resources/colbert-default) if there is one,
LOCAL_COLBERT = "work/colbert-default"  # else one trained here with COLBERT_TRAIN_COMMAND
COLBERT_TRAIN_COMMAND = (f"python -m simlm_ir.train.colbert --train-file work/default/bm25_negs.jsonl "
                         f"--output {LOCAL_COLBERT}")
AUTO = "auto"


def default_tune_split(dataset_id: str) -> str | None:
    """A held-out split to tune fusion weights on: ``.../test`` -> ``.../dev`` when ir_datasets
    knows it; TREC DL -> MS MARCO dev/small; otherwise None."""
    import ir_datasets

    from simlm_ir.data import embedded

    if dataset_id.startswith("msmarco-passage/trec-dl-"):
        return "msmarco-passage/dev/small"
    if dataset_id.endswith("/test"):
        embedded.register()
        candidate = dataset_id[: -len("/test")] + "/dev"
        if candidate in ir_datasets.registry:
            return candidate
    return None


def tune_spec(value):
    """``--tune-on`` as given (one value or a list of them) -> AUTO, None, a dataset id, a collection
    object, or a list [TOPICS, QRELS] (resolved against the evaluated corpus by the benchmark job)."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return value[0]
        if len(value) != 2:
            raise SimLMIRError(f"--tune-on takes a dataset id, a BEIR directory, or TOPICS QRELS; got {list(value)}")
    return value


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags every benchmark script shares: BM25 parameters, threads and output/cache dirs."""
    ap.add_argument("--k1", type=float, default=0.9, help="BM25 k1")
    ap.add_argument("--b", type=float, default=0.4, help="BM25 b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs", help="where runs and leaderboards go")
    ap.add_argument("--work-dir", default="work", help="cache for indexes")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("ColBERT and hybrid baselines")
    g.add_argument("--colbert", default=DEFAULT_COLBERT, metavar="CHECKPOINT",
                   help="ColBERT checkpoint: ours (python -m simlm_ir.train.colbert) or a ColBERTv2 dir/hub id "
                        "(default: %(default)s, the shipped one)")
    g.add_argument("--plaid-nbits", type=int, default=2, choices=(1, 2, 4),
                   help="bits per dimension of the PLAID index's residuals (default: %(default)s, ColBERTv2's)")
    g.add_argument("--alpha", type=float, default=None,
                   help="fixed hybrid weight of BM25 (SimLM + alpha x BM25, normalised); default: tuned")
    g.add_argument("--tune-on", nargs="+", default=AUTO, metavar="DATASET | TOPICS QRELS",
                   help="held-out queries to tune alpha on: an ir_datasets id, a BEIR directory (its qrels/dev.tsv), "
                        "or your dev topics and qrels files over the same corpus (default: the collection's dev "
                        "split when it has one)")
    g.add_argument("--alpha-grid", type=float, nargs="+", default=list(DEFAULT_ALPHA_GRID))
    g.add_argument("--fusion-depth", type=int, default=1000, help="documents per component run (Pyserini's k0)")


def extend_systems(systems: list, names, dataset_id: str, colbert: str = DEFAULT_COLBERT,
                   alpha: float | None = None, tune_on: str | None = AUTO, measure: str = "RR@10",
                   grid=DEFAULT_ALPHA_GRID, depth: int = 1000, say: Callable[[str], None] = print,
                   plaid_nbits: int = 2) -> list:
    """``systems`` plus the baselines named in ``names`` (in place; also returned)."""
    engines = [e for n, e in (("colbert", "exact"), ("colbert-plaid", "plaid")) if n in names]
    if engines:
        from simlm_ir.errors import CheckpointError
        from simlm_ir.modeling.checkpoints import resolve_checkpoint
        from simlm_ir.search.colbert import ColBERTSystem

        try:
            resolve_checkpoint(colbert)
        except CheckpointError as exc:
            if colbert == DEFAULT_COLBERT and Path(LOCAL_COLBERT, "config.json").exists():
                colbert = LOCAL_COLBERT
            else:
                extra = (f"; e.g. `{COLBERT_TRAIN_COMMAND}`"
                         if colbert == DEFAULT_COLBERT and COLBERT_TRAIN_COMMAND not in str(exc) else "")
                say(f"skipping ColBERT: {exc}{extra}")
                engines = []
        if "plaid" in engines:
            from simlm_ir.index.plaid import PLAIDUnavailableError, load_plaid

            try:
                load_plaid()
            except PLAIDUnavailableError as exc:
                say(f"skipping ColBERT PLAID: {exc}")
                engines.remove("plaid")
        for engine in engines:
            systems.append(ColBERTSystem(colbert, engine=engine, nbits=plaid_nbits))
        if engines == ["exact", "plaid"]:
            systems[-1].exact_twin = systems[-2].name
    _extend_fusions(systems, names, dataset_id, alpha, tune_on, measure, grid, depth, say)
    if "lucene-hybrid" in names:
        _add_lucene_hybrid(systems, dataset_id, alpha, tune_on, measure, grid, depth, say)
    return systems


def _extend_fusions(systems: list, names, dataset_id: str, alpha, tune_on, measure, grid, depth, say) -> None:
    """The SimLM (FAISS) + BM25 hybrid and RRF rows."""
    wanted = [n for n in ("hybrid", "rrf") if n in names]
    if not wanted:
        return
    index = {s.name: i for i, s in enumerate(systems)}
    if "SimLM" not in index or "BM25" not in index:
        say(f"skipping {' and '.join(wanted)}: they fuse the SimLM and BM25 systems; run both")
        return
    for name in ("SimLM", "BM25"):  # the fusions and the systems' own rows share one search each
        systems[index[name]] = cached(systems[index[name]])
    dense, sparse = systems[index["SimLM"]], systems[index["BM25"]]
    if "hybrid" in wanted:
        split = _tuning_split(tune_on, dataset_id)
        if alpha is None and split is None:
            say(f"skipping hybrid: no held-out split known for {dataset_id}; "
                "pass --alpha or --tune-on (a dataset, or dev TOPICS QRELS)")
        else:
            systems.append(FusionSystem(dense, sparse, "interpolation", alpha=alpha, tune_on=split, grid=grid,
                                        measure=measure, depth=depth))
    if "rrf" in wanted:
        systems.append(FusionSystem(dense, sparse, "rrf", depth=depth))


def _tuning_split(tune_on, dataset_id: str):
    """The held-out dataset a hybrid's alpha is tuned on (None: none known)."""
    split = tune_spec(tune_on)
    split = default_tune_split(dataset_id) if split == AUTO else split
    if isinstance(split, (list, tuple)):
        raise SimLMIRError("--tune-on TOPICS QRELS is for file collections (benchmarks/run_beir.py --corpus or a "
                           "BEIR directory); give a dataset id here")
    return split


def _add_lucene_hybrid(systems: list, dataset_id: str, alpha, tune_on, measure, grid, depth, say) -> None:
    """SimLM (Lucene HNSW) + BM25 interpolated: both indexes are Lucene indexes searched by Anserini."""
    index = {s.name: i for i, s in enumerate(systems)}
    if LUCENE_HNSW_ROW not in index or "BM25" not in index:
        say("skipping lucene-hybrid: it fuses the lucene-hnsw and BM25 systems; run both")
        return
    split = _tuning_split(tune_on, dataset_id)
    if alpha is None and split is None:
        say(f"skipping lucene-hybrid: no held-out split known for {dataset_id}; "
            "pass --alpha or --tune-on (a dataset, or dev TOPICS QRELS)")
        return
    for name in (LUCENE_HNSW_ROW, "BM25"):
        systems[index[name]] = cached(systems[index[name]])
    systems.append(FusionSystem(systems[index[LUCENE_HNSW_ROW]], systems[index["BM25"]], "interpolation",
                                alpha=alpha, tune_on=split, grid=grid, measure=measure, depth=depth,
                                note="both served by Lucene (Anserini)"))
