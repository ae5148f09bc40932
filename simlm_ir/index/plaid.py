"""ColBERTv2's compressed PLAID index, built by PyLate's port of colbert-ai from our ColBERT token vectors.

ColBERTv2 (Santhanam et al. 2022) stores each token vector as the id of its nearest k-means centroid
plus the residual quantised to ``nbits`` per dimension (2 by default: 128 dims -> 32 bytes); PLAID
(Santhanam et al. 2022b) searches it through the centroids' inverted lists. We do not re-implement
either: PyLate 1.6.0's "Stanford" backend (``pylate.indexes.PLAID(use_fast=False)``) is colbert-ai's
indexing and search code, and it takes token vectors from any encoder, so it is fed the vectors of
our own exact token index (:mod:`simlm_ir.index.colbert`); both ColBERT rows share one encoding.

Why this backend: colbert-ai itself needs transformers < 5, PyLate's default fast-plaid segfaults on
torch 2.13, and pylate's pins (transformers <= 5.3, sentence-transformers 5.3, fast-plaid) conflict
with ours, although the part used here needs none of them. So PyLate is installed *after* the main
install with ``pip install --no-deps -r requirements-plaid.txt`` (``make install`` does it), and
``pip check`` reports those pins. Its C++ extensions are compiled on first use (1-2 min) into
``TORCH_EXTENSIONS_DIR``, by default ``<venv>/torch_extensions``, and reused afterwards.

Two parts of PyLate's CPU build are swapped for equivalents (:func:`cpu_build_path`), inside the
build only: k-means runs in ``faiss.Kmeans`` (colbert-ai's own choice, seed 123; PyLate keeps it
for GPU faiss only and otherwise uses fastkmeans), and each token vector's nearest centroid is found
in row blocks instead of 2 GiB centroid-by-token matrices reduced across rows. On the embedded
collection's 337,296 token vectors the build went from 65-83 s to 25-44 s, and two builds of the
same vectors give the same files; the code assignment gives the same codes (and so residuals) bit
for bit (checked on those vectors; ``tests/test_colbert_plaid.py`` compares with colbert-ai's
function). On GPU, PyLate's own path runs (``kmeans`` in the index metadata says which).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from simlm_ir.errors import SimLMIRError
from simlm_ir.index.colbert import read_colbert_index
from simlm_ir.util.io import atomic_directory

PLAID_META = "simlm_plaid.json"
BUILD_VERSION = 2  # 2: faiss k-means (cpu_build_path); part of the index directory name
PLAID_NAME = "plaid"  # PyLate's index_name: the engine's files live in <index dir>/plaid/
DOCID_FILE = "docid"  # one id per line, PLAID passage id = line number
REQUIREMENTS = "requirements-plaid.txt"
INSTALL_STEP = f"run `make install`, or `pip install --no-deps -r {REQUIREMENTS}` after the main install"
NBITS_CHOICES = (1, 2, 4)


class PLAIDUnavailableError(SimLMIRError):
    """PyLate's PLAID engine is not installed, or its C++ extensions cannot be built."""


