"""Retrieval systems for the benchmark: BM25, dense (SimLM and off-the-shelf), re-ranking.

Each system has ``name``, ``note``, ``prepare(collection, work_dir) -> IndexInfo`` and
``search(queries, k) -> SearchResult`` (per-query latency measured one query at a time, query
encoding included). Indexes are cached under ``work_dir`` keyed by corpus and model content.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from simlm_ir.bench.lucene import LUCENE_CHOICES, lucene_system
from simlm_ir.data.corpus import corpus_fingerprint
from simlm_ir.data.datasets import Collection, corpus_key
from simlm_ir.search.base import BatchSearch, IndexInfo, SearchResult, sample_latencies
from simlm_ir.search.bm25 import BM25Searcher, cached_lucene_index


def model_fingerprint(path: str) -> str:
    """Content hash of a local checkpoint's weights (a hub id hashes as its name)."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")) if p.is_dir() else []
    if not files:
        h.update(str(path).encode())
    for f in files:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()[:16]


class BM25System(BatchSearch):
    """BM25 over a Lucene index of title+text ("flat"), via Pyserini."""

    def __init__(self, k1: float = 0.9, b: float = 0.4, threads: int = 2, name: str = "BM25", note: str = ""):
        self.k1, self.b, self.threads, self.name, self.note = k1, b, threads, name, note
        self.searcher: BM25Searcher | None = None

    def prepare(self, collection: Collection, work_dir: Path) -> IndexInfo:
        info = cached_lucene_index(collection.passages, work_dir, threads=self.threads)
        self.searcher = BM25Searcher(info.path, self.k1, self.b)
        self.index_name = Path(info.path).name  # keyed by corpus content
        return IndexInfo(info.size_bytes, info.build_seconds)

    def run_key(self) -> dict:
        """What decides this system's runs (:mod:`simlm_ir.search.run_cache`)."""
        return {"system": "bm25", "index": self.index_name, "k1": self.k1, "b": self.b}

    def latencies(self, queries, k) -> list[float]:
        """The first queries searched alone (ms each)."""
        return sample_latencies(queries, lambda text: self.searcher.searcher.search(text, k=k))

    def batch_run(self, queries, k):
        """The run: a batch search with all threads."""
        return self.searcher.batch_search(queries, k, threads=self.threads)


def faiss_index_dir(work_dir, pooling: str, encoder, collection: Collection) -> tuple[Path, int]:
    """Where the benchmark keeps an encoder's FAISS index (and encoded shards) of a collection,
    keyed by weights and corpus content (the Lucene systems index the same shards), and the
    collection's passage count."""
    corpus_fp, n_passages = corpus_fingerprint(collection.passages())
    return Path(work_dir) / "faiss" / f"{pooling}-{model_fingerprint(encoder.path)}-{corpus_fp[:16]}", n_passages


