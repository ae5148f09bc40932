"""Run retrieval systems over a collection and produce TREC runs and a leaderboard.

A *system* is anything with a ``name``, ``prepare(collection, work_dir)`` (build or reuse its
index; returns an :class:`IndexInfo`) and ``search(queries, k)`` (returns a
:class:`~simlm_ir.bm25.SearchResult`). Adding SimLM, ColBERT or a fusion is adding a system.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Protocol, Sequence

from simlm_ir.bm25 import SearchResult
from simlm_ir.collections import Collection, load_collection
from simlm_ir.evaluation import DEFAULT_MEASURES, evaluate
from simlm_ir.leaderboard import SystemResult, to_markdown, write_leaderboard
from simlm_ir.runs import write_trec_run
from simlm_ir.systems import IndexInfo, record_run


class System(Protocol):
    name: str

    def prepare(self, collection: Collection, work_dir: Path) -> IndexInfo: ...

    def search(self, queries: dict[str, str], k: int) -> SearchResult: ...


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-").lower()


def run_benchmark(dataset, systems: Sequence[System], runs_dir="runs", work_dir="work",
                  measures: Sequence[str] = DEFAULT_MEASURES, hits: int = 1000,
                  record: set[str] = frozenset()) -> tuple[list[SystemResult], str]:
    """Index, search and evaluate every system on ``dataset`` (an ir_datasets id or a collection
    object such as :class:`~simlm_ir.collections.LocalCollection`); write runs and the leaderboard.

    Returns the results and the Markdown table. Runs go to ``runs/<collection>/<system>.trec``;
    systems named in ``record`` are also recorded under ``runs/<collection>/recorded/``.
    """
    collection = load_collection(dataset) if isinstance(dataset, str) else dataset
    queries, qrels = collection.queries, collection.qrels
    out_dir = Path(runs_dir) / collection.slug
    results: list[SystemResult] = []
    for system in systems:
        info = system.prepare(collection, Path(work_dir))
        searched = system.search(queries, hits)
        write_trec_run(searched.run, out_dir / f"{file_stem(system.name)}.trec", tag=file_stem(system.name))
        if system.name in record:
            record_run(out_dir / "recorded", file_stem(system.name), system.name, getattr(system, "note", ""),
                       searched, info, {"checkpoint": str(getattr(system, "checkpoint", ""))})
        results.append(SystemResult(
            name=system.name, evaluation=evaluate(searched.run, qrels, measures),
            index_bytes=info.size_bytes,
            latency_ms=statistics.fmean(searched.latencies_ms) if searched.latencies_ms else None,
            encode_s=info.build_seconds, note=getattr(system, "note", "")))
    title = f"{collection.dataset_id}: {len(qrels)} judged queries"
    write_leaderboard(results, measures, out_dir, title)
    return results, to_markdown(results, measures, title)