def extensions_dir() -> Path:
    """Where torch keeps the compiled extensions: ``$TORCH_EXTENSIONS_DIR``, else under the venv, so
    they survive across runs and are shared by every user of that venv."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(env) if env else Path(sys.prefix) / "torch_extensions"


@contextlib.contextmanager
def quiet_engine():
    """colbert-ai's code prints progress and memory statistics to stdout and a progress bar per query to
    stderr; keep them out of our output (exceptions still propagate)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def load_plaid():
    """PyLate's ``PLAID`` class, with the four CPU extensions of its PLAID search compiled and loaded.

    Raises :class:`PLAIDUnavailableError`, naming the install step, when PyLate is missing or an
    extension does not build (no compiler, no ninja, a torch it does not compile against).
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))
    try:
        from pylate.indexes import PLAID
        from pylate.indexes.stanford_nlp.modeling import colbert as scoring
        from pylate.indexes.stanford_nlp.search.index_storage import IndexScorer
        from pylate.indexes.stanford_nlp.search.strided_tensor import StridedTensor
    except ImportError as exc:
        raise PLAIDUnavailableError(f"PyLate's PLAID engine is not installed ({exc}); {INSTALL_STEP}") from None
    try:
        with quiet_engine():  # the first call compiles; later calls (and processes) load the cached builds
            IndexScorer.try_load_torch_extensions(use_gpu=False)
            StridedTensor.try_load_torch_extensions(use_gpu=False)
            if scoring._segmented_maxsim is None:  # loaded lazily at the first search otherwise
                scoring._segmented_maxsim = scoring.try_load_torch_extensions(use_gpu=False)
    except Exception as exc:  # torch raises RuntimeError, OSError or CalledProcessError here
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise PLAIDUnavailableError(
            f"PyLate's PLAID C++ extensions could not be built in {os.environ['TORCH_EXTENSIONS_DIR']} "
            f"({first}); they need a C++ compiler and ninja; {INSTALL_STEP}") from None
    return PLAID


def nearest_centroids(centroids, embs, block: int = 4096):
    """Index of the nearest (highest inner product) centroid of each row of ``embs``: the argmax
    colbert-ai's ``ResidualCodec.compress_into_codes`` computes, in blocks of ``block`` rows, each a
    contiguous (block, centroids) product reduced along its rows (a 4,096 x 8,192 block is 128 MB
    and stays in cache-friendly order; colbert-ai's CPU path forms (centroids, 65,536) matrices of
    2 GiB and reduces them across rows)."""
    import torch

    c = centroids.float()
    if len(embs) == 0:
        return torch.empty(0, dtype=torch.long)
    return torch.cat([(b.float() @ c.T).argmax(dim=1) for b in embs.split(block)])


@contextlib.contextmanager
def cpu_build_path():
    """While building on CPU: k-means by ``faiss.Kmeans`` as colbert-ai runs it, and
    :func:`nearest_centroids` for the code assignment; PyLate's own functions are restored after.
    Yields which k-means runs (for the index metadata). Not thread-safe (it patches PyLate's
    modules): one build at a time per process."""
    import torch

    if torch.cuda.is_available():  # PyLate's GPU path is already fast
        yield "pylate (GPU path)"
        return
    import faiss
    from pylate.indexes.stanford_nlp.indexing import collection_indexer
    from pylate.indexes.stanford_nlp.indexing.codecs.residual import ResidualCodec

    def compress_into_codes(self, embs, out_device):
        return nearest_centroids(self.centroids, embs).to(device=out_device)

    original_codes, original_faiss = ResidualCodec.compress_into_codes, collection_indexer.use_faiss

    # colbert-ai's compute_faiss_kmeans calls faiss.Kmeans(..., verbose=True), which prints each
    # iteration from C++ (past Python's stdout), and faiss warns on stderr when a sample has fewer
    # than 39 points per centroid (small collections); min_points_per_centroid only sets that
    # warning's threshold. Everything else it takes from faiss is the same.
    quiet = types.SimpleNamespace(Kmeans=lambda *args, **kw: faiss.Kmeans(
        *args, **{**kw, "verbose": False, "min_points_per_centroid": 1}))
    original_module = getattr(collection_indexer, "faiss", None)
    collection_indexer.faiss = quiet
    collection_indexer.use_faiss = True
    ResidualCodec.compress_into_codes = compress_into_codes
    try:
        yield "faiss (cpu_build_path)"
    finally:
        ResidualCodec.compress_into_codes = original_codes
        collection_indexer.use_faiss = original_faiss
        if original_module is None:
            del collection_indexer.faiss
        else:
            collection_indexer.faiss = original_module


@dataclass
class PLAIDConfig:
    """How the PLAID index is built: ``nbits`` per residual dimension (1, 2 or 4) and the k-means
    iterations for the centroids (colbert-ai's default 4; the number of centroids is colbert-ai's
    ``2 ** floor(log2(16 * sqrt(tokens)))``)."""

    nbits: int = 2
    kmeans_niters: int = 4

    def __post_init__(self):
        if self.nbits not in NBITS_CHOICES:
            raise ValueError(f"PLAID nbits must be one of {NBITS_CHOICES}, not {self.nbits}")


def component_bytes(index_dir) -> dict[str, int]:
    """Bytes on disk of a PLAID index by part: residuals, centroid codes, inverted file, centroid table
    (+ bucket cutoffs), document lengths, ids and metadata."""
    parts = {"residuals": 0, "codes": 0, "ivf": 0, "centroids": 0, "doclens": 0, "ids": 0, "metadata": 0}
    for f in Path(index_dir).rglob("*"):
        if not f.is_file():
            continue
        n = f.name
        part = ("residuals" if n.endswith(".residuals.pt") else "codes" if n.endswith(".codes.pt")
                else "ivf" if n.startswith("ivf") else "doclens" if n.startswith("doclens")
                else "centroids" if n in ("centroids.pt", "buckets.pt", "avg_residual.pt")
                else "ids" if n.endswith(".pkl") or n == DOCID_FILE else "metadata")
        parts[part] += f.stat().st_size
    return parts


def build_plaid_index(token_index_dir, index_dir, config: PLAIDConfig | None = None) -> dict:
    """Compress the token vectors of an exact ColBERT index (:func:`simlm_ir.index.colbert.build_colbert_index`)
    into a PLAID index at ``index_dir`` (built under a temp name, renamed when complete).

    Returns the metadata written to ``simlm_plaid.json``: sizes by part, token count, build seconds
    (the compression only; the encoding is the token index's).
    """
    config = config or PLAIDConfig()
    vectors, doclens, docids, token_meta = read_colbert_index(token_index_dir)
    dim = int(token_meta["dim"])
    if dim % (8 * config.nbits):  # colbert-ai packs each vector's residual bits into whole bytes per bit plane
        raise ValueError(f"{token_index_dir}: PLAID with {config.nbits}-bit residuals needs a vector dimension that "
                         f"is a multiple of {8 * config.nbits}; this model's is {dim}")
    PLAID = load_plaid()
    start = time.perf_counter()
    offsets = np.concatenate([[0], np.cumsum(doclens)])
    docs = [vectors[offsets[i]:offsets[i + 1]].astype(np.float32) for i in range(len(doclens))]
    index_dir = Path(index_dir)
    with atomic_directory(index_dir) as tmp:
        index = PLAID(index_folder=str(tmp), index_name=PLAID_NAME, override=True, use_fast=False,
                      nbits=config.nbits, kmeans_niters=config.kmeans_niters, embedding_size=dim)
        with quiet_engine(), cpu_build_path() as kmeans:
            index.add_documents(documents_ids=docids, documents_embeddings=docs)
        (tmp / DOCID_FILE).write_text("".join(d + "\n" for d in docids), encoding="utf-8")
        plan = json.loads((tmp / PLAID_NAME / "plan.json").read_text())
        parts = component_bytes(tmp)
        meta = {"engine": "pylate.indexes.PLAID(use_fast=False)", "build_version": BUILD_VERSION,
                "kmeans": kmeans,
                "config": asdict(config),
                "docs": len(docids), "tokens": int(doclens.sum()), "dim": dim,
                "centroids": int(plan["num_partitions"]), "model_key": token_meta["model_key"],
                "checkpoint": token_meta.get("checkpoint", ""), "bytes": parts,
                "build_seconds": time.perf_counter() - start}
        (tmp / PLAID_META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta
