"""Lucene vector indexes of SimLM passage vectors (HNSW or flat, float32 or int8), built by Anserini.

The vectors come from the same resumable shards as the FAISS path (``DIR/shards/``, see
:mod:`simlm_ir.index.faiss`), or from a JSONL vector file encoded elsewhere. They are streamed,
chunk by chunk, into a JSONL.gz spool in Anserini's ``JsonDenseVectorCollection`` format
(``{"docid", "vector"}``), which ``io.anserini.index.IndexHnswDenseVectors`` or
``IndexFlatDenseVectors`` indexes (called in-process through pyjnius). The result is a plain Lucene
index directory: Anserini's ``SearchHnswDenseVectors``/``SearchFlatDenseVectors``, Pyserini's
``LuceneHnswDenseSearcher`` and :class:`simlm_ir.search.lucene.LuceneDenseSearcher` all read it as
it is. It appears atomically: built under a temp name and swapped in, with the shards carried over.

Anserini indexes with Lucene's ``DOT_PRODUCT`` similarity, which is only correct for unit-length
vectors (SimLM's are L2-normalised) and scores ``(1 + q.d) / 2``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from simlm_ir.data.corpus import iter_json_objects
from simlm_ir.errors import InputFormatError, SimLMIRError
from simlm_ir.index.faiss import META_FILE, SHARDS_DIR, ShardedVectors
from simlm_ir.util.io import atomic_directory, dir_size_bytes
from simlm_ir.util.progress import progress as progress_bar

BACKENDS = ("lucene-hnsw", "lucene-flat")
_INDEXERS = {"lucene-hnsw": "io.anserini.index.IndexHnswDenseVectors",
             "lucene-flat": "io.anserini.index.IndexFlatDenseVectors"}
SPOOL_CHUNK = 4096  # vectors per chunk read from the shards and written to the spool
SPOOL_FILE_VECTORS = 50_000  # Anserini counts a spool file's documents when it finishes the file
UNIT_NORM_TOLERANCE = 1e-3
_VECTOR_FILE_ENDINGS = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass
class LuceneIndexConfig:
    """Which Lucene vector index Anserini builds.

    ``hnsw_m`` and ``ef_construction`` are Anserini's ``-M`` and ``-efC`` (its defaults, 16 and
    100). ``quantize_int8`` is Lucene's scalar quantisation (``-quantize.int8``): searched on int8
    codes, but Lucene keeps the float32 vectors beside them (to re-quantise on merge), so the index
    grows rather than shrinks on disk. ``threads`` Anserini indexing threads each read their own
    spool file and write their own segment; ``optimize`` merges them into one (one graph to search).
    """

    backend: str = "lucene-hnsw"
    hnsw_m: int = 16
    ef_construction: int = 100
    quantize_int8: bool = False
    threads: int = 1
    optimize: bool = True
    memory_buffer_mb: int = 2048

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"Lucene backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, not {self.threads}")
        if self.hnsw_m < 2 or self.ef_construction < 1:
            raise ValueError(f"HNSW needs M >= 2 and efC >= 1 (got M={self.hnsw_m}, efC={self.ef_construction})")

    @property
    def label(self) -> str:
        kind = "HNSW" if self.backend == "lucene-hnsw" else "flat"
        return f"Lucene {kind}{' int8' if self.quantize_int8 else ''}"


@dataclass
class LuceneIndexStats:
    """What a build produced. ``index_bytes`` counts the Lucene files only (not shards or spool);
    ``build_seconds`` is the spool plus Anserini's indexing, ``encode_seconds`` the encoding that
    produced the vectors (when it ran in this call or was recorded in the shards)."""

    index_dir: str
    label: str
    passages: int
    dim: int
    index_bytes: int
    spool_seconds: float
    lucene_seconds: float
    encode_seconds: float | None = None

    @property
    def build_seconds(self) -> float:
        return self.spool_seconds + self.lucene_seconds

    @property
    def bytes_per_passage(self) -> float:
        return self.index_bytes / max(self.passages, 1)

    def summary(self) -> str:
        enc = f"encoding {self.encode_seconds:.1f}s, " if self.encode_seconds is not None else ""
        return (f"{self.index_dir}: {self.label} index of {self.passages} passages x {self.dim} dims, "
                f"{self.index_bytes} bytes ({self.bytes_per_passage:.1f} bytes/passage); {enc}spool "
                f"{self.spool_seconds:.1f}s, Anserini indexing {self.lucene_seconds:.1f}s")


# -- the spool: Anserini's JsonDenseVectorCollection -------------------------------------------

def _line(docid: str, vector: np.ndarray) -> str:
    # 9 significant digits round-trip a float32 exactly
    numbers = ",".join(["%.9g"] * len(vector)) % tuple(vector.tolist())
    return '{"docid": %s, "vector": [%s]}\n' % (json.dumps(docid), numbers)


def write_spool(chunks: Iterable[tuple[list[str], np.ndarray]], spool_dir, files: int = 1, total: int | None = None,
                progress: bool = True) -> int:
    """Write ``(docids, vectors)`` chunks as ``files`` gzipped JSONL files (chunks dealt round-robin,
    one file per Anserini indexing thread); returns the number of vectors written."""
    spool_dir = Path(spool_dir)
    spool_dir.mkdir(parents=True, exist_ok=True)
    handles = [gzip.open(spool_dir / f"part-{i:05d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1)
               for i in range(files)]
    n = 0
    try:
        with progress_bar(total=total, desc="vectors to Anserini spool", unit="vec", disable=not progress) as bar:
            for i, (docids, vectors) in enumerate(chunks):
                handles[i % files].write("".join(_line(d, v) for d, v in zip(docids, vectors)))
                n += len(docids)
                bar.update(len(docids))
    finally:
        for h in handles:
            h.close()
    return n


def _shard_chunks(vectors: ShardedVectors, index_dir,
                  chunk: int = SPOOL_CHUNK) -> Iterator[tuple[list[str], np.ndarray]]:
    ids = vectors.iter_docids(index_dir)
    for start in range(0, len(vectors), chunk):
        block = vectors[start:start + chunk]
        yield [next(ids) for _ in range(len(block))], block


# -- vector files encoded elsewhere -----------------------------------------------------------

def vector_files(path) -> list[Path]:
    """The JSONL(.gz) vector files at ``path`` (a file, or a directory of them, sorted by name)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.exists():
        raise InputFormatError(p, None, "no such vector file or directory")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(_VECTOR_FILE_ENDINGS))
    if not files:
        raise InputFormatError(p, None, f"holds no vector files ({', '.join(_VECTOR_FILE_ENDINGS)})")
    return files


