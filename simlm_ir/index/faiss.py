"""FAISS indexes of SimLM passage vectors in Pyserini's layout: sharded encoding, merge, build.

An index directory holds ``index`` (FAISS) and ``docid`` (one id per line), which is what
``pyserini.search.faiss --index DIR`` reads, plus ``simlm_index.json`` (how it was built) and
``shards/`` (the encoded vectors). Encoding runs per shard (``shard_id`` of ``shard_num``; shard
``k`` holds passages ``k, k+N, k+2N, ...``); each finished shard directory appears atomically and is
never re-encoded, so an interrupted build resumes, and a new index type re-uses the vectors. The
merge restores corpus order and builds an inner-product index of one of ``INDEX_TYPES``: exact
(``flat`` fp32), scalar-quantised (``fp16``: 2 bytes per dimension; ``sq8``: 1 byte), graph (``hnsw``)
or product-quantised (``pq``, ``opq``, ``ivfpq``). Several index types can be built from one encoding
(``vectors_dir``).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Union

import faiss
import numpy as np
from tqdm.auto import tqdm

from simlm_ir.data.corpus import Passage
from simlm_ir.encode.encoder import as_encoder
from simlm_ir.errors import InputFormatError
from simlm_ir.util.cli import arg
from simlm_ir.util.io import atomic_directory, atomic_write

INDEX_FILE = "index"
DOCID_FILE = "docid"
META_FILE = "simlm_index.json"
SHARDS_DIR = "shards"
SHARD_VECTORS = "embeddings.f32"  # raw little-endian float32, row-major (count x dim)
SHARD_META = "shard.json"
INDEX_TYPES = ("flat", "fp16", "sq8", "hnsw", "pq", "opq", "ivfpq", "factory")
OPQ_MIN_TRAIN = 256  # faiss's OPQMatrix trains an 8-bit PQ internally, whatever --pq-nbits says
# the passages to encode: an iterable, or a function returning a fresh one (read once per shard)
PassageSource = Union[Iterable[Passage], Callable[[], Iterable[Passage]]]


@dataclass
class IndexConfig:
    """Which FAISS index to build (all use inner product on L2-normalised vectors = cosine).

    Bytes per passage: ``flat`` 4 x dim, ``fp16`` 2 x dim, ``sq8`` dim (one trained byte per
    dimension), ``hnsw`` 4 x dim + the graph (~8 x ``hnsw_m``); ``pq``/``opq``/``ivfpq``: ``pq_m``
    sub-quantizers of ``pq_nbits`` bits, ``pq_m * pq_nbits / 8`` (default ``dim // 8`` sub-quantizers:
    48 bytes for 384 dims, 96 for 768). ``opq`` learns a rotation first (OPQ, Ge et al. 2013), which
    spreads variance evenly over the sub-quantizers.
    ``nlist`` IVF cells default to about ``4 * sqrt(n)``, capped so each has 39 training points.
    """

    _argument_group_name = "index type"

    index_type: str = arg("flat", "FAISS index to build", choices=INDEX_TYPES)
    hnsw_m: int = arg(32, "HNSW neighbours per node", aliases=["--M"])
    ef_construction: int = arg(200, "HNSW build depth")
    ef_search: int = arg(128, "HNSW search depth stored in the index")
    pq_m: int | None = arg(None, "PQ sub-quantizers (default dim/8)")
    pq_nbits: int = arg(8, "bits per PQ sub-quantizer code")
    nlist: int | None = arg(None, "IVF cells (default ~4*sqrt(n))")
    nprobe: int = arg(16, "IVF cells searched, stored in the index")
    factory: str | None = arg(None, "faiss index_factory string for --index-type factory")
    seed: int = arg(0, "seed of the PQ/IVF training sample")

    def __post_init__(self):
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {', '.join(INDEX_TYPES)}, not {self.index_type!r}")
        if self.index_type == "factory" and not self.factory:
            raise ValueError("index type 'factory' needs a faiss index_factory string")


@dataclass
class IndexStats:
    """What a build produced; ``bytes_per_passage`` counts the ``index`` file only."""

    index_dir: str
    index_type: str
    passages: int
    dim: int
    index_bytes: int
    docid_bytes: int
    encode_seconds: float = 0.0
    build_seconds: float = 0.0
    shards_encoded: int = 0
    shards_reused: int = 0

    @property
    def bytes_per_passage(self) -> float:
        return self.index_bytes / max(self.passages, 1)

    def summary(self) -> str:
        return (f"{self.index_dir}: {self.index_type} index of {self.passages} passages x {self.dim} dims, "
                f"{self.index_bytes} bytes ({self.bytes_per_passage:.1f} bytes/passage; docid file "
                f"{self.docid_bytes} bytes); encoded {self.shards_encoded} shard(s) in "
                f"{self.encode_seconds:.1f}s, re-used {self.shards_reused}; built index in "
                f"{self.build_seconds:.1f}s")


# -- encoding ----------------------------------------------------------------------------------

def shard_dir(index_dir, shard_id: int, shard_num: int) -> Path:
    return Path(index_dir) / SHARDS_DIR / f"{shard_id:04d}-of-{shard_num:04d}"


def _check_shard_args(shard_id: int, shard_num: int) -> None:
    if shard_num < 1 or not 0 <= shard_id < shard_num:
        raise ValueError(f"--shard-id must be in [0, --shard-num); got shard {shard_id} of {shard_num}")


def _encoder_key(encoder) -> dict:
    return {"encoder": str(getattr(encoder, "path", type(encoder).__name__)),
            "passage_max_length": getattr(encoder, "passage_max_length", None),
            "int8": bool(getattr(encoder, "quantized", False))}


def _chunks(items: Iterable, size: int):
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _check_docid(p: Passage, corpus_key: str) -> None:
    if p.id != p.id.strip() or "\n" in p.id or "\r" in p.id:
        raise InputFormatError(corpus_key, None, f"document id {p.id!r} has surrounding whitespace or a line "
                                             "break; Pyserini's docid file cannot hold it")


def _reports_batches(encoder) -> bool:
    """Whether ``encoder.encode_passages`` takes an ``on_batch`` progress callback (ours do)."""
    import inspect

    try:
        return "on_batch" in inspect.signature(encoder.encode_passages).parameters
    except (TypeError, ValueError):
        return False


def read_shard_meta(path) -> dict | None:
    f = Path(path) / SHARD_META
    return json.loads(f.read_text()) if f.exists() else None


def _fresh(passages: PassageSource) -> Iterable[Passage]:
    return passages() if callable(passages) else passages


def encode_shard(passages: PassageSource, encoder, index_dir, shard_id: int = 0, shard_num: int = 1, *,
                 corpus_key: str, total: int | None = None, chunk_size: int = 2048,
                 batch_size: int | None = None, progress: bool = True) -> Path:
    """Encode shard ``shard_id`` of ``shard_num`` of the corpus into ``index_dir/shards/``.

    ``passages``: the whole corpus in order (an iterable, or a function returning a fresh one);
    ``corpus_key`` names it in the shard's metadata (see :func:`simlm_ir.data.datasets.corpus_key`)
    and ``total`` (passages in the corpus, if known) sizes the progress bar. ``encoder`` is a
    :class:`~simlm_ir.encode.encoder.SimLMEncoder` or a checkpoint name. A finished shard (built with
    the same encoder and corpus) is left as it is; one built with different settings is an error
    rather than silently mixed in. Returns the shard directory.
    """
    _check_shard_args(shard_id, shard_num)
    out = shard_dir(index_dir, shard_id, shard_num)
    encoder = as_encoder(encoder)
    want = {"corpus": corpus_key, "shard_id": shard_id, "shard_num": shard_num, **_encoder_key(encoder)}
    meta = read_shard_meta(out)
    if meta is not None:
        diff = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
        if diff:
            raise InputFormatError(out, None, "shard was encoded with other settings "
                                   + ", ".join(f"{k}: {a!r} != {b!r}" for k, (a, b) in diff.items())
                                   + "; delete it or use another --index directory")
        return out

    if total is not None:
        total = max(0, math.ceil((total - shard_id) / shard_num))
    shard = itertools.islice(_fresh(passages), shard_id, None, shard_num)
    count = 0
    started = time.perf_counter()
    with atomic_directory(out) as tmp, tqdm(total=total, desc=f"encode shard {shard_id}/{shard_num}",
                                            unit="psg", disable=not progress, dynamic_ncols=True) as bar:
        with open(tmp / SHARD_VECTORS, "wb") as vec_fh, open(tmp / DOCID_FILE, "w", encoding="utf-8") as id_fh:
            for chunk in _chunks(shard, chunk_size):
                for p in chunk:
                    _check_docid(p, corpus_key)
                # the bar moves per forward pass (passages/s and ETA) when the encoder reports them
                per_batch = _reports_batches(encoder)
                vectors = encoder.encode_passages([p.text for p in chunk], [p.title for p in chunk],
                                                  batch_size=batch_size,
                                                  **({"on_batch": bar.update} if per_batch else {}))
                vec_fh.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
                id_fh.write("".join(p.id + "\n" for p in chunk))
                count += len(chunk)
                if not per_batch:
                    bar.update(len(chunk))
        if count == 0 and shard_num == 1:
            raise InputFormatError(corpus_key, None, "corpus holds no passages; nothing to index")
        # encode_seconds: so an index built later from these vectors (e.g. in Lucene) can report
        # its full build time, encoding included
        (tmp / SHARD_META).write_text(json.dumps({**want, "count": count, "dim": int(encoder.dim),
                                                  "encode_seconds": round(time.perf_counter() - started, 3)},
                                                 indent=1))
    return out


# -- merging and index building ----------------------------------------------------------------

class ShardedVectors:
    """The finished shards' vectors as one read-only (n, dim) float32 matrix in corpus order (checked to
    agree on encoder, corpus and dims), memory-mapped: slices and row selections read only the rows
    asked for, so building an index never holds a second copy of all vectors (row ``g`` is row
    ``g // N`` of shard ``g % N``)."""

    def __init__(self, index_dir, shard_num: int = 1):
        self.shard_num = shard_num
        self.metas = [_shard_meta_checked(index_dir, k, shard_num) for k in range(shard_num)]
        _check_shards_agree(index_dir, self.metas, shard_num)
        self.dim = self.metas[0]["dim"]
        n = sum(m["count"] for m in self.metas)
        if n == 0:
            raise InputFormatError(self.metas[0]["corpus"], None, "corpus holds no passages; nothing to index")
        for k, meta in enumerate(self.metas):
            if meta["count"] != len(range(k, n, shard_num)):
                raise InputFormatError(shard_dir(index_dir, k, shard_num), None,
                                       f"holds {meta['count']} passages, expected {len(range(k, n, shard_num))}")
        self.shape = (n, self.dim)
        self.dtype = np.dtype(np.float32)
        self._maps = [np.memmap(shard_dir(index_dir, k, shard_num) / SHARD_VECTORS, dtype="<f4", mode="r",
                                shape=(m["count"], self.dim)) if m["count"] else np.empty((0, self.dim), "<f4")
                      for k, m in enumerate(self.metas)]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        n, N = self.shape[0], self.shard_num
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self[np.arange(start, stop, step)]
            out = np.empty((max(0, stop - start), self.dim), dtype=np.float32)
            for k, mm in enumerate(self._maps):
                first = start + (k - start) % N  # first global row >= start that lives in shard k
                if first < stop:
                    out[first - start::N] = mm[(first - k) // N:(stop - 1 - k) // N + 1]
            return out
        rows = np.asarray(key, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for k, mm in enumerate(self._maps):
            sel = np.flatnonzero(rows % N == k)
            out[sel] = mm[rows[sel] // N]
        return out

    def iter_docids(self, index_dir):
        """Document ids in corpus order, streamed from the shards' docid files."""
        handles = [open(shard_dir(index_dir, k, self.shard_num) / DOCID_FILE, encoding="utf-8")
                   for k in range(self.shard_num)]
        try:
            for g in range(self.shape[0]):
                yield handles[g % self.shard_num].readline().rstrip("\n")
        finally:
            for h in handles:
                h.close()


def _shard_meta_checked(index_dir, shard_id: int, shard_num: int) -> dict:
    path = shard_dir(index_dir, shard_id, shard_num)
    meta = read_shard_meta(path)
    if meta is None:
        raise InputFormatError(path, None, "shard is missing or unfinished; encode it first "
                                           f"(--shard-id {shard_id} --shard-num {shard_num})")
    size = (path / SHARD_VECTORS).stat().st_size if (path / SHARD_VECTORS).exists() else -1
    if size != meta["count"] * meta["dim"] * 4:
        raise InputFormatError(path / SHARD_VECTORS, None, f"holds {max(size, 0) // 4} floats, expected "
                                                           f"{meta['count']} x {meta['dim']}")
    with open(path / DOCID_FILE, "rb") as fh:
        lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
    if lines != meta["count"]:
        raise InputFormatError(path / DOCID_FILE, None, f"holds {lines} ids, expected {meta['count']}")
    return meta


def _check_shards_agree(index_dir, metas: list[dict], shard_num: int) -> None:
    first = metas[0]
    for meta in metas[1:]:
        for key in ("dim", "encoder", "corpus", "passage_max_length", "int8"):
            if meta[key] != first[key]:
                raise InputFormatError(shard_dir(index_dir, meta["shard_id"], shard_num), None,
                                       f"shard has {key} {meta[key]!r} but shard 0 has {first[key]!r}; "
                                       "all shards must come from one encoder and corpus")


def default_pq_m(dim: int) -> int:
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


def make_faiss_index(vectors, config: IndexConfig, progress: bool = True) -> faiss.Index:
    """Train (if needed) and fill a FAISS inner-product index of ``config.index_type``.

    ``vectors``: an (n, dim) float32 array or :class:`ShardedVectors` (read in 65,536-row slices).
    """
    n, dim = vectors.shape
    ip = faiss.METRIC_INNER_PRODUCT
    kind = config.index_type
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind in ("fp16", "sq8"):
        qtype = faiss.ScalarQuantizer.QT_fp16 if kind == "fp16" else faiss.ScalarQuantizer.QT_8bit
        index = faiss.IndexScalarQuantizer(dim, qtype, ip)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, ip)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
    elif kind in ("pq", "opq", "ivfpq"):
        m = config.pq_m or default_pq_m(dim)
        if dim % m:
            raise ValueError(f"--pq-m {m} must divide the vector dimension {dim}")
        if kind == "opq" and n < OPQ_MIN_TRAIN:
            raise ValueError(f"OPQ needs at least {OPQ_MIN_TRAIN} passages to train its rotation (faiss trains it "
                             f"with 8-bit PQ); this corpus has {n} (use --index-type pq, fp16 or sq8)")
        if n < 2 ** config.pq_nbits:
            raise ValueError(f"PQ with {config.pq_nbits} bits needs at least {2 ** config.pq_nbits} passages "
                             f"to train; this corpus has {n} (use --pq-nbits "
                             f"{max(1, int(math.log2(max(n, 2))))} or a flat index)")
        if kind == "pq":
            index = faiss.IndexPQ(dim, m, config.pq_nbits, ip)
        elif kind == "opq":
            index = faiss.index_factory(dim, f"OPQ{m},PQ{m}x{config.pq_nbits}", ip)
        else:
            nlist = config.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            if nlist > n:
                raise ValueError(f"--nlist {nlist} is more than the {n} passages to train on")
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, config.pq_nbits, ip)
            index.nprobe = min(config.nprobe, nlist)
    else:
        index = faiss.index_factory(dim, config.factory, ip)
    if not index.is_trained:
        rng = np.random.default_rng(config.seed)
        max_train = 256 * 2 ** config.pq_nbits
        sample = vectors[0:n] if n <= max_train else vectors[np.sort(rng.choice(n, max_train, replace=False))]
        index.train(sample)
    step = 65536
    with tqdm(total=n, desc=f"add to {kind} index", unit="vec", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, n, step):
            index.add(vectors[start:start + step])
            bar.update(min(step, n - start))
    return index


def write_index(index_dir, index: faiss.Index, docids: Iterable[str], meta: dict) -> None:
    """Write ``docid`` (streamed from any iterable), ``index`` and our metadata file, each atomically."""
    index_dir = Path(index_dir)
    with atomic_write(index_dir / DOCID_FILE) as fh:
        for chunk in _chunks(docids, 65536):
            fh.write("".join(d + "\n" for d in chunk))
    with atomic_write(index_dir / INDEX_FILE, "wb") as fh:
        faiss.write_index(index, faiss.PyCallbackIOWriter(fh.write))
    with atomic_write(index_dir / META_FILE) as fh:
        json.dump(meta, fh, indent=1)


def build_from_shards(index_dir, config: IndexConfig | None = None, shard_num: int = 1,
                      progress: bool = True, vectors_dir=None) -> IndexStats:
    """Merge finished shards into ``index_dir/index`` + ``index_dir/docid``.

    ``vectors_dir``: the index directory whose ``shards/`` hold the vectors (default ``index_dir``), so
    another index type of the same encoding needs no re-encoding.
    """
    config = config or IndexConfig()
    t0 = time.perf_counter()
    vectors_dir = index_dir if vectors_dir is None else vectors_dir
    vectors = ShardedVectors(vectors_dir, shard_num)  # memory-mapped: the index is the only full copy
    shard_meta = vectors.metas[0]
    index = make_faiss_index(vectors, config, progress)
    n = len(vectors)
    meta = {"encoder": shard_meta["encoder"], "corpus": shard_meta["corpus"],
            "passage_max_length": shard_meta["passage_max_length"], "int8": shard_meta["int8"],
            "dim": int(vectors.shape[1]), "passages": n, "shard_num": shard_num,
            "config": asdict(config)}
    write_index(index_dir, index, vectors.iter_docids(vectors_dir), meta)
    d = Path(index_dir)
    return IndexStats(str(d), config.index_type, n, int(vectors.shape[1]),
                      (d / INDEX_FILE).stat().st_size, (d / DOCID_FILE).stat().st_size,
                      build_seconds=time.perf_counter() - t0)


def build_index(passages: PassageSource, encoder, index_dir, config: IndexConfig | None = None, *,
                corpus_key: str, total: int | None = None, shard_num: int = 1, batch_size: int | None = None,
                chunk_size: int = 2048, progress: bool = True) -> IndexStats:
    """Encode every shard not yet encoded, then merge them into a Pyserini-readable FAISS index.

    ``passages``: the corpus (an iterable; with several shards, a function returning a fresh
    iterable, since each shard reads the corpus once), named ``corpus_key`` in the index metadata.
    ``encoder``: a ``SimLMEncoder`` or a checkpoint name (``simlm``, ``minilm``, a directory, a hub id).
    """
    if shard_num > 1 and not callable(passages) and iter(passages) is passages:
        raise ValueError("several shards read the corpus once each: pass a function returning the passages")
    encoder = as_encoder(encoder)
    t0 = time.perf_counter()
    encoded = reused = 0
    for k in range(shard_num):
        if read_shard_meta(shard_dir(index_dir, k, shard_num)) is None:
            encoded += 1
        else:
            reused += 1
        encode_shard(passages, encoder, index_dir, k, shard_num, corpus_key=corpus_key, total=total,
                     chunk_size=chunk_size, batch_size=batch_size, progress=progress)
    encode_seconds = time.perf_counter() - t0
    stats = build_from_shards(index_dir, config, shard_num, progress)
    stats.encode_seconds, stats.shards_encoded, stats.shards_reused = encode_seconds, encoded, reused
    return stats