class DenseSystem(BatchSearch):
    """A bi-encoder over an inner-product FAISS index in Pyserini's layout.

    ``encoder``: a checkpoint name/path (SimLM input format, [CLS] pooling), or ``("mean", path)``
    for a mean-pooling sentence encoder such as all-MiniLM-L6-v2 off the shelf. ``index``: the FAISS
    index type (flat fp32 by default); every type is built from the flat index's encoded vectors, so
    its build time is that encoding plus its own build.
    """

    def __init__(self, name: str, checkpoint: str, pooling: str = "cls", note: str = "", batch_size: int = 64,
                 index=None):
        self.name, self.checkpoint, self.pooling, self.note = name, checkpoint, pooling, note
        self.batch_size, self.index = batch_size, index
        self.searcher = None

    def _encoder(self):
        if self.pooling == "mean":
            from simlm_ir.encode.mean_pooling import MeanPoolingEncoder

            return MeanPoolingEncoder(self.checkpoint)
        from simlm_ir.encode.encoder import SimLMEncoder

        return SimLMEncoder(self.checkpoint, batch_size=self.batch_size)

    def prepare(self, collection: Collection, work_dir: Path) -> IndexInfo:
        from simlm_ir.index.faiss import build_from_shards, build_index
        from simlm_ir.search.dense import DenseSearcher

        encoder = self._encoder()
        index_dir, n_passages = faiss_index_dir(work_dir, self.pooling, encoder, collection)
        timing = index_dir / "simlm_ir_build.json"
        if timing.exists() and (index_dir / "index").exists():
            seconds = json.loads(timing.read_text())["build_seconds"]
        else:
            start = time.perf_counter()
            source = collection.corpus_source
            build_index(collection.passages, encoder, index_dir, corpus_key=corpus_key(source),
                        total=n_passages, batch_size=self.batch_size)
            seconds = time.perf_counter() - start
            timing.write_text(json.dumps({"build_seconds": seconds}))
        if self.index is not None and self.index.index_type != "flat":
            variant = index_dir.with_name(f"{index_dir.name}-{index_label(self.index)}")
            variant_timing = variant / "simlm_ir_build.json"
            if variant_timing.exists() and (variant / "index").exists():
                extra = json.loads(variant_timing.read_text())["build_seconds"]
            else:
                extra = build_from_shards(variant, self.index, progress=False, vectors_dir=index_dir).build_seconds
                variant_timing.write_text(json.dumps({"build_seconds": extra}))
            seconds, index_dir = seconds + extra, variant
        self.searcher = DenseSearcher(index_dir, encoder)
        self.index_name = index_dir.name  # keyed by encoder weights, corpus content and index type
        size = (index_dir / "index").stat().st_size + (index_dir / "docid").stat().st_size
        return IndexInfo(size, seconds)

    def run_key(self) -> dict:
        """What decides this system's runs (:mod:`simlm_ir.search.run_cache`); the queries are
        encoded by the same weights as the index."""
        return {"system": "dense", "index": self.index_name, "pooling": self.pooling}

    def latencies(self, queries, k) -> list[float]:
        """The first queries encoded and searched alone (ms each)."""
        return sample_latencies(queries, lambda text: self.searcher.search(text, k))

    def batch_run(self, queries, k):
        """The run: queries encoded in batches, one FAISS search."""
        qids = list(queries)
        hits = self.searcher.batch_search([queries[q] for q in qids], qids, k)
        return {q: {h.docid: h.score for h in hs} for q, hs in hits.items()}


class RerankSystem:
    """BM25 top-``depth`` re-scored by a cross-encoder.

    Scores come from :func:`~simlm_ir.search.rerank.rerank_run` (batched across queries, cached by
    content under ``work_dir/rerank/``). Latency = BM25's per-query latency + the re-ranking of that
    query alone, measured on the first ``latency_queries`` queries (each run, never from the cache).
    """

    def __init__(self, checkpoint: str, depth: int = 100, name: str = "BM25 + re-ranker", note: str = "",
                 bm25: BM25System | None = None, latency_queries: int = 16):
        self.checkpoint, self.depth, self.name, self.latency_queries = checkpoint, depth, name, latency_queries
        latency = f"latency: mean of {latency_queries} queries re-ranked one at a time"
        self.note = f"{note}; {latency}" if note else latency
        self.bm25 = bm25 or BM25System()
        self.docs: dict[str, tuple[str, str]] = {}
        self.cache = None

    def prepare(self, collection: Collection, work_dir: Path) -> IndexInfo:
        from simlm_ir.modeling.reranker import CrossEncoder
        from simlm_ir.search.rerank import ScoreCache

        info = self.bm25.prepare(collection, work_dir)
        self.docs = {p.id: (p.title, p.text) for p in collection.passages()}
        self.ce = CrossEncoder(self.checkpoint)
        self.model_key = f"{model_fingerprint(self.ce.path)}-{self.ce.max_length}"
        self.cache = ScoreCache(Path(work_dir) / "rerank" / f"{self.model_key}.sqlite")
        return info

    def run_key(self) -> dict | None:
        """What decides this system's runs (:mod:`simlm_ir.search.run_cache`): the first stage's and
        the cross-encoder's content and the depth."""
        first = self.bm25.run_key() if callable(getattr(self.bm25, "run_key", None)) else None
        return None if first is None else {"system": "rerank", "first": first, "model": self.model_key,
                                           "depth": self.depth}

    def latencies(self, queries, k) -> list[float]:
        """BM25's latency + the re-ranking of that query's top ``depth`` alone, for the first
        ``latency_queries`` queries (ms each)."""
        return self._latencies(self.bm25.search(queries, max(k, self.depth)), queries)

    def _latencies(self, first: SearchResult, queries) -> list[float]:
        from simlm_ir.search.rerank import rerank_latencies

        sample = list(first.run)[: self.latency_queries]
        bm25_ms = dict(zip(first.run, first.latencies_ms))
        timed = rerank_latencies(self.ce, first.run, queries, self.docs, self.depth, sample)
        return [bm25_ms[q] + timed[q] for q in sample]

    def search(self, queries, k):
        """Re-scored top ``depth`` first, then the rest of BM25's top ``k`` in BM25 order (below them),
        so recall at depths beyond the re-ranked ones is BM25's, as in a two-stage pipeline."""
        from simlm_ir.data.trec import ranked
        from simlm_ir.search.rerank import rerank_run

        first = self.bm25.search(queries, max(k, self.depth))
        top, _ = rerank_run(self.ce, first.run, queries, self.docs, self.depth, self.cache)
        run = {}
        for qid, rescored in top.items():
            floor = min(rescored.values(), default=0.0)
            rest = [d for d, _ in ranked(first.run[qid]) if d not in rescored][: max(0, k - len(rescored))]
            run[qid] = {**rescored, **{d: floor - 1.0 - i for i, d in enumerate(rest)}}
        return SearchResult(run, self._latencies(first, queries))


