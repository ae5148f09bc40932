"""PLAID search over a compressed ColBERTv2 index (built by :func:`simlm_ir.index.plaid.build_plaid_index`).

Candidate generation through the centroids' inverted lists, centroid pruning, then MaxSim over the
decompressed residuals of the best candidates: colbert-ai's search as PyLate 1.6.0 ships it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from simlm_ir.errors import InputFormatError
from simlm_ir.index.plaid import DOCID_FILE, PLAID_META, PLAID_NAME, load_plaid, quiet_engine
from simlm_ir.util.io import dir_size_bytes


class PLAIDIndex:
    """A PLAID index loaded from disk.

    Search settings are PyLate's defaults for its PLAID class (``ncells`` 8 centroids probed per
    query token, centroid score threshold 0.35, ``ndocs`` 8192 candidates fully scored), which are at
    least as thorough as colbert-ai's own defaults for ``k`` > 100 (4, 0.4, ``max(4k, 8192)``).
    """

    def __init__(self, index_dir, ncells: int = 8, centroid_score_threshold: float = 0.35, ndocs: int = 8192):
        self.dir = Path(index_dir)
        meta_file = self.dir / PLAID_META
        if not meta_file.exists():
            raise InputFormatError(self.dir, None, f"not a PLAID index (no {PLAID_META})")
        self.meta = json.loads(meta_file.read_text())
        self.docids = (self.dir / DOCID_FILE).read_text(encoding="utf-8").splitlines()
        if len(self.docids) != self.meta["docs"]:
            raise InputFormatError(self.dir / DOCID_FILE, None,
                                   f"holds {len(self.docids)} ids, expected {self.meta['docs']}; rebuild the index")
        PLAID = load_plaid()
        with quiet_engine():
            index = PLAID(index_folder=str(self.dir), index_name=PLAID_NAME, override=False, use_fast=False,
                          nbits=self.meta["config"]["nbits"], embedding_size=self.meta["dim"],
                          n_ivf_probe=ncells, centroid_score_threshold=centroid_score_threshold,
                          n_full_scores=ndocs)
        if index._index.searcher is None:
            raise InputFormatError(self.dir / PLAID_NAME, None, "PLAID index is incomplete; rebuild it")
        # colbert-ai's Searcher, called directly: PyLate's wrapper re-reads its id pickle on every query
        self.searcher = index._index.searcher

    @property
    def size_bytes(self) -> int:
        return dir_size_bytes(self.dir)

    def search(self, q: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Top ``k`` (doc id, MaxSim score) for one query's token vectors (Lq, dim), best first."""
        k = min(k, len(self.docids))
        if k <= 0:
            return []
        with quiet_engine():
            pids, _, scores = self.searcher.search(np.asarray(q, dtype=np.float32), k=k)
        return [(self.docids[int(p)], float(s)) for p, s in zip(pids, scores)]
