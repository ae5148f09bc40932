"""Types every retrieval system shares: what a search returns, what building an index cost, and the
``System`` protocol (``prepare`` an index for a collection, then ``search`` queries)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from simlm_ir.data.trec import Run


@dataclass
class SearchResult:
    run: Run
    latencies_ms: list[float]  # one per query, searched one at a time


@dataclass
class IndexInfo:
    size_bytes: int | None
    build_seconds: float | None  # time the index took to build (recorded with cached indexes)


class System(Protocol):
    name: str

    def prepare(self, collection, work_dir: Path) -> IndexInfo: ...

    def search(self, queries: dict[str, str], k: int) -> SearchResult: ...