class RecordedRunSystem:
    """A run recorded earlier (``runs/<collection>/recorded/<stem>.trec.gz`` + ``<stem>.json``).

    Used for ablation rows whose checkpoints are not shipped (e.g. the intermediate fine-tuning
    stages of the default model): the run itself is evaluated afresh every time; index size, build
    time and per-query latencies are the ones measured when it was recorded.
    """

    def __init__(self, meta_path: Path):
        self.meta_path = Path(meta_path)
        self.meta = json.loads(self.meta_path.read_text())
        note = self.meta.get("note", "")
        self.name, self.note = self.meta["name"], f"{note}; recorded run" if note else "recorded run"

    def prepare(self, collection: Collection, work_dir: Path) -> IndexInfo:
        return IndexInfo(self.meta.get("index_bytes"), self.meta.get("build_seconds"))

    def search(self, queries, k):
        import gzip

        run: dict[str, dict[str, float]] = {}
        with gzip.open(self.meta_path.with_suffix(".trec.gz"), "rt", encoding="utf-8") as fh:
            for line in fh:
                qid, _, docid, rank, score, _ = line.split()
                if qid in queries and int(rank) <= k:
                    run.setdefault(qid, {})[docid] = float(score)
        return SearchResult(run, self.meta.get("latencies_ms", []))


def index_label(config) -> str:
    """A short, unique directory suffix for a FAISS index configuration."""
    from dataclasses import asdict

    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.index_type}-{digest}"


