"""SimLM served from Lucene in the benchmark: HNSW, HNSW int8 and flat indexes built and searched by Anserini.

Each system indexes the encoded shards of the SimLM FAISS row (``work/faiss/...``; encoded there
first if that row has not run), so one encoding serves both engines. Its index time is that
encoding plus the spool and Anserini's indexing; its latency is one query at a time, SimLM query
encoding included, as for every other row. After searching it states its top-10 recall against
exact inner-product search (FAISS flat) over the same vectors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from simlm_ir.index.lucene import LuceneIndexConfig
from simlm_ir.search.base import IndexInfo, SearchResult, sample_latencies

LUCENE_EF_SEARCH = 1000  # = the benchmark's run depth, as Anserini's regressions search (-hits 1000 -efSearch 1000)
# short name -> (leaderboard name, index configuration); Anserini's HNSW defaults (M 16, efC 100)
LUCENE_SYSTEMS = {
    "lucene-hnsw": ("SimLM (Lucene HNSW)", LuceneIndexConfig("lucene-hnsw")),
    "lucene-hnsw-int8": ("SimLM (Lucene HNSW int8)", LuceneIndexConfig("lucene-hnsw", quantize_int8=True)),
    "lucene-flat": ("SimLM (Lucene flat)", LuceneIndexConfig("lucene-flat")),
}
LUCENE_CHOICES = tuple(LUCENE_SYSTEMS)


def overlap_at(run: dict[str, list[str]], reference: dict[str, list[str]], depth: int) -> float:
    """Mean share of each query's reference top-``depth`` that ``run``'s top-``depth`` holds."""
    shares = [len(set(run.get(q, [])[:depth]) & set(ref[:depth])) / max(1, min(depth, len(ref)))
              for q, ref in reference.items()]
    return float(np.mean(shares)) if shares else float("nan")


class LuceneDenseSystem:
    """SimLM over a Lucene vector index (``config``), searched by Anserini one query at a time."""

    def __init__(self, name: str, checkpoint: str, config: LuceneIndexConfig, ef_search: int = LUCENE_EF_SEARCH,
                 batch_size: int = 64, note: str = ""):
        self.name, self.checkpoint, self.config = name, checkpoint, config
        self.ef_search, self.batch_size, self._user_note = ef_search, batch_size, note
        self.searcher = None
        self.vectors_dir: Path | None = None
        self.recall: dict[int, float] = {}
        self.split = ""
        self.note = self._describe()

    def _describe(self) -> str:
        c = self.config
        parts = [f"M={c.hnsw_m}, efC={c.ef_construction}, efSearch={self.ef_search}"
                 if c.backend == "lucene-hnsw" else "exact search over Lucene's flat vectors"]
        if self.split:
            parts.append(self.split)
        if self.recall:
            parts.append("recall vs FAISS flat "
                         + ", ".join(f"top-{d} {r:.3f}" for d, r in sorted(self.recall.items())))
        if self._user_note:
            parts.append(self._user_note)
        return "; ".join(parts)

    def prepare(self, collection, work_dir: Path) -> IndexInfo:
        from simlm_ir.bench.systems import faiss_index_dir
        from simlm_ir.data.datasets import corpus_key
        from simlm_ir.encode.encoder import SimLMEncoder
        from simlm_ir.index.faiss import encode_shard, read_shard_meta, shard_dir
        from simlm_ir.index.lucene import build_lucene_index, read_meta
        from simlm_ir.search.lucene import LuceneDenseSearcher

        encoder = SimLMEncoder(self.checkpoint, batch_size=self.batch_size)
        self.vectors_dir, n_passages = faiss_index_dir(work_dir, "cls", encoder, collection)
        if read_shard_meta(shard_dir(self.vectors_dir, 0, 1)) is None:
            encode_shard(collection.passages, encoder, self.vectors_dir,
                         corpus_key=corpus_key(collection.corpus_source), total=n_passages,
                         batch_size=self.batch_size)
        config_key = hashlib.sha256(json.dumps(asdict(self.config), sort_keys=True).encode()).hexdigest()[:8]
        index_dir = Path(work_dir) / "lucene-dense" / f"{self.vectors_dir.name}-{self.config.backend}-{config_key}"
        meta = read_meta(index_dir)
        if meta.get("config") != asdict(self.config) or meta.get("vectors") != str(self.vectors_dir / "shards"):
            build_lucene_index(index_dir, self.config, vectors_dir=self.vectors_dir)
            meta = read_meta(index_dir)
        lucene_seconds = meta["spool_seconds"] + meta["lucene_seconds"]
        encode_seconds = meta.get("encode_seconds")
        self.split = (f"encoding {encode_seconds:.0f}s + Lucene build {lucene_seconds:.1f}s"
                      if encode_seconds is not None else
                      f"Lucene build {lucene_seconds:.1f}s (encoding time not recorded)")
        self.note = self._describe()
        self.searcher = LuceneDenseSearcher(index_dir, encoder, ef_search=self.ef_search)
        self.index_name = index_dir.name  # keyed by the encoded vectors and the index configuration
        return IndexInfo(meta["index_bytes"], None if encode_seconds is None else encode_seconds + lucene_seconds)

    def run_key(self) -> dict:
        """What decides this system's runs (:mod:`simlm_ir.search.run_cache`)."""
        return {"system": "lucene-dense", "index": self.index_name, "ef_search": self.ef_search}

    def latencies(self, queries, k) -> list[float]:
        """The first queries encoded and searched alone (ms each)."""
        return sample_latencies(queries, lambda text: self.searcher.search(text, k))

    def search(self, queries, k):
        """The run from Anserini's batch search; latency from the first queries encoded and searched
        alone; recall against exact search over the same query vectors."""
        latencies = self.latencies(queries, k)
        qids = list(queries)
        vectors = self.searcher.encode([queries[q] for q in qids])
        run = self._run(vectors, qids, k)
        if run:
            self.recall = self.recall_vs_flat(qids, vectors, run)
            self.note = self._describe()
        return SearchResult(run, latencies)

    def batch_run(self, queries, k):
        """The run alone: queries encoded in one batch, Anserini searching with two threads (for
        tuning a fusion; the row's stated recall is left as it is)."""
        qids = list(queries)
        return self._run(self.searcher.encode([queries[q] for q in qids]), qids, k)

    def _run(self, vectors, qids, k):
        hits = self.searcher.batch_search_vectors(vectors, qids, k, threads=2)
        return {q: {h.docid: h.score for h in hs} for q, hs in hits.items()}

    def recall_vs_flat(self, qids: list[str], vectors: np.ndarray, run, depths=(10, 100)) -> dict[int, float]:
        """Top-``depth`` overlap with exact inner-product search (a FAISS flat index) over the
        same shard vectors the Lucene index was built from."""
        from simlm_ir.index.faiss import IndexConfig, ShardedVectors, make_faiss_index

        shards = ShardedVectors(self.vectors_dir)
        docids = list(shards.iter_docids(self.vectors_dir))
        flat = make_faiss_index(shards, IndexConfig("flat"), progress=False)
        depth = max(depths)
        _, ids = flat.search(np.ascontiguousarray(vectors, dtype=np.float32), depth)
        exact = {q: [docids[i] for i in row if i != -1] for q, row in zip(qids, ids)}
        ranked_run = {q: [d for d, _ in sorted(docs.items(), key=lambda x: -x[1])] for q, docs in run.items()}
        return {d: overlap_at(ranked_run, exact, d) for d in depths}


def lucene_system(short_name: str, checkpoint: str, ef_search: int = LUCENE_EF_SEARCH) -> LuceneDenseSystem:
    name, config = LUCENE_SYSTEMS[short_name]
    return LuceneDenseSystem(name, checkpoint, replace(config), ef_search=ef_search)
