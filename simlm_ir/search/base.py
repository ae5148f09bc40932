"""Types every retrieval system shares: what a search returns, what building an index cost, and the
``System`` protocol (``prepare`` an index for a collection, then ``search`` queries)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol

from simlm_ir.data.trec import Run


@dataclass
class SearchResult:
    run: Run
    latencies_ms: list[float]  # per query searched alone: every query, or the first LATENCY_QUERIES


# Queries timed one at a time for a row's latency. The benchmark's systems search the whole run in
# batches (what a throughput job does, and several times faster on CPU) and time only this sample
# alone, encoding included (what one user's query costs); fusions add their components' samples.
LATENCY_QUERIES = 32


def sample_latencies(queries: Mapping[str, str], search_one: Callable[[str], object],
                     n: int = LATENCY_QUERIES) -> list[float]:
    """Milliseconds of ``search_one(text)`` for each of the first ``n`` queries, one at a time."""
    out = []
    for text in list(queries.values())[:n]:
        start = time.perf_counter()
        search_one(text)
        out.append((time.perf_counter() - start) * 1000)
    return out


class BatchSearch:
    """What the benchmark's systems share: ``search`` is the run from the system's ``batch_run``
    (all queries at once) and the latency sample from its ``latencies`` (the first queries alone).
    The two halves are apart so a stored run (:mod:`simlm_ir.search.run_cache`) needs only the
    sample re-timed."""

    def search(self, queries: Mapping[str, str], k: int) -> SearchResult:
        latencies = self.latencies(queries, k)
        return SearchResult(self.batch_run(queries, k), latencies)


@dataclass
class IndexInfo:
    size_bytes: int | None
    build_seconds: float | None  # time the index took to build (recorded with cached indexes)


class System(Protocol):
    name: str

    def prepare(self, collection, work_dir: Path) -> IndexInfo: ...

    def search(self, queries: dict[str, str], k: int) -> SearchResult: ...
