#!/usr/bin/env python
"""How encoding, index building and search grow with corpus size (default 1k, 10k, 100k passages).

For each size, one fresh process encodes the corpus with our sharded index builder (streaming: a
2,048-passage chunk at a time) and reports its peak RSS, then builds flat and HNSW indexes from the
shards and times single queries (search only, top 100; query encoding is reported separately as it
does not depend on the corpus). Growth exponents k (time ~ n^k) are least-squares fits on log-log;
the 8.8M-passage (MS MARCO) column extrapolates them: an extrapolation, not a measurement.

Encoders: the README's model (the shipped SimLM if built, else MiniLM: both 6 layers x 384) encodes
the sizes a CPU gets through in the time budget (``--full-max``: 10,000 on CPU, every size on a
GPU). Every size is also run with that model cut to its first 2 layers (same tokenizer, embeddings
and 384-dim vectors, ~3x faster): those rows carry the 100k point and the growth fits, and their
10k row against the full model's gives the ratio that scales the full model's encode time.

Real text only: the passages are paragraphs of Debian 12 package descriptions (``--debian-docs``:
the full 60,631-description source of the embedded collection when present, else the embedded
4,995), de-duplicated, topped up with paragraphs of docstrings of installed Python code (the standard
library, then numpy's and torch's) as far as needed; one deterministic shuffle, so every size is a
prefix of the next with the same length mix. Queries: the embedded collection's 508 test synopses.

    python benchmarks/bench_scale.py --output work/scale/bench_scale.json   # ~12 min on 2 CPU cores
    python benchmarks/bench_scale.py --sizes 1000 10000 --encoder minilm --full-max 10000

``--device auto`` (the default) uses a GPU when there is one (and then encodes every size with the
full model).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from simlm_ir.data.corpus import NO_TITLE, Passage, write_jsonl_corpus
from simlm_ir.data.datasets import corpus_key, iter_passages

DEBIAN_DOCS = Path("/tmp/irdata/debian-packages/docs.jsonl")  # where make_debian_collection.py puts it
MSMARCO_PASSAGES = 8_841_823
MIN_WORDS = 5


# -- corpus -----------------------------------------------------------------------------------

def _paragraphs(text: str, min_words: int) -> list[str]:
    # Debian long descriptions separate paragraphs with a blank (or " .") line
    paras = (" ".join(p.split()) for p in re.split(r"\n\s*\.?\s*\n", text))
    return [p for p in paras if len(p.split()) >= min_words]


def _docstring_paragraphs(package_root: Path, skip=("test", "tests", "idlelib", "lib2to3", "turtledemo",
                                                    "site-packages")):
    """(id, paragraph) from module/class/function docstrings, read with ``ast`` (nothing imported)."""
    for f in sorted(package_root.rglob("*.py")):
        rel = f.relative_to(package_root)
        if any(part in skip for part in rel.parts[:-1]):
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, kinds)]
        for node in nodes:
            doc = ast.get_docstring(node) or ""
            for k, para in enumerate(re.split(r"\n\s*\n", doc)):
                para = " ".join(para.split())
                if len(para.split()) >= 8 and ">>>" not in para and "---" not in para:
                    yield f"py:{rel.with_suffix('')}:{getattr(node, 'name', '')}#{k}", para


def real_text_pool(debian_docs: Path | None, need: int, seed: int) -> tuple[list[Passage], dict]:
    """At least ``need`` distinct real-text passages (if they exist), shuffled; and where they came from."""
    seen: set[str] = set()
    pool: list[Passage] = []
    sources: dict[str, int] = {}

    ids: set[str] = set()

    def add(source: str, pid: str, text: str) -> None:
        if text not in seen:
            seen.add(text)
            while pid in ids:  # the Debian source repeats a few package names (e.g. default-jre)
                pid += "+"
            ids.add(pid)
            pool.append(Passage(pid, NO_TITLE, text))
            sources[source] = sources.get(source, 0) + 1

    if debian_docs is not None and debian_docs.exists():
        label = f"Debian description paragraphs ({debian_docs})"
        with open(debian_docs, encoding="utf-8") as fh:
            for line in fh:
                doc = json.loads(line)
                for k, para in enumerate(_paragraphs(doc["text"], MIN_WORDS)):
                    add(label, f"{doc['doc_id']}#{k}", para)
    else:
        label = "Debian description paragraphs (embedded debian-known-item sample)"
        for p in iter_passages("debian-known-item"):
            for k, para in enumerate(_paragraphs(p.text, MIN_WORDS)):
                add(label, f"{p.id}#{k}", para)
    extra = [("Python standard library docstrings", Path(sysconfig.get_paths()["stdlib"]))]
    for name in ("numpy", "torch"):  # installed with this project; read as text, never imported
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            extra.append((f"{name} docstrings", Path(list(spec.submodule_search_locations)[0])))
    for label, root in extra:
        for pid, para in _docstring_paragraphs(root):
            if len(pool) >= need:
                break
            add(label, pid, para)
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order], sources


# -- one size, in its own process -------------------------------------------------------------

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(a) -> dict:
    """Encode ``a.corpus``, build flat + HNSW from the shards, time queries; print one JSON line."""
    import faiss
    import torch

    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.index.faiss import IndexConfig, build_from_shards, encode_shard
    from simlm_ir.search.dense import DenseSearcher

    if a.threads:
        torch.set_num_threads(a.threads)
    encoder = SimLMEncoder(a.encoder, device=a.device, batch_size=a.batch_size)
    n = sum(1 for _ in open(a.corpus, encoding="utf-8"))
    out = {"n": n, "device": str(encoder.device), "torch_threads": torch.get_num_threads(),
           "rss_after_model_load_mb": _peak_rss_mb()}
    t0 = time.perf_counter()
    encode_shard(iter_passages(a.corpus), encoder, a.index_dir, corpus_key=corpus_key(a.corpus), progress=False)
    out["encode_s"] = time.perf_counter() - t0
    out["peak_rss_encode_mb"] = _peak_rss_mb()  # high-water mark of this process so far: model + encoding

    queries = [line.split("\t", 1)[1].strip() for line in Path(a.queries).read_text(encoding="utf-8").splitlines()]
    qtimes = []
    for q in queries[:200]:
        t = time.perf_counter()
        encoder.encode_queries([q])
        qtimes.append(time.perf_counter() - t)
    out["query_encode_ms_p50"] = float(np.percentile(qtimes, 50) * 1e3)
    qvecs = encoder.encode_queries(queries)

    top_flat = None
    for kind in ("flat", "hnsw"):
        faiss.omp_set_num_threads(a.threads or os.cpu_count())
        t = time.perf_counter()
        stats = build_from_shards(a.index_dir, IndexConfig(kind), progress=False)
        out[f"{kind}_build_s"] = time.perf_counter() - t
        out[f"{kind}_bytes"] = stats.index_bytes
        searcher = DenseSearcher(a.index_dir, encoder, threads=a.search_threads)
        searcher.search_vectors(qvecs[:5], k=100)  # warm-up
        times, tops = [], []
        for v in qvecs:
            t = time.perf_counter()
            hits = searcher.search_vectors(v[None, :], k=100)[0]
            times.append(time.perf_counter() - t)
            tops.append({h.docid for h in hits})
        out[f"{kind}_search_ms_p50"] = float(np.percentile(times, 50) * 1e3)
        out[f"{kind}_search_ms_p95"] = float(np.percentile(times, 95) * 1e3)
        if kind == "flat":
            top_flat = tops
        else:
            recalls = [len(h & f) / max(1, len(f)) for h, f in zip(tops, top_flat)]
            out["hnsw_recall100_vs_flat"] = float(np.mean(recalls))
        del searcher
    out["peak_rss_total_mb"] = _peak_rss_mb()
    return out


def run_worker(corpus: Path, index_dir: Path, queries: Path, a) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--corpus", str(corpus), "--index-dir", str(index_dir),
           "--queries", str(queries), "--encoder", a.encoder, "--device", a.device,
           "--batch-size", str(a.batch_size), "--search-threads", str(a.search_threads)]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker for {corpus} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the smaller encoder -----------------------------------------------------------------------

def truncated_encoder(src: str, layers: int, out_dir: Path) -> Path:
    """``src`` cut to its first ``layers`` Transformer layers (same tokenizer, embeddings and width):
    a smaller encoder whose vectors have the same dimension, for sizes the full one cannot reach in
    the time budget on CPU."""
    if (out_dir / "config.json").exists():
        return out_dir
    from transformers import AutoModel, AutoTokenizer

    from simlm_ir.encode.encoder import strip_simlm_prefix
    from simlm_ir.modeling.checkpoints import resolve_checkpoint

    path = resolve_checkpoint(strip_simlm_prefix(src))
    model = AutoModel.from_pretrained(path)
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(path).save_pretrained(tmp)
    os.replace(tmp, out_dir)
    return out_dir


# -- fits and report --------------------------------------------------------------------------

def fit_power(ns, ys) -> tuple[float, float]:
    """(k, c) of y = c * n^k by least squares on log-log."""
    k, logc = np.polyfit(np.log(ns), np.log(ys), 1)
    return float(k), float(np.exp(logc))


COLUMNS = [  # (key, header, format)
    ("encode_s", "encode s", "{:.1f}"),
    ("passages_per_s", "psg/s", "{:.0f}"),
    ("peak_rss_encode_mb", "peak RSS encode MB", "{:.0f}"),
    ("peak_rss_total_mb", "peak RSS +indexes+search MB", "{:.0f}"),
    ("flat_build_s", "flat build s", "{:.2f}"),
    ("hnsw_build_s", "HNSW build s", "{:.1f}"),
    ("flat_bytes", "flat MB", "{:.1f}"),
    ("hnsw_bytes", "HNSW MB", "{:.1f}"),
    ("flat_search_ms_p50", "flat p50 ms", "{:.2f}"),
    ("flat_search_ms_p95", "flat p95 ms", "{:.2f}"),
    ("hnsw_search_ms_p50", "HNSW p50 ms", "{:.3f}"),
    ("hnsw_search_ms_p95", "HNSW p95 ms", "{:.3f}"),
    ("hnsw_recall100_vs_flat", "HNSW R@100 vs flat", "{:.3f}"),
]
# Not "peak_rss_total_mb": it is a constant plus the index, which a power law fits badly.
FITTED = ["encode_s", "peak_rss_encode_mb", "flat_build_s", "hnsw_build_s", "flat_bytes",
          "hnsw_bytes", "flat_search_ms_p50", "flat_search_ms_p95", "hnsw_search_ms_p50", "hnsw_search_ms_p95"]


def _cell(key: str, value) -> str:
    fmt = dict((k, f) for k, _, f in COLUMNS)[key]
    if key.endswith("_bytes"):
        value = value / 1e6
    return fmt.format(value)


def _human(key: str, value: float) -> str:
    """Extrapolated values in readable units."""
    if key.endswith("_s"):
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        return f"{value / 60:.1f} min" if value >= 60 else f"{value:.1f} s"
    if key.endswith("_bytes"):
        return f"{value / 1e9:.1f} GB" if value >= 1e9 else f"{value / 1e6:.0f} MB"
    if key.endswith("_mb"):
        return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.0f} MB"
    return f"{value:.2f} ms" if value >= 0.1 else f"{value:.3f} ms"


def table(rows: list[dict]) -> str:
    lines = ["| passages | encoder | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = " | ".join(_cell(k, r[k]) for k, _, _ in COLUMNS)
        lines.append(f"| {r['n']:,} | {r['encoder_label']} | {cells} |")
    return "\n".join(lines)


def fits(rows: list[dict], target: int) -> tuple[str, dict]:
    """Growth exponents over one encoder's rows, and their extrapolation to ``target`` passages."""
    ns = [r["n"] for r in rows]
    out, lines = {}, [f"| quantity | exponent k (y ~ n^k) | **extrapolated** to {target:,} passages |", "|---|---|---|"]
    for key in FITTED:
        ys = [r[key] for r in rows]
        if len(rows) < 2 or min(ys) <= 0:
            continue
        k, c = fit_power(ns, ys)
        out[key] = {"k": k, "c": c, "extrapolated": c * target ** k}
        lines.append(f"| {dict((kk, h) for kk, h, _ in COLUMNS)[key]} | {k:.2f} | {_human(key, c * target ** k)} |")
    return "\n".join(lines), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--encoder", default=None,
                   help="checkpoint (default: the shipped SimLM if built, else MiniLM: the same 6-layer 384-dim shape)")
    p.add_argument("--full-max", type=int, default=None,
                   help="largest size the full encoder encodes (default: all sizes on GPU, 10,000 on CPU); every "
                        "size is also run with the smaller --small-layers encoder, which gives the growth fits")
    p.add_argument("--small-layers", type=int, default=2,
                   help="layers kept in the smaller encoder (default: %(default)s)")
    p.add_argument("--debian-docs", type=Path, default=DEBIAN_DOCS,
                   help="full Debian description source (docs.jsonl); default: %(default)s if present")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch/faiss build threads (default: all cores)")
    p.add_argument("--search-threads", type=int, default=1, help="faiss threads per query (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, default=ROOT / "work" / "scale")
    p.add_argument("--extrapolate-to", type=int, default=MSMARCO_PASSAGES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=None, help="write rows, fits and corpus sources as JSON")
    p.add_argument("--report", type=Path, default=None, help="print the report of a saved --output JSON and exit")
    # internal: one size in a fresh process
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--index-dir", help=argparse.SUPPRESS)
    p.add_argument("--queries", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.worker:
        print(json.dumps(worker(a)))
        return 0
    if a.report:
        print(render(json.loads(a.report.read_text()))[0])
        return 0

    import torch

    from simlm_ir.modeling.checkpoints import DEFAULT_SIMLM_DIR

    if a.encoder is None:
        a.encoder = "simlm" if (DEFAULT_SIMLM_DIR / "config.json").exists() else "minilm"
    gpu = torch.cuda.is_available() and a.device != "cpu"
    sizes = sorted(set(a.sizes))
    full_max = a.full_max if a.full_max is not None else (sizes[-1] if gpu else 10000)
    t_start = time.perf_counter()
    pool, sources = real_text_pool(a.debian_docs, sizes[-1], a.seed)
    if len(pool) < sizes[-1]:
        raise SystemExit(f"only {len(pool):,} distinct real-text passages found; lower --sizes or give --debian-docs")
    a.work.mkdir(parents=True, exist_ok=True)
    from simlm_ir.data.datasets import load_collection

    queries_file = a.work / "queries.tsv"
    queries_file.write_text("".join(f"{qid}\t{' '.join(t.split())}\n"
                                    for qid, t in load_collection("debian-known-item/test").queries.items()))

    from transformers import AutoConfig, AutoTokenizer

    from simlm_ir.encode.encoder import strip_simlm_prefix
    from simlm_ir.modeling.checkpoints import resolve_checkpoint

    full_path = resolve_checkpoint(strip_simlm_prefix(a.encoder))
    full_layers = AutoConfig.from_pretrained(full_path).num_hidden_layers
    tok = AutoTokenizer.from_pretrained(full_path)
    sample = pool[:2000]
    enc = tok([p.title for p in sample], text_pair=[p.text for p in sample], max_length=144, truncation=True)
    tokens_per_passage = float(np.mean([len(x) for x in enc["input_ids"]]))
    print(f"corpus pool: {len(pool):,} passages ({', '.join(f'{k}: {v:,}' for k, v in sources.items())}); "
          f"{tokens_per_passage:.1f} tokens/passage on average (max 144)", flush=True)

    runs = [(f"{a.encoder} ({full_layers}-layer)", a.encoder, n) for n in sizes if n <= full_max]
    small = None
    if any(n > full_max for n in sizes):
        small = str(truncated_encoder(a.encoder, a.small_layers, a.work / f"encoder-{a.small_layers}layer"))
        runs += [(f"{a.encoder} cut to {a.small_layers} layers", small, n) for n in sizes]
    rows = []
    for label, encoder, n in runs:
        corpus = a.work / f"corpus-{n}.jsonl"
        if not corpus.exists():
            write_jsonl_corpus(pool[:n], corpus)
        index_dir = a.work / f"index-{n}"
        shutil.rmtree(index_dir, ignore_errors=True)  # always a fresh encode
        t = time.perf_counter()
        row = run_worker(corpus, index_dir, queries_file, argparse.Namespace(**{**vars(a), "encoder": encoder}))
        row.update(encoder_label=label, encoder=encoder, passages_per_s=n / row["encode_s"])
        rows.append(row)
        print(f"  {n:,} passages, {label}: encode {row['encode_s']:.1f}s ({row['passages_per_s']:.0f}/s), "
              f"peak RSS {row['peak_rss_encode_mb']:.0f} MB, flat p50 {row['flat_search_ms_p50']:.2f} ms, "
              f"HNSW build {row['hnsw_build_s']:.1f}s p50 {row['hnsw_search_ms_p50']:.3f} ms "
              f"[{time.perf_counter() - t:.0f}s]", flush=True)
        shutil.rmtree(index_dir, ignore_errors=True)

    result = {"encoder": a.encoder, "small_encoder": small, "sources": sources, "pool": len(pool),
              "tokens_per_passage": tokens_per_passage, "rows": rows, "extrapolate_to": a.extrapolate_to,
              "search_threads": a.search_threads, "queries": sum(1 for _ in open(queries_file)),
              "cpu_count": os.cpu_count(), "total_s": time.perf_counter() - t_start}
    text, result["fits"], result["notes"] = render(result)
    print()
    print(text)
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(json.dumps(result, indent=1))
    return 0


def render(result: dict) -> tuple[str, dict, list[str]]:
    """The table, the fits over the encoder run at every size, and the extrapolation notes."""
    rows, target, encoder = result["rows"], result["extrapolate_to"], result["encoder"]
    full_rows = [r for r in rows if r["encoder"] == encoder]
    small = result.get("small_encoder")
    fit_rows = [r for r in rows if r["encoder"] == small] if small else full_rows
    fit_table, fitted = fits(fit_rows, target)
    fit_sizes = ", ".join(f"{r['n']:,}" for r in fit_rows)
    notes = []
    last = full_rows[-1]
    linear = last["encode_s"] / last["n"] * target
    notes.append(f"{encoder} encode time for {target:,} passages at its {last['n']:,}-passage rate "
                 f"(linear): {_human('encode_s', linear)}")
    if small:
        same = next(r for r in fit_rows if r["n"] == last["n"])
        ratio = last["encode_s"] / same["encode_s"]
        notes.append(f"{encoder} is {ratio:.2f}x slower than the cut encoder at {last['n']:,} passages; with the "
                     f"cut's fitted growth: {_human('encode_s', fitted['encode_s']['extrapolated'] * ratio)}")
    top = fit_rows[-1]
    notes.append(f"flat search is a linear scan: {top['flat_search_ms_p50']:.2f} ms x {target / top['n']:.0f} = "
                 f"{_human('flat_search_ms_p50', top['flat_search_ms_p50'] * target / top['n'])} per query from the "
                 f"{top['n']:,} row (the fit's smaller k comes from fixed per-query costs at small n)")
    tpp = result["tokens_per_passage"]
    notes.append(f"these passages average {tpp:.0f} tokens, MS MARCO's ~75: scale encode times by ~{75 / tpp:.1f} "
                 "for MS MARCO")
    head = (f"{rows[0]['device']}, {rows[0]['torch_threads']} torch threads, search {result['search_threads']} "
            f"thread(s), top 100, {result['queries']} queries; total {result['total_s']:.0f}s")
    text = "\n".join([head, table(rows), "", f"Growth fitted over the {fit_rows[0]['encoder_label']} rows "
                      f"({fit_sizes} passages):", fit_table] + [f"- extrapolation: {n}" for n in notes])
    return text, fitted, notes


if __name__ == "__main__":
    sys.exit(main())
