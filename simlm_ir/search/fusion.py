"""Hybrid retrieval: fuse two runs by Pyserini's normalised interpolation or by RRF, as a system.

*Interpolation* is Pyserini's ``HybridSearcher`` rule (``pyserini/search/hybrid/_searcher.py``):
per query, a document missing from one run gets that run's lowest score; with normalisation each
run's scores become ``(s - (min + max) / 2) / (max - min)``; the fused score is
``primary + alpha * secondary`` (Pyserini: ``dense + alpha * sparse``). It is re-implemented here
with arrays because importing ``pyserini.search.hybrid`` starts the JVM and loads every encoder
(~18 s); tests check it against Pyserini's own function. *RRF* (Cormack et al., k = 60) is
Pyserini's ``pyserini.fusion.reciprocal_rank_fusion`` over ``TrecRun`` objects.

``alpha`` is chosen on a held-out split (``tune_alpha``), never on the split being evaluated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from simlm_ir.data.trec import Qrels, Run, ranked
from simlm_ir.errors import SimLMIRError
from simlm_ir.eval.measures import evaluate
from simlm_ir.search.base import IndexInfo, SearchResult
from simlm_ir.search.run_cache import cached

RRF_K = 60
METHODS = ("interpolation", "rrf")
# weight of the secondary run; with normalisation both runs span [-0.5, 0.5], so 1.0 = equal weight
DEFAULT_ALPHA_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0)


# -- interpolation (Pyserini's hybrid rule) -----------------------------------------------------

def _normalised(scores: np.ndarray, present: np.ndarray, normalization: bool) -> np.ndarray:
    """One run's scores over the union of documents, Pyserini-style (missing -> the run's min)."""
    if present.any():
        lo, hi = float(scores[present].min()), float(scores[present].max())
    else:
        lo, hi = 0.0, 1.0  # Pyserini's defaults for an empty run
    filled = np.where(present, scores, lo)
    if not normalization:
        return filled
    # Pyserini divides by zero when a run has one distinct score; we leave such a run at 0.
    return (filled - (lo + hi) / 2) / ((hi - lo) or 1.0)


@dataclass
class _QueryPair:
    docids: list[str]
    primary: np.ndarray  # normalised scores over docids
    secondary: np.ndarray

    @classmethod
    def build(cls, a: Mapping[str, float], b: Mapping[str, float], normalization: bool) -> "_QueryPair":
        docids = sorted(set(a) | set(b))
        sa = np.array([a.get(d, 0.0) for d in docids], dtype=np.float64)
        sb = np.array([b.get(d, 0.0) for d in docids], dtype=np.float64)
        pa = np.array([d in a for d in docids], dtype=bool)
        pb = np.array([d in b for d in docids], dtype=bool)
        return cls(docids, _normalised(sa, pa, normalization), _normalised(sb, pb, normalization))

    def fuse(self, alpha: float, hits: int | None) -> dict[str, float]:
        fused = alpha * self.secondary + self.primary  # Pyserini's order of operations
        if hits is not None and 0 < hits < len(fused) // 4:  # a short top: rank only the candidates for it
            kth = np.partition(fused, len(fused) - hits)[len(fused) - hits]  # the hits-th best score
            above = np.flatnonzero(fused > kth)
            # ties at the cut go by index (= docid order), as the full stable sort takes them
            top = np.concatenate([above, np.flatnonzero(fused == kth)[: hits - len(above)]])
            order = top[np.lexsort((top, -fused[top]))]
            return {self.docids[i]: float(fused[i]) for i in order}
        order = np.argsort(-fused, kind="stable")[:hits]  # docids are sorted: ties go by docid
        return {self.docids[i]: float(fused[i]) for i in order}


def _pairs(primary: Run, secondary: Run, normalization: bool) -> dict[str, _QueryPair]:
    qids = list(primary) + [q for q in secondary if q not in primary]
    return {q: _QueryPair.build(primary.get(q, {}), secondary.get(q, {}), normalization) for q in qids}


def interpolate(primary: Run, secondary: Run, alpha: float, normalization: bool = True,
                hits: int | None = None) -> Run:
    """Per query: ``primary + alpha * secondary`` over the union of documents (Pyserini's hybrid).

    ``primary`` plays Pyserini's dense run and ``secondary`` its sparse run; ``hits`` cuts each
    fused list (None keeps the union).
    """
    return {q: pair.fuse(alpha, hits) for q, pair in _pairs(primary, secondary, normalization).items()}


def alpha_sweep(primary: Run, secondary: Run, qrels: Qrels, grid: Sequence[float] = DEFAULT_ALPHA_GRID,
                measure: str = "RR@10", normalization: bool = True, hits: int = 1000) -> dict[float, float]:
    """``measure`` of the interpolated run for each alpha of ``grid`` (on held-out queries)."""
    if not grid:
        raise ValueError("the alpha grid is empty")
    pairs = _pairs(primary, secondary, normalization)
    # a measure with a rank cutoff (nDCG@10) reads only that many documents: fuse no deeper
    depth = min(hits, _cutoff(measure) or hits)
    out = {}
    for alpha in grid:
        run = {q: pair.fuse(alpha, depth) for q, pair in pairs.items()}
        out[float(alpha)] = evaluate(run, qrels, [measure]).aggregate[measure]
    return out


def _cutoff(measure: str) -> int | None:
    """The rank cutoff of an ir-measures name (``nDCG@10`` -> 10); None for whole-list measures (AP)."""
    import ir_measures

    return ir_measures.parse_measure(measure).params.get("cutoff")


def tune_alpha(primary: Run, secondary: Run, qrels: Qrels, grid: Sequence[float] = DEFAULT_ALPHA_GRID,
               measure: str = "RR@10", normalization: bool = True, hits: int = 1000) -> float:
    """The alpha of ``grid`` with the best ``measure`` on these (dev) runs; ties go to the first."""
    sweep = alpha_sweep(primary, secondary, qrels, grid, measure, normalization, hits)
    return max(sweep, key=lambda a: (sweep[a], -list(sweep).index(a)))


# -- reciprocal rank fusion (Pyserini's) --------------------------------------------------------

def to_trec_run(run: Run, tag: str = "simlm_ir"):
    """Our ``qid -> {docid: score}`` as Pyserini's ``TrecRun`` (ranks from score, ties by docid)."""
    from pyserini.trectools import TrecRun

    rows = [(qid, "Q0", docid, rank, score, tag)
            for qid, docs in run.items() for rank, (docid, score) in enumerate(ranked(docs), 1)]
    if not rows:
        return TrecRun()
    return TrecRun.from_list(rows)


def from_trec_run(trec) -> Run:
    out: Run = {}
    for topic, docid, score in trec.run_data[["topic", "docid", "score"]].itertuples(index=False):
        out.setdefault(str(topic), {})[str(docid)] = float(score)
    return out


def rrf(runs: Sequence[Run], k: int = RRF_K, depth: int | None = None, hits: int | None = None) -> Run:
    """Reciprocal rank fusion: ``sum 1 / (k + rank)`` over runs, via ``pyserini.fusion``."""
    from pyserini.fusion import reciprocal_rank_fusion

    runs = [r for r in runs if any(r.values())]
    if not runs:
        return {}
    if len(runs) == 1:  # Pyserini's merge needs two runs; one run keeps its order, cut like Pyserini's
        return {q: {d: 1.0 / (k + rank) for rank, (d, _) in enumerate(ranked(docs)[:depth][:hits], 1)}
                for q, docs in runs[0].items()}
    fused = from_trec_run(reciprocal_rank_fusion([to_trec_run(r) for r in runs], rrf_k=k, depth=depth, k=hits))
    order = list(dict.fromkeys(q for r in runs for q in r))
    return {q: fused.get(q, {}) for q in order}


# -- the system -------------------------------------------------------------------------------

def _sum_or_none(values):
    return None if any(v is None for v in values) else sum(values)


class FusionSystem:
    """Two systems fused per query: interpolation (alpha tuned on a held-out split) or RRF.

    ``primary`` is Pyserini's dense side, ``secondary`` (weighted by alpha) its sparse side. Each
    component searches ``depth`` documents per query (Pyserini's ``k0``). Index size and build time
    are the components' sums; the latency of a query is the sum of the components' latencies plus
    the fusion itself (components run one after the other).
    """

    def __init__(self, primary, secondary, method: str = "interpolation", alpha: float | None = None,
                 tune_on=None, grid: Sequence[float] = DEFAULT_ALPHA_GRID, measure: str = "RR@10",
                 normalization: bool = True, depth: int = 1000, rrf_k: int = RRF_K, name: str | None = None,
                 note: str = ""):
        if method not in METHODS:
            raise ValueError(f"fusion method must be one of {METHODS}, not {method!r}")
        self.primary, self.secondary = cached(primary), cached(secondary)
        # tune_on: an ir_datasets id, a BEIR directory, or a collection object (e.g. user dev files)
        self.method, self.alpha, self.tune_on, self.grid, self.measure = method, alpha, tune_on, tuple(grid), measure
        self.normalization, self.depth, self.rrf_k = normalization, depth, rrf_k
        label = "RRF" if method == "rrf" else "hybrid"
        self.name = name or f"{self.primary.name} + {self.secondary.name} ({label})"
        self._user_note = note
        self.sweep: dict[float, float] = {}
        self.note = self._describe()

    def _describe(self) -> str:
        if self.method == "rrf":
            base = f"RRF k={self.rrf_k}"
        elif self.alpha is None:
            base = f"alpha tuned on {self._tune_label}"
        elif self.sweep:
            best = self.sweep[self.alpha]
            base = (f"alpha={self.alpha:g} on {self.secondary.name}, tuned on {self._tune_label} "
                    f"({self.measure} {best:.4f})")
        else:
            base = f"alpha={self.alpha:g} on {self.secondary.name}"
        return f"{base}; {self._user_note}" if self._user_note else base

    @property
    def _tune_label(self) -> str:
        return str(getattr(self.tune_on, "dataset_id", self.tune_on))

    def tune(self, collection, work_dir: Path) -> float:
        """Pick alpha on ``self.tune_on`` (must share no query with ``collection``)."""
        from simlm_ir.data.datasets import load_collection

        if self.tune_on is None:
            raise SimLMIRError(f"{self.name}: give a fixed alpha or a held-out split to tune it on (tune_on)")
        same = "alpha would be tuned on {}, the split being evaluated; tune on a held-out split (e.g. the dev split)"
        if isinstance(self.tune_on, str) and self.tune_on == collection.dataset_id:
            raise SimLMIRError(f"{self.name}: " + same.format(self._tune_label))
        dev = load_collection(self.tune_on, split="dev")  # a BEIR directory: its qrels/dev.tsv
        if dev.dataset_id == collection.dataset_id:
            raise SimLMIRError(f"{self.name}: " + same.format(self._tune_label))
        # the same id with the same text is the same query (ids alone collide across NQ's files)
        shared = {q for q in set(dev.queries) & set(collection.queries) if dev.queries[q] == collection.queries[q]}
        if shared:
            raise SimLMIRError(f"{self.name}: tuning split {self._tune_label} shares {len(shared)} queries with "
                               f"{collection.dataset_id} (e.g. {sorted(shared)[:3]}); tune on held-out queries")
        runs = []
        for system in (self.primary, self.secondary):
            system.prepare(dev, work_dir)
            # tuning needs the runs, not per-query latencies: a system's batch search when it has one
            batch = getattr(system, "batch_run", None)
            runs.append(batch(dev.queries, self.depth) if batch else system.search(dev.queries, self.depth).run)
        self.sweep = alpha_sweep(runs[0], runs[1], dev.qrels, self.grid, self.measure, self.normalization, self.depth)
        return max(self.sweep, key=lambda a: (self.sweep[a], -list(self.sweep).index(a)))

    def prepare(self, collection, work_dir: Path) -> IndexInfo:
        if self.method == "interpolation" and self.alpha is None:
            self.alpha = self.tune(collection, work_dir)
            self.note = self._describe()
        infos = [s.prepare(collection, work_dir) for s in (self.primary, self.secondary)]
        return IndexInfo(_sum_or_none([i.size_bytes for i in infos]), _sum_or_none([i.build_seconds for i in infos]))

    def fuse(self, primary: Run, secondary: Run, hits: int) -> Run:
        if self.method == "rrf":
            return rrf([primary, secondary], k=self.rrf_k, hits=hits)
        if self.alpha is None:
            raise SimLMIRError(f"{self.name}: alpha is not set; call prepare() (it tunes alpha) or pass alpha")
        return interpolate(primary, secondary, self.alpha, self.normalization, hits)

    def search(self, queries: Mapping[str, str], k: int) -> SearchResult:
        depth = max(k, self.depth)
        a, b = (s.search(queries, depth) for s in (self.primary, self.secondary))
        start = time.perf_counter()
        run = self.fuse(a.run, b.run, k)
        fuse_ms = (time.perf_counter() - start) * 1000 / max(1, len(queries))
        latencies = [x + y + fuse_ms for x, y in zip(a.latencies_ms, b.latencies_ms)]
        return SearchResult({q: run.get(q, {}) for q in queries}, latencies)
