"""Dense retrieval over a Pyserini-layout FAISS index (built by :mod:`simlm_ir.index.faiss`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from simlm_ir.encode.encoder import as_encoder
from simlm_ir.errors import InputFormatError
from simlm_ir.index.faiss import DOCID_FILE, INDEX_FILE, META_FILE


@dataclass(frozen=True)
class Hit:
    """One search result; the same fields as Pyserini's ``DenseSearchResult``."""

    docid: str
    score: float


def load_index(index_dir) -> tuple[faiss.Index, list[str]]:
    """Read ``index`` and ``docid`` of a Pyserini-layout index directory, checking they agree."""
    d = Path(index_dir)
    if not d.is_dir():
        raise InputFormatError(d, None, "no such index directory")
    if not (d / INDEX_FILE).is_file():
        raise InputFormatError(d / INDEX_FILE, None, "missing: not a FAISS index directory "
                                                     "(expected 'index' and 'docid' files)")
    if not (d / DOCID_FILE).is_file():
        raise InputFormatError(d / DOCID_FILE, None, "missing: the index needs a docid file with one id "
                                                     "per line, in index order")
    try:
        index = faiss.read_index(str(d / INDEX_FILE))
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0]
        raise InputFormatError(d / INDEX_FILE, None, f"not a readable FAISS index ({first_line})") from None
    docids = [line.rstrip() for line in (d / DOCID_FILE).read_text(encoding="utf-8").splitlines()]
    if len(docids) != index.ntotal:
        raise InputFormatError(d / DOCID_FILE, None, f"holds {len(docids)} ids but the index holds "
                                                     f"{index.ntotal} vectors")
    return index, docids


class DenseSearcher:
    """Search a Pyserini-layout FAISS index with a SimLM query encoder.

    ``encoder``: a ``SimLMEncoder``, a Pyserini query encoder, or a checkpoint name; by default the
    checkpoint recorded when the index was built. Results are :class:`Hit` lists, best first.
    """

    def __init__(self, index_dir, encoder=None, *, ef_search: int | None = None,
                 nprobe: int | None = None, threads: int | None = None, **encoder_kwargs):
        self.index_dir = Path(index_dir)
        self.index, self.docids = load_index(index_dir)
        meta_file = self.index_dir / META_FILE
        self.meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        if encoder is None:
            if "encoder" not in self.meta:
                raise ValueError(f"{self.index_dir}: no {META_FILE} records the encoder; pass encoder=")
            encoder = self.meta["encoder"]
        self.encoder = as_encoder(encoder, **encoder_kwargs)
        enc_dim = getattr(self.encoder, "dim", None)
        if enc_dim is not None and enc_dim != self.index.d:
            raise InputFormatError(self.index_dir / INDEX_FILE, None,
                                   f"index holds {self.index.d}-dim vectors but the encoder "
                                   f"{getattr(self.encoder, 'name', self.encoder)!r} produces {enc_dim}-dim vectors")
        if ef_search is not None:
            self.set_ef_search(ef_search)
        if nprobe is not None:
            try:
                faiss.extract_index_ivf(self.index).nprobe = nprobe
            except RuntimeError:
                raise ValueError(f"{self.index_dir}: nprobe applies to IVF indexes only") from None
        self.threads = threads

    def set_ef_search(self, ef_search: int) -> None:
        hnsw = getattr(faiss.downcast_index(self.index), "hnsw", None)
        if hnsw is None:
            raise ValueError(f"{self.index_dir}: efSearch applies to HNSW indexes only")
        hnsw.efSearch = ef_search

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        if hasattr(self.encoder, "encode_queries"):
            return self.encoder.encode_queries(queries)
        if hasattr(self.encoder, "encode_batch"):
            return np.asarray(self.encoder.encode_batch(list(queries)), dtype=np.float32)
        return np.stack([np.asarray(self.encoder.encode(q), dtype=np.float32).reshape(-1) for q in queries])

    def search_vectors(self, q: np.ndarray, k: int = 10) -> list[list[Hit]]:
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        if q.shape[1] != self.index.d:
            raise ValueError(f"query vectors have {q.shape[1]} dims, the index {self.index.d}")
        if self.threads:
            faiss.omp_set_num_threads(self.threads)
        scores, ids = self.index.search(q, k)
        return [[Hit(self.docids[i], float(s)) for s, i in zip(srow, irow) if i != -1]
                for srow, irow in zip(scores, ids)]

    def search(self, query: str | np.ndarray, k: int = 10) -> list[Hit]:
        """Top-``k`` hits of one query (text, or an already encoded vector)."""
        q = self.encode([query]) if isinstance(query, str) else query
        return self.search_vectors(q, k)[0]

    def batch_search(self, queries: Sequence[str], qids: Sequence[str], k: int = 10) -> dict[str, list[Hit]]:
        """Top-``k`` hits of each query, keyed by query id (Pyserini's ``batch_search`` shape)."""
        if len(queries) != len(qids):
            raise ValueError(f"{len(queries)} queries but {len(qids)} query ids")
        return dict(zip(map(str, qids), self.search_vectors(self.encode(queries), k)))
