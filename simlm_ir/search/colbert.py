"""ColBERT search: exact MaxSim over a token index, and the benchmark system around it (exact or PLAID).

Exact search is brute force: every document's fp16 token vectors are scored with MaxSim for each
query (no centroids, no compression). It is the reference the compressed PLAID index
(:mod:`simlm_ir.search.plaid`) is measured against, and fine at our ~5k passages; at MS MARCO scale
use PLAID.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from simlm_ir.data.corpus import corpus_fingerprint
from simlm_ir.index.colbert import (
    DOCID_FILE,
    DOCLENS_FILE,
    INDEX_META,
    VECTORS_FILE,
    build_colbert_index,
    read_colbert_index,
)
from simlm_ir.modeling.checkpoints import exported_model_line
from simlm_ir.modeling.colbert import ColBERT, model_key
from simlm_ir.search.base import LATENCY_QUERIES, BatchSearch, IndexInfo, sample_latencies
from simlm_ir.util.progress import progress

BLOCK_TOKENS = 1 << 16  # padded token vectors per block: a block's similarity matrix for a batch of
# QUERY_BATCH queries of 32 tokens is BLOCK_TOKENS x 512 float32 = 128 MiB
BLOCK_DOCS = 256  # documents per block at most: fewer lengths share a block, so less padding
QUERY_BATCH = 16  # queries scored together by the exact engine's batch search


class ColBERTIndex:
    """Exact MaxSim search over an index built by :func:`build_colbert_index`.

    The fp16 token vectors are held in memory as float32 (about 2x the file size) in *padded
    blocks*: documents sorted by length, each block a dense (docs, max length, dim) tensor whose
    shorter documents are padded with copies of their own first vector. A copy cannot change a
    maximum, so MaxSim is exact, and a block is scored with one matrix product and one ``amax``
    over its token axis, both multi-threaded in torch. (The flat layout needed a segmented maximum,
    ``np.maximum.reduceat``, single-threaded: the leaderboard's ColBERT exact row, 508 test queries
    and the 32-query latency sample against 337k token vectors, searched in 88.0 s on 2 idle cores;
    in 15.7 s with blocks.) Sorting by length and capping a block at ``BLOCK_DOCS`` documents keep the
    padding small (5.7% on the embedded collection). A document without token vectors is scored 0.
    """

    def __init__(self, index_dir, block_tokens: int = BLOCK_TOKENS, block_docs: int = BLOCK_DOCS):
        self.dir = Path(index_dir)
        vectors, self.doclens, self.docids, self.meta = read_colbert_index(self.dir)
        self.blocks = self._pad(torch.from_numpy(vectors.astype(np.float32)), block_tokens, block_docs)

    def _pad(self, flat: torch.Tensor, block_tokens: int, block_docs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(document indices, padded vectors (docs, L, dim)) blocks of at most ``block_docs``
        documents and ``block_tokens`` padded vectors (a document longer than that is a block of
        its own)."""
        lens = np.asarray(self.doclens, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)])
        flat = torch.cat([flat, torch.zeros(1, flat.shape[1])])  # row -1: the empty document's pad
        blocks, group = [], []
        for d in np.argsort(lens, kind="stable"):
            if group and (len(group) == block_docs or (len(group) + 1) * max(1, lens[d]) > block_tokens):
                blocks.append(group)
                group = []
            group.append(int(d))
        if group:
            blocks.append(group)
        out = []
        for group in blocks:
            width = max(1, int(lens[group[-1]]))  # sorted: the last is the longest
            rows = np.full((len(group), width), len(flat) - 1, dtype=np.int64)
            for r, d in enumerate(group):
                if lens[d]:
                    rows[r] = offsets[d]  # pad with the first vector
                    rows[r, :lens[d]] = np.arange(offsets[d], offsets[d + 1])
            out.append((torch.tensor(group), flat[torch.from_numpy(rows)].contiguous()))
        return out

    @property
    def size_bytes(self) -> int:
        return sum((self.dir / f).stat().st_size for f in (VECTORS_FILE, DOCLENS_FILE, DOCID_FILE))

    def scores(self, q: np.ndarray) -> np.ndarray:
        """MaxSim score of every document for one query's vectors (Lq, dim)."""
        return self.scores_many(np.asarray(q)[None])[0]

    def scores_many(self, qs: np.ndarray) -> np.ndarray:
        """MaxSim scores (n, docs) of n queries' vectors (n, Lq, dim) at once: per block, one matrix
        product for all of them, the maximum over each document's tokens, the sum over each query's."""
        n, lq, dim = qs.shape
        qt = torch.from_numpy(np.ascontiguousarray(qs, dtype=np.float32).reshape(n * lq, dim)).T
        out = torch.empty(n, len(self.doclens))
        with torch.inference_mode():
            for docs, vecs in self.blocks:
                d, width, _ = vecs.shape
                best = (vecs.view(d * width, dim) @ qt).view(d, width, n * lq).amax(dim=1)  # (docs, n x Lq)
                out[:, docs] = best.view(d, n, lq).sum(dim=2).T
        return out.numpy()

    def top_k(self, s: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` best documents of one query's score vector, ties broken by document order."""
        k = min(k, len(s))
        if k <= 0:
            return []
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.lexsort((top, -s[top]))]
        return [(self.docids[i], float(s[i])) for i in top]

    def search(self, q: np.ndarray, k: int) -> list[tuple[str, float]]:
        return self.top_k(self.scores(q), k)


ENGINES = ("exact", "plaid")


class ColBERTSystem(BatchSearch):
    """ColBERT for the benchmark, over one of two indexes of the same token vectors:

    - ``engine="exact"``: brute-force MaxSim over the uncompressed fp16 token vectors (the reference);
      index size = the fp16 vectors + doc lengths + doc ids.
    - ``engine="plaid"``: ColBERTv2's ``nbits`` residual compression searched by PLAID
      (:mod:`simlm_ir.search.plaid`); index size = every file of the PLAID index; build time =
      encoding + compression.

    Latency includes encoding the query. ``checkpoint``: a ColBERT in colbert-ai's layout (``colbert``
    = the shipped one, ours from ``python -m simlm_ir.train.colbert``, or a real ColBERTv2 dir/hub
    id), or a plain BERT (untrained projection: a sanity row).
    """

    def __init__(self, checkpoint: str, engine: str = "exact", nbits: int = 2, name: str | None = None,
                 note: str = "", threads: int | None = None, latency_queries: int = LATENCY_QUERIES):
        if engine not in ENGINES:
            raise ValueError(f"ColBERT engine must be one of {ENGINES}, not {engine!r}")
        self.checkpoint, self.engine, self.nbits, self.note, self.threads = checkpoint, engine, nbits, note, threads
        self.latency_queries = latency_queries
        self.name = name or ("ColBERT exact fp16" if engine == "exact" else f"ColBERT PLAID {nbits}-bit")
        self.model: ColBERT | None = None
        self.index = None

    def prepare(self, collection, work_dir: Path):
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.model is None:
            self.model = ColBERT.from_pretrained(self.checkpoint)
        corpus_fp, n = corpus_fingerprint(collection.passages())
        token_dir = Path(work_dir) / "colbert" / f"{model_key(self.model)}-{corpus_fp[:16]}"
        if not (token_dir / INDEX_META).exists():
            build_colbert_index(collection.passages(), self.model, token_dir, progress_total=n)
        exact = ColBERTIndex(token_dir) if self.engine == "exact" else None
        encode_seconds = float(json.loads((token_dir / INDEX_META).read_text())["build_seconds"])
        trained = exported_model_line(self.checkpoint)  # how the shipped one was trained
        suffix = "" if self.model.trained_projection else "; untrained projection"
        suffix += f"; {trained}" if trained else ""
        self.index_name = token_dir.name  # keyed by model and corpus content
        if exact is not None:
            self.index, meta = exact, exact.meta
            if not self.note:
                self.note = (f"{meta['tokens']:,} fp16 token vectors x {meta['dim']}, "
                             f"{exact.size_bytes / max(1, meta['docs']):,.0f} B/passage{suffix}")
            return IndexInfo(exact.size_bytes, encode_seconds)
        from simlm_ir.index.plaid import BUILD_VERSION, PLAID_META, PLAIDConfig, build_plaid_index
        from simlm_ir.search.plaid import PLAIDIndex

        plaid_dir = token_dir.with_name(f"{token_dir.name}-plaid{self.nbits}-v{BUILD_VERSION}")
        if not (plaid_dir / PLAID_META).exists():
            build_plaid_index(token_dir, plaid_dir, PLAIDConfig(nbits=self.nbits))
        self.index = PLAIDIndex(plaid_dir)
        self.index_name = plaid_dir.name
        meta = self.index.meta
        size = self.index.size_bytes
        if not self.note:
            self.note = (f"{self.nbits}-bit residuals of {meta['tokens']:,} token vectors, {meta['centroids']:,} "
                         f"centroids, {size / max(1, meta['docs']):,.0f} B/passage{suffix}")
        return IndexInfo(size, encode_seconds + float(meta["build_seconds"]))

    def run_key(self) -> dict:
        """What decides this system's runs (:mod:`simlm_ir.search.run_cache`); PLAID's search
        settings are :class:`~simlm_ir.search.plaid.PLAIDIndex`'s defaults, part of the code."""
        return {"system": "colbert", "engine": self.engine, "index": self.index_name}

    def latencies(self, queries: Mapping[str, str], k: int) -> list[float]:
        """The first ``latency_queries`` queries, each encoded and searched alone (ms each)."""
        return sample_latencies(queries, lambda text: self.index.search(self.model.encode_query(text), k),
                                self.latency_queries)

    def batch_run(self, queries: Mapping[str, str], k: int):
        """The run: exact, batched MaxSim; PLAID, one query at a time as its engine searches. Both
        encode the queries in batches first (a query's vectors do not depend on its batch: every
        query is padded to the same fixed length with [MASK] tokens, so a batch adds no padding)."""
        run = {}
        for batch, vecs in self._encoded_batches(queries):
            if self.engine == "exact":  # one matrix product per chunk of token vectors for the batch
                for qid, scores in zip(batch, self.index.scores_many(vecs)):
                    run[qid] = dict(self.index.top_k(scores, k))
            else:
                for qid, q in zip(batch, vecs):
                    run[qid] = dict(self.index.search(q, k))
        return run

    def _encoded_batches(self, queries: Mapping[str, str]):
        """(query ids, their token vectors (n, Lq, dim) float32) for QUERY_BATCH queries at a time,
        with a progress bar that moves per batch."""
        qids = list(queries)
        with progress(total=len(qids), desc=f"{self.name} search", unit="q") as bar:
            for lo in range(0, len(qids), QUERY_BATCH):
                batch = qids[lo:lo + QUERY_BATCH]
                with torch.inference_mode():
                    vecs = self.model.query_vectors(self.model.tokenize_queries([queries[q] for q in batch]))
                yield batch, vecs.float().numpy()
                bar.update(len(batch))