def record_run(out_dir: Path, stem: str, name: str, note: str, result: SearchResult, info: IndexInfo,
               extra: dict | None = None) -> Path:
    """Write a run (gzipped TREC) and its measurements so :class:`RecordedRunSystem` can replay it."""
    import gzip

    from simlm_ir.data.trec import ranked
    from simlm_ir.util.io import atomic_write

    out_dir = Path(out_dir)
    with atomic_write(out_dir / f"{stem}.trec.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        for qid, docs in result.run.items():
            for rank, (docid, score) in enumerate(ranked(docs), 1):
                fh.write(f"{qid} Q0 {docid} {rank} {score:.6f} {stem}\n".encode())
    meta = {"name": name, "note": note, "index_bytes": info.size_bytes, "build_seconds": info.build_seconds,
            "latencies_ms": [round(x, 3) for x in result.latencies_ms], **(extra or {})}
    with atomic_write(out_dir / f"{stem}.json") as fh:
        json.dump(meta, fh, indent=1)
    return out_dir / f"{stem}.json"


# SimLM's flat fp32 index and its compressed / approximate twins (one encoding, several FAISS indexes)
SIMLM_VARIANTS = {
    "simlm-fp16": ("SimLM fp16", dict(index_type="fp16"), "flat, vectors stored as fp16"),
    "simlm-sq8": ("SimLM SQ8", dict(index_type="sq8"), "flat, 8-bit scalar quantisation per dimension"),
    "simlm-pq": ("SimLM OPQ", dict(index_type="opq"), "OPQ rotation + PQ, dim/8 sub-quantizers x 8 bits"),
    "simlm-hnsw": ("SimLM HNSW", dict(index_type="hnsw"), "HNSW graph (M 32, efConstruction 200, efSearch 128) "
                                                           "over fp32 vectors"),
}
SYSTEM_CHOICES = ("bm25", "minilm", "simlm", *SIMLM_VARIANTS) + LUCENE_CHOICES + ("recorded", "rerank")


def shipped_model(checkpoint: str) -> str:
    """What the checkpoint is, from the ``model`` line its export wrote (``simlm_ir_recipe.json``)."""
    from simlm_ir.modeling.checkpoints import exported_model_line

    line = exported_model_line(checkpoint)
    return f"default checkpoint: {line}" if line else "default checkpoint"


def reranker_note(checkpoint: str) -> str:
    """What the re-ranker row's cross-encoder is: how the shipped one was trained, else its path."""
    from simlm_ir.modeling.checkpoints import exported_model_line

    line = exported_model_line(checkpoint)
    if checkpoint == "reranker-default":
        return f"the shipped re-ranker: {line}" if line else "the shipped re-ranker"
    return f"cross-encoder {checkpoint}" + (f": {line}" if line else "")


def build_systems(names, recorded_dir: Path | None = None, dense: dict[str, str] | None = None,
                  k1: float = 0.9, b: float = 0.4, threads: int = 2, rerank_depth: int = 100,
                  simlm: str = "simlm", reranker: str = "reranker-default", say=print) -> list:
    """The benchmark's systems by short name, in leaderboard order; unavailable ones are skipped
    with a one-line message (e.g. the default SimLM before ``benchmarks/train_default.py`` ran)."""
    from simlm_ir.errors import CheckpointError
    from simlm_ir.modeling.checkpoints import resolve_checkpoint
    from simlm_ir.search.run_cache import cached

    # one BM25 search per query set, shared by its row, the re-ranker's first stage and the fusions
    bm25 = cached(BM25System(k1=k1, b=b, threads=threads))
    systems: list = []
    for name in names:
        if name == "bm25":
            systems.append(bm25)
        elif name == "minilm":
            systems.append(DenseSystem("MiniLM-L6 (off the shelf)", "minilm", pooling="mean",
                                       note="all-MiniLM-L6-v2, mean pooling; trained on MS MARCO among others"))
        elif name == "simlm":
            try:
                resolve_checkpoint(simlm)
            except CheckpointError as exc:
                say(f"skipping SimLM: {exc}")
                continue
            systems.append(DenseSystem("SimLM", simlm, note=f"{shipped_model(simlm)}; flat fp32 index"))
        elif name in SIMLM_VARIANTS:
            from simlm_ir.index.faiss import IndexConfig

            try:
                resolve_checkpoint(simlm)
            except CheckpointError as exc:
                say(f"skipping {SIMLM_VARIANTS[name][0]}: {exc}")
                continue
            label, config, note = SIMLM_VARIANTS[name]
            system = DenseSystem(label, simlm, note=note, index=IndexConfig(**config))
            system.exact_twin = "SimLM"
            systems.append(system)
        elif name in LUCENE_CHOICES:  # SimLM served from Lucene
            try:
                resolve_checkpoint(simlm)
            except CheckpointError as exc:
                say(f"skipping {name}: {exc}")
                continue
            systems.append(lucene_system(name, simlm))
        elif name == "recorded" and recorded_dir is not None and Path(recorded_dir).is_dir():
            systems += [RecordedRunSystem(p) for p in sorted(Path(recorded_dir).glob("*.json"))]
        elif name == "rerank":
            try:
                resolve_checkpoint(reranker)
            except CheckpointError as exc:
                say(f"skipping the re-ranker: {exc}")
                continue
            systems.append(RerankSystem(reranker, rerank_depth, name=f"BM25 + re-ranker (top {rerank_depth})",
                                        note=reranker_note(reranker), bm25=bm25))
    for label, ckpt in (dense or {}).items():
        systems.append(DenseSystem(label, ckpt))
    return systems


def prefer_live(systems: list) -> list:
    """Drop recorded runs whose system is also run live (e.g. after training ColBERT locally)."""
    live = {s.name for s in systems if not isinstance(s, RecordedRunSystem)}
    return [s for s in systems if not (isinstance(s, RecordedRunSystem) and s.name in live)]
