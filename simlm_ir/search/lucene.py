"""Search a Lucene vector index of SimLM passages (built by simlm_ir.index.lucene) with Anserini's searchers.

Queries are encoded with SimLM in Python (Anserini's own query encoders are a fixed set of ONNX
models of other families) and handed to ``io.anserini.search.HnswDenseSearcher`` or
``FlatDenseSearcher`` as float vectors: one query per call (``search``, what latency figures use) or
a multi-threaded batch (``batch_search``). Lucene scores a hit ``(1 + q.d) / 2``; hits here carry
``q.d`` again, the inner product FAISS reports, so runs from both engines compare directly.

Lucene's HNSW query collects ``efSearch`` candidates and returns at most ``min(k, efSearch)`` hits
(Anserini's regressions search ``-hits 1000 -efSearch 1000``).

    python -m simlm_ir.search.lucene --index indexes/simlm-lucene-hnsw --topics topics.tsv \\
        --output run.trec --hits 1000 --ef-search 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from simlm_ir.encode.encoder import as_encoder
from simlm_ir.errors import InputFormatError, SimLMIRError
from simlm_ir.index.faiss import META_FILE
from simlm_ir.index.lucene import read_meta
from simlm_ir.search.dense import Hit
from simlm_ir.util.progress import progress

DEFAULT_EF_SEARCH = 100  # Anserini's and Pyserini's default


def _kind(index_dir: Path, meta: dict) -> str:
    if meta.get("backend") in ("lucene-hnsw", "lucene-flat"):
        return meta["backend"].removeprefix("lucene-")
    # an index Anserini built directly: its vector files name the format
    return "hnsw" if any("Hnsw" in f.name for f in index_dir.iterdir()) else "flat"


def _vector_json(v: np.ndarray) -> str:
    return "[" + ",".join(["%.9g"] * len(v)) % tuple(v.tolist()) + "]"


class LuceneDenseSearcher:
    """Anserini's HNSW or flat dense searcher over a Lucene index, with a SimLM query encoder.

    ``encoder``: a ``SimLMEncoder``, anything with ``encode_queries``/``encode``, or a checkpoint
    name; by default the one recorded when the index was built. ``ef_search`` applies to HNSW
    indexes. Results are :class:`~simlm_ir.search.dense.Hit` lists, best first.
    """

    def __init__(self, index_dir, encoder=None, *, ef_search: int = DEFAULT_EF_SEARCH, **encoder_kwargs):
        self.index_dir = Path(index_dir)
        if not self.index_dir.is_dir():
            raise InputFormatError(self.index_dir, None, "no such index directory")
        if not any(f.name.startswith("segments_") for f in self.index_dir.iterdir()):
            raise InputFormatError(self.index_dir, None, "not a Lucene index (no segments_N file); build one with "
                                                         "python -m simlm_ir.index --backend lucene-hnsw")
        self.meta = read_meta(self.index_dir)
        self.kind = _kind(self.index_dir, self.meta)
        self.ef_search = ef_search
        if encoder is None:
            if not self.meta.get("encoder"):
                raise ValueError(f"{self.index_dir}: no {META_FILE} records the encoder; pass encoder=")
            encoder = self.meta["encoder"]
        self.encoder = as_encoder(encoder, **encoder_kwargs)
        dim, enc_dim = self.meta.get("dim"), getattr(self.encoder, "dim", None)
        if dim is not None and enc_dim is not None and dim != enc_dim:
            raise InputFormatError(self.index_dir / META_FILE, None,
                                   f"index holds {dim}-dim vectors but the encoder "
                                   f"{getattr(self.encoder, 'name', self.encoder)!r} produces {enc_dim}-dim vectors")
        self.dim = dim or enc_dim
        self._searcher = self._open()

    def _open(self):
        from pyserini.pyclass import autoclass

        name = "HnswDenseSearcher" if self.kind == "hnsw" else "FlatDenseSearcher"
        args = autoclass(f"io.anserini.search.{name}$Args")()
        args.index = str(self.index_dir)
        if self.kind == "hnsw":
            args.efSearch = self.ef_search
        try:
            return autoclass(f"io.anserini.search.{name}")(args)
        except Exception as exc:  # jnius.JavaException: Anserini's "does not appear to be a valid index"
            raise InputFormatError(self.index_dir, None, f"Anserini cannot open it ({exc})") from None

    def set_ef_search(self, ef_search: int) -> None:
        """Re-open the HNSW searcher with another efSearch (Anserini fixes it per searcher)."""
        if self.kind != "hnsw":
            raise ValueError(f"{self.index_dir}: efSearch applies to HNSW indexes only")
        self.close()
        self.ef_search = ef_search
        self._searcher = self._open()

    def max_hits(self, k: int) -> int:
        """How many hits a top-``k`` search can return (HNSW: at most efSearch)."""
        return min(k, self.ef_search) if self.kind == "hnsw" else k

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        if hasattr(self.encoder, "encode_queries"):
            return self.encoder.encode_queries(queries)
        return np.stack([np.asarray(self.encoder.encode(q), dtype=np.float32).reshape(-1) for q in queries])

    def _check(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float32).reshape(-1)
        if self.dim is not None and len(q) != self.dim:
            raise ValueError(f"query vector has {len(q)} dims, the index {self.dim}")
        return q

    def search_vector(self, q: np.ndarray, k: int = 10) -> list[Hit]:
        """Top-``k`` hits of one query vector, searched by Anserini."""
        hits = self._searcher.search(self._check(q).tolist(), int(k))
        return [Hit(h.docid, 2.0 * float(h.score) - 1.0) for h in hits]

    def search(self, query: str | np.ndarray, k: int = 10) -> list[Hit]:
        """Top-``k`` hits of one query (text, encoded here, or an already encoded vector)."""
        q = self.encode([query])[0] if isinstance(query, str) else query
        return self.search_vector(q, k)

    def batch_search(self, queries: Sequence[str], qids: Sequence[str], k: int = 10,
                     threads: int = 1) -> dict[str, list[Hit]]:
        """Top-``k`` hits of each query, keyed by query id, searched by ``threads`` Anserini threads
        (queries are encoded here in one batch)."""
        if len(queries) != len(qids):
            raise ValueError(f"{len(queries)} queries but {len(qids)} query ids")
        return self.batch_search_vectors(self.encode(list(queries)), qids, k, threads)

    def batch_search_vectors(self, vectors: np.ndarray, qids: Sequence[str], k: int = 10,
                             threads: int = 1) -> dict[str, list[Hit]]:
        """:meth:`batch_search` of already encoded queries (passed as JSON vectors, which Anserini's
        VectorQueryGenerator parses)."""
        from pyserini.pyclass import JArrayList

        if len(vectors) != len(qids):
            raise ValueError(f"{len(vectors)} query vectors but {len(qids)} query ids")
        jqueries, jqids = JArrayList(), JArrayList()
        for qid, v in zip(qids, vectors):
            jqueries.add(_vector_json(self._check(v)))
            jqids.add(str(qid))
        results = self._searcher.batch_search(jqueries, jqids, int(k), int(threads))
        out = {str(e.getKey()): [Hit(h.docid, 2.0 * float(h.score) - 1.0) for h in e.getValue()]
               for e in results.entrySet().toArray()}
        return {str(q): out.get(str(q), []) for q in qids}

    def close(self) -> None:
        self._searcher.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simlm_ir.search.lucene", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True,
                   help="Lucene index directory (python -m simlm_ir.index --backend lucene-*)")
    p.add_argument("--topics", required=True, help="TSV topics (qid<TAB>text) or an ir_datasets id")
    p.add_argument("--output", required=True, help="TREC run to write")
    p.add_argument("--hits", type=int, default=1000, help="hits per query (default: %(default)s)")
    p.add_argument("--ef-search", type=int, default=DEFAULT_EF_SEARCH,
                   help="HNSW candidates per query; at most this many hits come back (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="Anserini search threads; 1 searches one query at a time and reports latency")
    p.add_argument("--encoder", default=None, help="query encoder checkpoint (default: the index's)")
    p.add_argument("--batch-size", type=int, default=64, help="query encoding batch size")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--run-tag", default=None, help="TREC run tag (default: from the index directory)")
    return p


def _topics(spec: str) -> dict[str, str]:
    from simlm_ir.data.trec import read_topics_tsv

    if Path(spec).exists():
        return read_topics_tsv(spec)
    from simlm_ir.data.datasets import load_collection

    return load_collection(spec).queries


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from simlm_ir.data.trec import write_trec_run

    try:
        topics = _topics(args.topics)
        searcher = LuceneDenseSearcher(args.index, args.encoder, ef_search=args.ef_search,
                                       device=args.device, batch_size=args.batch_size)
        if searcher.max_hits(args.hits) < args.hits:
            print(f"note: Lucene's HNSW search returns at most --ef-search {args.ef_search} hits per query "
                  f"(--hits {args.hits}); raise --ef-search for deeper runs", file=sys.stderr)
        qids = list(topics)
        if args.threads > 1:
            start = time.perf_counter()
            hits = searcher.batch_search([topics[q] for q in qids], qids, args.hits, args.threads)
            print(f"{len(qids)} queries in {time.perf_counter() - start:.1f}s with {args.threads} threads",
                  file=sys.stderr)
        else:
            hits, latencies = {}, []
            for qid in progress(qids, desc="Lucene dense search", unit="q"):
                start = time.perf_counter()
                hits[qid] = searcher.search(topics[qid], args.hits)
                latencies.append((time.perf_counter() - start) * 1000)
            if latencies:
                print(f"latency per query (encoding included): p50 {np.percentile(latencies, 50):.1f} ms, "
                      f"p95 {np.percentile(latencies, 95):.1f} ms", file=sys.stderr)
        run = {q: {h.docid: h.score for h in hs} for q, hs in hits.items()}
        write_trec_run(run, args.output, tag=args.run_tag or Path(args.index).name)
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    except (SimLMIRError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
