"""Run retrieval systems over a collection and produce TREC runs and a leaderboard (judged by qrels,
or by DPR answer match for open-domain QA).

A *system* is anything with a ``name``, ``prepare(collection, work_dir)`` (build or reuse its
index; returns an :class:`~simlm_ir.search.base.IndexInfo`) and ``search(queries, k)`` (returns a
:class:`~simlm_ir.search.base.SearchResult`): the :class:`~simlm_ir.search.base.System` protocol.
Adding SimLM, ColBERT or a fusion is adding a system. A system whose ``exact_twin`` names another
system of the lineup (a compressed or graph index beside its exact one) gets, in its note, the share
of the twin's top 10 it finds.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Sequence

from simlm_ir.bench.systems import record_run
from simlm_ir.data.datasets import load_collection
from simlm_ir.data.trec import ranked, write_trec_run
from simlm_ir.eval.leaderboard import SystemResult, to_markdown, write_leaderboard
from simlm_ir.eval.measures import DEFAULT_MEASURES, evaluate, neighbour_recall
from simlm_ir.eval.qa import QACollection, answer_qrels, passage_texts
from simlm_ir.search.base import System
from simlm_ir.search.run_cache import cached

TWIN_K = 10  # depth at which an approximate index is compared with its exact twin


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-").lower()


def run_benchmark(dataset, systems: Sequence[System], runs_dir="runs", work_dir="work",
                  measures: Sequence[str] = DEFAULT_MEASURES, hits: int = 1000,
                  record: set[str] = frozenset(), say=print) -> tuple[list[SystemResult], str]:
    """Index, search and evaluate every system on ``dataset`` (an ir_datasets id or a collection
    object such as :class:`~simlm_ir.data.datasets.LocalCollection`); write runs and the leaderboard.

    Returns the results and the Markdown table. Runs go to ``runs/<collection>/<system>.trec``;
    systems named in ``record`` are also recorded under ``runs/<collection>/recorded/``. ``say`` gets
    one line per system with the wall time of its preparation (index build or reuse) and its search,
    so a slow first run shows where its time goes.
    """
    collection = load_collection(dataset) if isinstance(dataset, str) else dataset
    queries, qrels = collection.queries, collection.qrels
    out_dir = Path(runs_dir) / collection.slug
    results: list[SystemResult] = []
    runs = {}
    # every system that can say what decides its run keeps it on disk (work_dir/runs-cache): a second
    # benchmark run only re-times each latency sample
    systems = [cached(s) if callable(getattr(s, "run_key", None)) else s for s in systems]
    for i, system in enumerate(systems, 1):
        t0 = time.perf_counter()
        info = system.prepare(collection, Path(work_dir))
        t1 = time.perf_counter()
        searched = system.search(queries, hits)
        say(f"[{i}/{len(systems)}] {system.name}: prepared in {t1 - t0:.1f} s, "
            f"searched {len(queries)} queries in {time.perf_counter() - t1:.1f} s")
        runs[system.name] = searched.run
        write_trec_run(searched.run, out_dir / f"{file_stem(system.name)}.trec", tag=file_stem(system.name))
        if system.name in record:
            record_run(out_dir / "recorded", file_stem(system.name), system.name, getattr(system, "note", ""),
                       searched, info, {"checkpoint": str(getattr(system, "checkpoint", ""))})
        results.append(SystemResult(
            name=system.name, evaluation=evaluate(searched.run, qrels, measures),
            index_bytes=info.size_bytes,
            latency_ms=statistics.fmean(searched.latencies_ms) if searched.latencies_ms else None,
            encode_s=info.build_seconds, note=getattr(system, "note", "")))
    for system, result in zip(systems, results):
        twin = getattr(system, "exact_twin", None)
        if twin in runs:  # an approximate index beside its exact twin: what did compression lose?
            recall = neighbour_recall(runs[system.name], runs[twin], TWIN_K)
            result.extra[f"recall@{TWIN_K} vs {twin}"] = recall
            result.note = f"{result.note}; {recall:.3f} of {twin}'s top {TWIN_K} found".lstrip("; ")
    title = f"{collection.dataset_id}: {len(qrels)} judged queries"
    write_leaderboard(results, measures, out_dir, title)
    return results, to_markdown(results, measures, title)


def run_qa_benchmark(collection: QACollection, systems, runs_dir="runs", work_dir="work",
                     topk: tuple[int, ...] = (20, 100), published=(), say=print):
    """Index, search and judge by answer match; write runs and the leaderboard.

    Returns (results, Markdown). Runs go to ``runs/<name>/<system>.trec``; measures are
    ``Success@k`` (DPR's top-k accuracy, the papers' "R@k") for each ``k`` in ``topk``.
    """
    depth = max(topk)
    measures = [f"Success@{k}" for k in topk]
    out_dir = Path(runs_dir) / collection.slug
    searched = []
    for system in systems:
        info = system.prepare(collection, Path(work_dir))
        result = system.search(collection.queries, depth)
        write_trec_run(result.run, out_dir / f"{file_stem(system.name)}.trec", tag=file_stem(system.name))
        searched.append((system, info, result))
    retrieved = {d for _, _, r in searched for docs in r.run.values() for d, _ in ranked(docs)[:depth]}
    say(f"judging {len(retrieved)} retrieved passages by answer match")
    qrels = answer_qrels([r.run for _, _, r in searched], collection.answers,
                         passage_texts(collection.dataset_id, retrieved), depth)
    results = [SystemResult(name=s.name, evaluation=evaluate(r.run, qrels, measures), index_bytes=info.size_bytes,
                            latency_ms=statistics.fmean(r.latencies_ms) if r.latencies_ms else None,
                            encode_s=info.build_seconds, note=getattr(s, "note", ""))
               for s, info, r in searched]
    title = f"{collection.name}: {len(collection.queries)} questions, answer-match top-k accuracy (Success@k = R@k)"
    write_leaderboard(results, measures, out_dir, title, published)
    return results, to_markdown(results, measures, title, published)