def read_vector_files(path, dim: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """``(docid, vector)`` from JSONL lines ``{"docid" or "id": ..., "vector": [...]}`` (Anserini's
    JsonDenseVectorCollection, or ``pyserini.encode``'s JSONL output), checked line by line: JSON,
    an id, a list of finite numbers of ``dim`` entries (default: the first line's), unit length
    (Lucene's dot-product similarity needs it). A bad line raises one error naming file and line."""
    first: tuple[Path, int] | None = None
    for f in vector_files(path):
        for lineno, obj in iter_json_objects(f, 'a JSON object {"docid": ..., "vector": [...]}'):
            docid = obj.get("docid", obj.get("id"))
            if not isinstance(docid, (str, int)) or not str(docid).strip():
                raise InputFormatError(f, lineno, 'no "docid" (or "id") field')
            raw = obj.get("vector")
            if not isinstance(raw, list) or not raw:
                raise InputFormatError(f, lineno, 'no "vector" field holding a list of numbers')
            try:
                vector = np.asarray(raw, dtype=np.float32)
            except (TypeError, ValueError):
                raise InputFormatError(f, lineno, '"vector" holds something other than numbers') from None
            if vector.ndim != 1:
                raise InputFormatError(f, lineno, '"vector" must be a flat list of numbers')
            if dim is None:
                dim, first = len(vector), (f, lineno)
            if len(vector) != dim:
                where = f" (as {first[0]}:{first[1]})" if first else ""
                raise InputFormatError(f, lineno, f"vector has {len(vector)} dims, expected {dim}{where}")
            if not np.isfinite(vector).all():
                raise InputFormatError(f, lineno, "vector holds NaN or infinity")
            norm = float(np.linalg.norm(vector))
            if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
                raise InputFormatError(f, lineno, f"vector has length {norm:.4f}, not 1: Lucene's dot-product "
                                                  "similarity needs L2-normalised vectors")
            yield str(docid), vector


def _file_chunks(path, dim: int | None, chunk: int = SPOOL_CHUNK) -> Iterator[tuple[list[str], np.ndarray]]:
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    for docid, vector in read_vector_files(path, dim):
        ids.append(docid)
        vecs.append(vector)
        if len(ids) == chunk:
            yield ids, np.stack(vecs)
            ids, vecs = [], []
    if ids:
        yield ids, np.stack(vecs)


# -- Anserini ------------------------------------------------------------------------------------

def run_anserini_indexer(spool_dir, out_dir, config: LuceneIndexConfig, total: int | None = None,
                         progress: bool = True) -> dict:
    """Index the spool into ``out_dir`` with Anserini's own indexer (a Java thread, so the progress
    bar follows its document counter); returns Anserini's counters."""
    from pyserini.pyclass import autoclass, cast  # pyserini sets the Anserini classpath before the JVM starts

    indexer_class = _INDEXERS[config.backend]
    args = autoclass(f"{indexer_class}$Args")()
    args.collectionClass = "JsonDenseVectorCollection"
    args.generatorClass = "DenseVectorDocumentGenerator"
    args.input = str(spool_dir)
    args.index = str(out_dir)
    args.threads = config.threads
    args.optimize = config.optimize
    args.quantizeInt8 = config.quantize_int8
    args.memoryBuffer = config.memory_buffer_mb
    args.quiet = True
    if config.backend == "lucene-hnsw":
        args.M = config.hnsw_m
        args.efC = config.ef_construction
    indexer = autoclass(indexer_class)(args)
    counters = indexer.getCounters()
    thread = autoclass("java.lang.Thread")(cast("java.lang.Runnable", indexer), signature="(Ljava/lang/Runnable;)V")
    thread.start()
    with progress_bar(total=total, desc=f"Anserini {config.label} indexing", unit="vec",
                      disable=not progress) as bar:
        while thread.isAlive():
            thread.join(250)
            bar.update(int(counters.indexed.get()) - bar.n)
    return {name: int(getattr(counters, name).get()) for name in ("indexed", "unindexable", "skipped", "errors")}


def _build(index_dir, config: LuceneIndexConfig, chunks, total: int, dim: int, meta: dict,
           progress: bool) -> LuceneIndexStats:
    index_dir = Path(index_dir)
    # the encoded shards of an earlier build move into the new index dir: encoding is never lost
    with atomic_directory(index_dir, carry=(SHARDS_DIR,)) as tmp:
        spool, lucene = tmp / "spool", tmp / "index"
        t0 = time.perf_counter()
        files = max(config.threads, -(-total // SPOOL_FILE_VECTORS))  # a progress step every file
        n = write_spool(chunks, spool, files=files, total=total, progress=progress)
        if n == 0:
            raise InputFormatError(meta.get("vectors") or meta.get("corpus"), None,
                                   "holds no vectors; nothing to index")
        t1 = time.perf_counter()
        counters = run_anserini_indexer(spool, lucene, config, total=n, progress=progress)
        t2 = time.perf_counter()
        if counters["indexed"] != n:
            raise SimLMIRError(f"Anserini indexed {counters['indexed']} of {n} vectors ({counters}); "
                               "see its log above")
        shutil.rmtree(spool)
        size = dir_size_bytes(lucene)
        stats = LuceneIndexStats(str(index_dir), config.label, n, dim, size, t1 - t0, t2 - t1,
                                 meta.get("encode_seconds"))
        meta = {**meta, "backend": config.backend, "dim": dim, "passages": n, "config": asdict(config),
                "similarity": "Lucene DOT_PRODUCT: score = (1 + q.d) / 2", "index_bytes": size,
                "spool_seconds": round(t1 - t0, 3), "lucene_seconds": round(t2 - t1, 3)}
        (lucene / META_FILE).write_text(json.dumps(meta, indent=1))
        # the finished index becomes the swapped-in directory
        for item in lucene.iterdir():
            os.replace(item, tmp / item.name)
        lucene.rmdir()
    return stats


def build_lucene_index(index_dir, config: LuceneIndexConfig | None = None, shard_num: int = 1, *,
                       vectors_dir=None, progress: bool = True) -> LuceneIndexStats:
    """Index the encoded shards of ``vectors_dir`` (default: ``index_dir`` itself, where
    ``python -m simlm_ir.index`` encodes) into a Lucene index at ``index_dir``.

    ``vectors_dir`` may be a FAISS index directory of the same corpus and encoder, so one encoding
    serves both engines. Shards are read memory-mapped, chunk by chunk: Python never holds all
    vectors at once.
    """
    config = config or LuceneIndexConfig()
    source_dir = Path(vectors_dir) if vectors_dir is not None else Path(index_dir)
    vectors = ShardedVectors(source_dir, shard_num)
    first = vectors.metas[0]
    encode_seconds = [m.get("encode_seconds") for m in vectors.metas]
    meta = {"encoder": first["encoder"], "corpus": first["corpus"], "passage_max_length": first["passage_max_length"],
            "int8": first["int8"], "shard_num": shard_num, "vectors": str(source_dir / SHARDS_DIR),
            "encode_seconds": None if None in encode_seconds else round(sum(encode_seconds), 3)}
    return _build(index_dir, config, _shard_chunks(vectors, source_dir), len(vectors), vectors.dim, meta, progress)


def build_lucene_index_from_vectors(vectors_path, index_dir, config: LuceneIndexConfig | None = None, *,
                                    dim: int | None = None, encoder: str | None = None,
                                    progress: bool = True) -> LuceneIndexStats:
    """Index vectors encoded elsewhere (JSONL(.gz) ``{"docid"|"id", "vector"}`` files, see
    :func:`read_vector_files`), checked line by line while they are copied to the spool.
    ``encoder`` (recorded in the index metadata) is the query encoder the searcher will default to."""
    config = config or LuceneIndexConfig()
    files = vector_files(vectors_path)  # a missing path fails here, before any work
    # without ``dim``, every line must match the first one (errors then cite that line)
    index_dim = dim if dim is not None else len(next(read_vector_files(files[0]))[1])
    total = sum(_count_lines(f) for f in files)
    meta = {"encoder": encoder, "corpus": None, "vectors": str(vectors_path)}
    return _build(index_dir, config, _file_chunks(vectors_path, dim), total, index_dim, meta, progress)


def _count_lines(path: Path) -> int:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def read_meta(index_dir) -> dict:
    f = Path(index_dir) / META_FILE
    return json.loads(f.read_text()) if f.exists() else {}
