#!/usr/bin/env python
"""Index types side by side: size, bytes per passage, build time, search latency, quality, and the
share of the exact twin's top 10 each approximate index finds.

    python benchmarks/bench_indexes.py --output work/bench_indexes.json
    python benchmarks/bench_indexes.py --colbert minilm --opq-m 48 96 192

SimLM: flat fp32 (exact), fp16, SQ8, OPQ (one row per ``--opq-m``) and HNSW, all from one encoding.
ColBERT: exact MaxSim over fp16 token vectors and PLAID (``--plaid-nbits``), from one encoding.
Queries are encoded once, batched, and every index of a model searches the same query vectors one
at a time, so the latency column is the index's search alone (``run_beir.py`` reports latency with
query encoding included). Build time = the shared encoding + the index's own build.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from simlm_ir.bench.systems import DenseSystem, index_label
from simlm_ir.data.datasets import load_collection
from simlm_ir.data.embedded import DEFAULT_DATASET
from simlm_ir.eval.measures import evaluate, neighbour_recall
from simlm_ir.util.io import atomic_write
from simlm_ir.util.progress import progress

MEASURES = ("nDCG@10", "RR@10", "R@100")


def timed_search(search, query_vectors: dict, k: int) -> tuple[dict, list[float]]:
    run, latencies = {}, []
    for qid, q in query_vectors.items():
        start = time.perf_counter()
        hits = search(q, k)
        latencies.append((time.perf_counter() - start) * 1000)
        run[qid] = dict(hits)
    return run, latencies


def row(name, run, latencies, qrels, size, docs, build_s, exact_run=None, note=""):
    ev = evaluate(run, qrels, MEASURES).aggregate
    return {"name": name, **ev, "bytes": size, "bytes_per_passage": size / docs, "build_s": build_s,
            "latency_ms": statistics.fmean(latencies),
            "recall@10_vs_exact": None if exact_run is None else neighbour_recall(run, exact_run, 10), "note": note}


def simlm_rows(collection, work_dir: Path, opq_ms, k: int, checkpoint: str = "simlm") -> list[dict]:
    import faiss

    from simlm_ir.index.faiss import IndexConfig, build_from_shards
    from simlm_ir.search.dense import load_index

    flat = DenseSystem("SimLM", checkpoint)
    info = flat.prepare(collection, work_dir)  # encodes (or reuses) and builds the flat index
    flat_dir = flat.searcher.index_dir
    encoder = flat.searcher.encoder
    qids = list(collection.queries)
    vectors = encoder.encode_queries([collection.queries[q] for q in qids])
    query_vectors = {q: vectors[i:i + 1] for i, q in enumerate(qids)}
    faiss.omp_set_num_threads(1)
    configs = [("SimLM flat fp32", None), ("SimLM fp16", IndexConfig("fp16")), ("SimLM SQ8", IndexConfig("sq8"))]
    configs += [(f"SimLM OPQ {m} B", IndexConfig("opq", pq_m=m)) for m in opq_ms]
    configs += [("SimLM HNSW", IndexConfig("hnsw"))]
    rows, exact_run = [], None
    for name, cfg in progress(configs, desc="SimLM index types", unit="index"):
        if cfg is None:
            index_dir, build_s = flat_dir, info.build_seconds
        else:
            index_dir = flat_dir.with_name(f"{flat_dir.name}-{index_label(cfg)}")
            stats = build_from_shards(index_dir, cfg, progress=False, vectors_dir=flat_dir)
            build_s = info.build_seconds + stats.build_seconds
        index, docids = load_index(index_dir)

        def search(q, depth, index=index, docids=docids):
            scores, ids = index.search(q, depth)
            return [(docids[i], float(s)) for s, i in zip(scores[0], ids[0]) if i != -1]

        run, lat = timed_search(search, query_vectors, k)
        size = (index_dir / "index").stat().st_size + (index_dir / "docid").stat().st_size
        rows.append(row(name, run, lat, collection.qrels, size, index.ntotal, build_s, exact_run))
        exact_run = exact_run or run
    return rows


def colbert_rows(collection, work_dir: Path, checkpoint: str, nbits: int, k: int) -> list[dict]:
    import torch

    from simlm_ir.search.colbert import ColBERTSystem

    exact = ColBERTSystem(checkpoint, engine="exact")
    exact_info = exact.prepare(collection, work_dir)
    plaid = ColBERTSystem(checkpoint, engine="plaid", nbits=nbits)
    plaid.model = exact.model
    plaid_info = plaid.prepare(collection, work_dir)
    qids = list(collection.queries)
    query_vectors = {}
    with torch.inference_mode():
        for start in range(0, len(qids), 64):
            chunk = qids[start:start + 64]
            vecs = exact.model.query_vectors(exact.model.tokenize_queries([collection.queries[q] for q in chunk]))
            query_vectors.update({q: vecs[i].float().numpy() for i, q in enumerate(chunk)})
    docs = exact.index.meta["docs"]
    untrained = "" if exact.model.trained_projection else "untrained projection"
    run, lat = timed_search(exact.index.search, query_vectors, k)
    rows = [row("ColBERT exact fp16", run, lat, collection.qrels, exact_info.size_bytes, docs,
                exact_info.build_seconds, note=untrained)]
    prun, plat = timed_search(plaid.index.search, query_vectors, k)
    rows.append(row(f"ColBERT PLAID {nbits}-bit", prun, plat, collection.qrels, plaid_info.size_bytes, docs,
                    plaid_info.build_seconds, run, note=untrained))
    rows[-1]["parts"] = plaid.index.meta["bytes"]
    rows[-1]["tokens"] = plaid.index.meta["tokens"]
    rows[-1]["centroids"] = plaid.index.meta["centroids"]
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| index | nDCG@10 | RR@10 | R@100 | top-10 of exact found | size | B/passage | build s | "
             "search ms/q |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rec = "exact" if r["recall@10_vs_exact"] is None else f"{r['recall@10_vs_exact']:.3f}"
        name = f"{r['name']} ({r['note']})" if r.get("note") else r["name"]
        lines.append(f"| {name} | {r['nDCG@10']:.4f} | {r['RR@10']:.4f} | {r['R@100']:.4f} | {rec} | "
                     f"{r['bytes'] / 1e6:.2f} MB | {r['bytes_per_passage']:,.0f} | {r['build_s']:.1f} | "
                     f"{r['latency_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=DEFAULT_DATASET)
    ap.add_argument("--simlm", default="simlm", help="SimLM checkpoint (default: %(default)s)")
    ap.add_argument("--colbert", default="colbert", help="ColBERT checkpoint; 'none' skips ColBERT")
    ap.add_argument("--plaid-nbits", type=int, default=2, choices=(1, 2, 4))
    ap.add_argument("--opq-m", type=int, nargs="*", default=[48, 96, 192],
                    help="OPQ code sizes in bytes (none: no OPQ rows)")
    ap.add_argument("--hits", type=int, default=100)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--output", default=None, help="JSON file for the rows")
    ap.add_argument("--no-simlm", action="store_true")
    args = ap.parse_args(argv)
    collection = load_collection(args.dataset)
    rows = [] if args.no_simlm else simlm_rows(collection, Path(args.work_dir), args.opq_m, args.hits, args.simlm)
    if args.colbert != "none":
        rows += colbert_rows(collection, Path(args.work_dir), args.colbert, args.plaid_nbits, args.hits)
    table = markdown(rows)
    print(f"{collection.dataset_id}: {len(collection.qrels)} judged queries\n\n{table}")
    if args.output:
        with atomic_write(args.output) as fh:
            json.dump({"dataset": collection.dataset_id, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
