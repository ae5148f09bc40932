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

``--cls-only`` compares the full last layer with the last layer computed for [CLS] alone
(``simlm_ir.modeling.cls_only``, what SimLM encoding and re-ranking use): SimLM encoding of the same
passages and re-ranking of the same pairs, each way, with the max abs difference of the vectors
and logits. ``--plaid`` times the two steps of the PLAID build that ``simlm_ir.index.plaid`` swaps
on CPU, on the shipped ColBERT's token vectors of the same passages: PyLate's k-means (fastkmeans)
vs colbert-ai's ``faiss.Kmeans``, and colbert-ai's nearest-centroid codes vs ours (which must be
identical).
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


def alternate(before, after, rounds: int):
    """Best time and last output of each of two functions, run alternately ``rounds`` times."""
    times, outs = ([], []), [None, None]
    for _ in range(rounds):
        for i, fn in enumerate((before, after)):
            t, outs[i] = best_of(fn, 1)
            times[i].append(t)
    return min(times[0]), min(times[1]), outs[0], outs[1]


def cls_only_rows(texts, titles, ce, run, queries, docs, args) -> list[tuple]:
    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.search.rerank import rerank_run

    enc = SimLMEncoder("simlm")

    def encode(cls_only):
        def go():
            enc.cls_only = cls_only
            return enc.encode_passages(texts, titles)
        return go

    def rerank(cls_only):
        def go():
            ce.cls_only = cls_only
            return rerank_run(ce, run, queries, docs, args.depth, cache=None)[0]
        return go

    t_full, t_cls, v_full, v_cls = alternate(encode(False), encode(True), args.rounds)
    r_full_t, r_cls_t, r_full, r_cls = alternate(rerank(False), rerank(True), args.rounds)
    pairs = sum(len(v) for v in r_full.values())
    same = np.mean([sorted(r_full[q], key=lambda d: -r_full[q][d]) == sorted(r_cls[q], key=lambda d: -r_cls[q][d])
                    for q in r_full])
    return [(f"SimLM encoding, {len(texts)} passages, full last layer -> [CLS] only", t_full, t_cls,
             float(np.abs(v_full - v_cls).max()), f"{len(texts) / t_full:.1f} / {len(texts) / t_cls:.1f} passages/s"),
            (f"re-ranking, full last layer -> [CLS] only ({same:.0%} of queries keep their order)", r_full_t, r_cls_t,
             max(abs(r_full[q][d] - r_cls[q][d]) for q in r_full for d in r_full[q]),
             f"{1000 * r_full_t / pairs:.1f} / {1000 * r_cls_t / pairs:.1f} ms per pair")]


def plaid_rows(passages, rounds: int) -> list[tuple]:
    import faiss
    import torch

    from simlm_ir.index.plaid import load_plaid, nearest_centroids
    from simlm_ir.modeling.colbert import ColBERT

    load_plaid()
    import fastkmeans
    from pylate.indexes.stanford_nlp.indexing.codecs.residual import ResidualCodec

    model = ColBERT.from_pretrained("colbert")
    vecs, _ = model.encode_docs([f"{p.title}\n{p.text}" if p.title else p.text for p in passages])
    sample = np.ascontiguousarray(vecs, dtype=np.float32)
    k = 2 ** int(np.floor(np.log2(16 * np.sqrt(len(sample)))))  # colbert-ai's number of centroids
    dim = sample.shape[1]

    def fast_kmeans():
        km = fastkmeans.FastKMeans(dim, k, niter=4, gpu=False, seed=42, max_points_per_centroid=256)
        km.train(sample)
        return km.centroids

    def faiss_kmeans():
        km = faiss.Kmeans(dim, k, niter=4, gpu=False, seed=123)
        km.train(sample)
        return km.centroids

    t_fast, t_faiss, _, centroids = alternate(fast_kmeans, faiss_kmeans, rounds)
    codec = ResidualCodec.__new__(ResidualCodec)
    codec.use_gpu = False
    codec.centroids = torch.nn.functional.normalize(torch.from_numpy(centroids), dim=-1)
    embs = torch.from_numpy(sample)
    t_theirs, t_ours, theirs, ours = alternate(lambda: ResidualCodec.compress_into_codes(codec, embs, "cpu"),
                                               lambda: nearest_centroids(codec.centroids, embs), rounds)
    return [(f"PLAID k-means, {len(sample):,} token vectors -> {k:,} centroids: fastkmeans -> faiss",
             t_fast, t_faiss, float("nan"), "different seeds and algorithms; diff not comparable"),
            (f"PLAID codes, {len(sample):,} vectors x {k:,} centroids: colbert-ai -> blocked argmax",
             t_theirs, t_ours, float((theirs != ours).sum()), "diff = codes that differ")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=512)
    ap.add_argument("--queries", type=int, default=24)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="also time the new way under bfloat16 autocast")
    ap.add_argument("--cls-only", action="store_true",
                    help="also time SimLM encoding and re-ranking with the full last layer vs [CLS] only")
    ap.add_argument("--plaid", action="store_true",
                    help="also time PLAID's k-means and code assignment, PyLate's CPU path vs ours")
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

    if args.cls_only:
        rows += cls_only_rows(texts, titles, ce, run, queries, docs, args)
    if args.plaid:
        rows += plaid_rows(passages, args.rounds)

    print("\n| step | before (s) | after (s) | speed-up | max abs diff | rate before / after |")
    print("|---|---|---|---|---|---|")
    for name, old, new, d, rate in rows:
        print(f"| {name} | {old:.1f} | {new:.1f} | {old / new:.2f}x | {d:.1e} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
