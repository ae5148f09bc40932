"""ColBERT search: exact MaxSim over a token index, and the benchmark system around it.

Search is exact and brute force: every document's fp16 token vectors are scored with MaxSim for each
query (no PLAID centroids, no residual compression). That is right for our ~5k-passage collection;
at MS MARCO scale use colbert-ai's PLAID index. The reported index size is the uncompressed fp16
token vectors (+ doc lengths and ids), i.e. ColBERTv2 *before* its 1-2 bit residual compression.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from simlm_ir.data.corpus import corpus_fingerprint
from simlm_ir.errors import InputFormatError
from simlm_ir.index.colbert import DOCID_FILE, DOCLENS_FILE, INDEX_META, VECTORS_FILE, build_colbert_index
from simlm_ir.modeling.colbert import ColBERT, model_key
from simlm_ir.search.base import IndexInfo, SearchResult
from simlm_ir.util.progress import progress

SEARCH_CHUNK_TOKENS = 1 << 20  # token vectors scored at once (bounds the similarity matrix)


class ColBERTIndex:
    """Exact MaxSim search over an index built by :func:`build_colbert_index`.

    The fp16 vectors are held in memory as float32 for fast matrix products (2x the file size).
    """

    def __init__(self, index_dir):
        self.dir = Path(index_dir)
        meta_file = self.dir / INDEX_META
        if not meta_file.exists():
            raise InputFormatError(self.dir, None, f"not a ColBERT index (no {INDEX_META})")
        self.meta = json.loads(meta_file.read_text())
        self.docids = (self.dir / DOCID_FILE).read_text(encoding="utf-8").splitlines()
        self.doclens = np.load(self.dir / DOCLENS_FILE)
        dim = int(self.meta["dim"])
        raw = np.fromfile(self.dir / VECTORS_FILE, dtype="<f2")
        if raw.size != int(self.doclens.sum()) * dim or len(self.docids) != len(self.doclens):
            raise InputFormatError(self.dir, None, "index files disagree (vectors, doclens, docid); rebuild it")
        self.vectors = torch.from_numpy(raw.reshape(-1, dim).astype(np.float32))
        self.offsets = np.concatenate([[0], np.cumsum(self.doclens)]).astype(np.int64)
        self._chunks = self._doc_chunks()

    def _doc_chunks(self) -> list[tuple[int, int]]:
        """Document ranges whose tokens fit one similarity matrix."""
        chunks, first = [], 0
        for i in range(1, len(self.doclens) + 1):
            if i == len(self.doclens) or self.offsets[i + 1] - self.offsets[first] > SEARCH_CHUNK_TOKENS:
                chunks.append((first, i))
                first = i
        return [c for c in chunks if c[1] > c[0]]

    @property
    def size_bytes(self) -> int:
        return sum((self.dir / f).stat().st_size for f in (VECTORS_FILE, DOCLENS_FILE, DOCID_FILE))

    def scores(self, q: np.ndarray) -> np.ndarray:
        """MaxSim score of every document for one query's vectors (Lq, dim)."""
        qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).T
        out = np.empty(len(self.doclens), dtype=np.float32)
        with torch.inference_mode():
            for lo, hi in self._chunks:
                t0, t1 = self.offsets[lo], self.offsets[hi]
                sims = (self.vectors[t0:t1] @ qt).numpy()  # (tokens, Lq)
                best = np.maximum.reduceat(sims, self.offsets[lo:hi] - t0, axis=0)  # (docs, Lq)
                out[lo:hi] = best.sum(axis=1)
        return out

    def search(self, q: np.ndarray, k: int) -> list[tuple[str, float]]:
        s = self.scores(q)
        k = min(k, len(s))
        if k <= 0:
            return []
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.lexsort((top, -s[top]))]
        return [(self.docids[i], float(s[i])) for i in top]


class ColBERTSystem:
    """ColBERT for the benchmark: exact MaxSim over fp16 token vectors of the whole collection.

    Index size = the uncompressed fp16 token vectors + doc lengths + doc ids; latency includes
    encoding the query. ``checkpoint``: our trained ColBERT (``python -m simlm_ir.train.colbert``),
    a real ColBERTv2 (local dir or hub id), or a plain BERT (untrained projection: a sanity row).
    """

    def __init__(self, checkpoint: str, name: str = "ColBERT", note: str = "", threads: int | None = None):
        self.checkpoint, self.name, self.note, self.threads = checkpoint, name, note, threads
        self.model: ColBERT | None = None
        self.index: ColBERTIndex | None = None

    def prepare(self, collection, work_dir: Path):
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.model is None:
            self.model = ColBERT.from_pretrained(self.checkpoint)
        corpus_fp, n = corpus_fingerprint(collection.passages())
        index_dir = Path(work_dir) / "colbert" / f"{model_key(self.model)}-{corpus_fp[:16]}"
        if not (index_dir / INDEX_META).exists():
            build_colbert_index(collection.passages(), self.model, index_dir, progress_total=n)
        self.index = ColBERTIndex(index_dir)
        meta = self.index.meta
        if not self.note:
            per_doc = self.index.size_bytes / max(1, meta["docs"])
            self.note = (f"{meta['tokens']:,} fp16 token vectors x {meta['dim']}, {per_doc / 1024:.1f} KB/doc"
                         + ("" if self.model.trained_projection else "; untrained projection"))
        return IndexInfo(self.index.size_bytes, float(meta["build_seconds"]))

    def search(self, queries: Mapping[str, str], k: int):
        run, latencies = {}, []
        for qid, text in progress(queries.items(), desc=f"{self.name} search", unit="q"):
            start = time.perf_counter()
            hits = self.index.search(self.model.encode_query(text), k)
            latencies.append((time.perf_counter() - start) * 1000)
            run[qid] = dict(hits)
        return SearchResult(run, latencies)
