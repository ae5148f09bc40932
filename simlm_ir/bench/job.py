"""The main benchmark job (``benchmarks/run_beir.py``, ``make run``) as a function: every system on
each named collection -> TREC runs and a leaderboard per collection, and a summary across them.

A collection is an ir_datasets id, a directory in BEIR's unzipped layout (``corpus.jsonl``,
``queries.jsonl``, ``qrels/test.tsv``), or a user's files (:class:`~simlm_ir.data.datasets.LocalCollection`:
JSONL corpus, optionally gzipped; TSV or JSONL topics; TREC or BEIR qrels). Bad files stop their
collection with one line naming the file and line; the other collections still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from simlm_ir.bench.lineup import AUTO, DEFAULT_COLBERT, default_tune_split, extend_systems, tune_spec
from simlm_ir.bench.runner import run_benchmark
from simlm_ir.bench.systems import build_systems, prefer_live
from simlm_ir.data.datasets import LocalCollection, beir_directory, load_collection
from simlm_ir.errors import SimLMIRError
from simlm_ir.eval.leaderboard import summary_markdown
from simlm_ir.eval.measures import DEFAULT_MEASURES
from simlm_ir.eval.published import leaderboard_with_published, published_rows
from simlm_ir.search.fusion import DEFAULT_ALPHA_GRID
from simlm_ir.util.io import atomic_write
from simlm_ir.util.malloc import retain_freed_memory


@dataclass
class BenchmarkJob:
    """What one ``run_beir.py`` invocation runs (field names are the script's flags)."""

    datasets: Sequence = ()  # ir_datasets ids, BEIR directories or collection objects
    systems: Sequence[str] = ()
    dense: dict[str, str] = field(default_factory=dict)  # leaderboard name -> checkpoint
    record: set[str] | None = None
    rerank_depth: int = 20
    reranker: str = "reranker-default"  # the re-ranker row's cross-encoder checkpoint
    measures: Sequence[str] = DEFAULT_MEASURES
    hits: int = 1000
    k1: float = 0.9
    b: float = 0.4
    threads: int = 2
    runs_dir: str = "runs"
    work_dir: str = "work"
    colbert: str = DEFAULT_COLBERT
    alpha: float | None = None
    tune_on: Sequence[str] | str | None = AUTO  # AUTO, a dataset id / BEIR dir, or [TOPICS, QRELS]
    alpha_grid: Sequence[float] = DEFAULT_ALPHA_GRID
    fusion_depth: int = 1000
    plaid_nbits: int = 2


def user_collection(corpus: str, topics: str | None, qrels: str | None, name: str | None = None) -> LocalCollection:
    """The collection of a user's three files; its name (runs/<name>/) defaults to the corpus file's stem."""
    if not topics or not qrels:
        raise SimLMIRError("--corpus needs --topics and --qrels too (the queries to run and their judgements)")
    for path, what in ((corpus, "corpus"), (topics, "topics"), (qrels, "qrels")):
        if not Path(path).exists():
            raise SimLMIRError(f"{path}: no such {what} file")
    stem = Path(corpus).name.split(".")[0] if Path(corpus).is_file() else Path(corpus).name
    return LocalCollection(str(corpus), str(topics), str(qrels), name or stem)


def tuning_collection(tune_on, collection):
    """What the hybrid tunes alpha on: the collection's own dev split by default (ir_datasets' ``/dev``,
    or ``qrels/dev.tsv`` of a BEIR directory); a dataset id or BEIR directory; or ``[TOPICS, QRELS]``
    over the evaluated corpus. None when nothing is known (the hybrid then needs ``alpha``)."""
    if tune_on is None:
        return None
    tune_on = tune_spec(tune_on)
    if tune_on == AUTO:
        if isinstance(collection, LocalCollection):
            qrels = Path(collection.qrels_file)
            if collection.judged_only and (qrels.parent / "dev.tsv").is_file() and qrels.name != "dev.tsv":
                return beir_directory(qrels.parent.parent, "dev")
            return None
        return default_tune_split(collection.dataset_id)
    if not isinstance(tune_on, (str, list, tuple)):
        return tune_on  # a collection object
    items = [tune_on] if isinstance(tune_on, str) else list(tune_on)
    if len(items) == 1:
        return load_collection(items[0], split="dev")
    if len(items) == 2:
        corpus = getattr(collection, "corpus_source", None)
        if not isinstance(collection, LocalCollection):
            raise SimLMIRError("--tune-on TOPICS QRELS needs a file collection (--corpus or a BEIR directory); "
                               "for ir_datasets collections give a dataset id")
        return LocalCollection(corpus, items[0], items[1], f"{collection.dataset_id} tuning topics")
    raise SimLMIRError(f"--tune-on takes a dataset id, a BEIR directory, or TOPICS QRELS; got {items}")


def run_job(job: BenchmarkJob, say: Callable[[str], None] = print,
            warn: Callable[[str], None] = print) -> tuple[dict, bool]:
    """Run ``job``; returns ({collection id: results}, whether any collection failed). Leaderboards are
    written under ``runs_dir/<collection>/``, and ``runs_dir/summary.md`` when there are several."""
    retain_freed_memory()  # searches re-allocate the same large tensors per query (simlm_ir.util.malloc)
    per_dataset, failed = {}, False
    for dataset in job.datasets:
        try:
            collection = load_collection(dataset)
            if isinstance(collection, LocalCollection):
                collection.check_judged_documents()
            recorded = Path(job.runs_dir) / collection.slug / "recorded"
            systems = build_systems(job.systems, recorded, job.dense, job.k1, job.b, job.threads, job.rerank_depth,
                                    reranker=job.reranker, say=say)
            extend_systems(systems, job.systems, collection.dataset_id, job.colbert, job.alpha,
                           tuning_collection(job.tune_on, collection), job.measures[0], job.alpha_grid,
                           job.fusion_depth, say=say, plaid_nbits=job.plaid_nbits)
            systems = prefer_live(systems)
            record = set(job.record or job.dense) if job.record is not None else set()
            results, table = run_benchmark(collection, systems, job.runs_dir, job.work_dir, job.measures, job.hits,
                                           record=record)
        except SimLMIRError as exc:
            warn(f"error: {exc}")
            failed = True
            continue
        if results and published_rows(collection.dataset_id):  # the published table goes under ours
            table = leaderboard_with_published(collection.dataset_id, results, job.measures,
                                               Path(job.runs_dir) / collection.slug)
        say(table)
        per_dataset[collection.dataset_id] = results
    if len(per_dataset) > 1:
        measure = "nDCG@10" if "nDCG@10" in job.measures else job.measures[0]
        summary = summary_markdown(per_dataset, measure, f"{measure} per collection",
                                   {d: published_rows(d) for d in per_dataset})
        with atomic_write(Path(job.runs_dir) / "summary.md") as fh:
            fh.write(summary)
        say(summary)
    return per_dataset, failed
