#!/usr/bin/env python
"""The two costs that dominated a first ``make run``, old way vs new way, side by side on the same text.

    python benchmarks/bench_first_run.py --passages 512 --queries 24 --rounds 2

1. the MiniLM row's passage encoding: Pyserini's ``AutoDocumentEncoder`` (batches of 64 in corpus
   order, autograd on) vs our ``MeanPoolingEncoder`` (length-sorted, token-budgeted batches,
   inference mode), on the first ``--passages`` passages of ``debian-known-item``;
2. re-ranking BM25's top ``--depth``: one query at a time (``CrossEncoder.rerank``, as before) vs
   all pairs in length-sorted batches across queries (``simlm_ir.search.rerank.rerank_run``, no
   cache), on the first ``--queries`` test queries.

Each pair of measurements alternates old/new ``--rounds`` times in one process, so both see the same
machine load (ours is shared); the table gives each one's best round and the ratio. Vectors and
scores are compared too (max abs difference), so the speed-up is not bought with other numbers.

``--bf16`` adds a third measurement of the new way under bfloat16 autocast (what the next speed-up
would cost in numbers: on CPUs with AMX, lscpu's amx_bf16, bf16 matrix products run several times
faster), with its max abs difference from fp32 and, for re-ranking, the share of queries whose
re-ranked order is unchanged. The benchmark's rows stay fp32.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np


def best_of(fn, rounds: int):
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=512)
    ap.add_argument("--queries", type=int, default=24)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time the new way under bfloat16 autocast")
    args = ap.parse_args(argv)
    import torch

    from simlm_ir.util.device import autocast

    def bf16(fn):
        def run():
            with autocast(torch.device("cpu"), bf16=True):
                return fn()
        return run

    from simlm_ir.bench.systems import BM25System
    from simlm_ir.data.datasets import load_collection
    from simlm_ir.encode.mean_pooling import MeanPoolingEncoder, PyseriniMeanPoolingEncoder
    from simlm_ir.modeling.reranker import CrossEncoder
    from simlm_ir.search.rerank import rerank_run

    test = load_collection("debian-known-item/test")
    passages = list(itertools.islice(test.passages(), args.passages))
    texts, titles = [p.text for p in passages], [p.title for p in passages]
    old_enc, new_enc = PyseriniMeanPoolingEncoder("minilm"), MeanPoolingEncoder("minilm")
    rows = []
    t_old = t_new = 0.0
    for _ in range(args.rounds):  # alternate, so load changes hit both
        a, va = best_of(lambda: old_enc.encode_passages(texts, titles), 1)
        b, vb = best_of(lambda: new_enc.encode_passages(texts, titles), 1)
        t_old, t_new = (a if not t_old else min(t_old, a)), (b if not t_new else min(t_new, b))
    rows.append((f"MiniLM encoding, {len(texts)} passages", t_old, t_new, float(np.abs(va - vb).max()),
                 f"{len(texts) / t_old:.1f} / {len(texts) / t_new:.1f} passages/s"))
    if args.bf16:
        t_bf, vc = best_of(bf16(lambda: new_enc.encode_passages(texts, titles)), args.rounds)
        rows.append((f"MiniLM encoding, {len(texts)} passages, fp32 -> bf16 autocast", t_new, t_bf,
                     float(np.abs(np.asarray(vc, dtype=np.float32) - vb).max()),
                     f"{len(texts) / t_new:.1f} / {len(texts) / t_bf:.1f} passages/s"))

    import tempfile
    from pathlib import Path

    bm25 = BM25System()
    with tempfile.TemporaryDirectory() as work:
        bm25.prepare(test, Path(work))
        queries = dict(itertools.islice(test.queries.items(), args.queries))
        run = bm25.search(queries, args.depth).run
    docs = {p.id: (p.title, p.text) for p in test.passages()}
    ce = CrossEncoder("reranker-default")
    t_old = t_new = 0.0
    for _ in range(args.rounds):
        a, (ra, _) = best_of(lambda: ce.rerank(run, queries, docs, args.depth), 1)
        b, (rb, _) = best_of(lambda: rerank_run(ce, run, queries, docs, args.depth, cache=None), 1)
        t_old, t_new = (a if not t_old else min(t_old, a)), (b if not t_new else min(t_new, b))
    diff = max(abs(ra[q][d] - rb[q][d]) for q in ra for d in ra[q])
    pairs = sum(len(v) for v in ra.values())
    rows.append((f"re-ranking, {len(queries)} queries x top {args.depth}", t_old, t_new, diff,
                 f"{1000 * t_old / pairs:.1f} / {1000 * t_new / pairs:.1f} ms per pair"))
    if args.bf16:
        t_bf, (rc, _) = best_of(bf16(lambda: rerank_run(ce, run, queries, docs, args.depth, cache=None)), args.rounds)
        same = np.mean([sorted(rb[q], key=lambda d: -rb[q][d]) == sorted(rc[q], key=lambda d: -rc[q][d]) for q in rb])
        rows.append((f"re-ranking, fp32 -> bf16 autocast ({same:.0%} of queries keep their order)", t_new, t_bf,
                     max(abs(rb[q][d] - rc[q][d]) for q in rb for d in rb[q]),
                     f"{1000 * t_new / pairs:.1f} / {1000 * t_bf / pairs:.1f} ms per pair"))

    print("\n| step | before (s) | after (s) | speed-up | max abs diff | rate before / after |")
    print("|---|---|---|---|---|---|")
    for name, old, new, d, rate in rows:
        print(f"| {name} | {old:.1f} | {new:.1f} | {old / new:.2f}x | {d:.1e} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
