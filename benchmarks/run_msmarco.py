#!/usr/bin/env python
"""MS MARCO passage ranking: dev/small (RR@10, R@50, R@1000), TREC DL 2019/2020 (nDCG@10).

    python benchmarks/run_msmarco.py                                  # every split on disk
    python benchmarks/run_msmarco.py --datasets msmarco-passage/dev/small --systems bm25
    python benchmarks/run_msmarco.py --simlm intfloat/simlm-base-msmarco-finetuned --systems bm25 simlm hybrid \
        --alpha 0.5

The collection must already be under $IR_DATASETS_HOME/msmarco-passage/ in ir_datasets' layout:
``collection.tsv`` + ``irds_version.txt`` containing ``v2`` (without it ir_datasets deletes
collection.tsv) + the split's files (``dev/small/queries.tsv`` and ``dev/small/qrels``;
``trec-dl-2019/queries.tsv`` and ``trec-dl-2019/qrels``; ``trec-dl-2020/queries.tsv.gz`` and
``trec-dl-2020/qrels``). A split that is not there is reported in one line and skipped. The hybrid's
alpha is tuned on dev/small for TREC DL; for dev/small itself pass ``--alpha`` or ``--tune-on``.
The SimLM paper's numbers are printed in a separate table under each measured one.

Titles: the published SimLM checkpoints were trained and evaluated on passages with RocketQA titles
(encoded as ``tokenizer(title, passage)``); ir_datasets' msmarco-passage has none (every title is
``-``). ``--corpus FILE`` takes the passages from a JSONL file instead (``{"docid"|"id", "title",
"text"}``, e.g. Tevatron's msmarco-passage corpus; ``.jsonl.gz`` too), with the split's queries and
qrels from ir_datasets; runs then go to ``runs/<split>-titled/``. The README says how to reproduce
the paper's 41.1 RR@10 this way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simlm_ir.bench.lineup import (
    AUTO,
    BASELINE_CHOICES,
    DEFAULT_COLBERT,
    add_arguments,
    add_run_arguments,
    default_tune_split,
    extend_systems,
    tune_spec,
)
from simlm_ir.bench.runner import run_benchmark
from simlm_ir.bench.systems import SYSTEM_CHOICES, build_systems
from simlm_ir.data.datasets import WithCorpus, check_corpus, load_collection
from simlm_ir.errors import SimLMIRError
from simlm_ir.eval.published import leaderboard_with_published
from simlm_ir.search.fusion import DEFAULT_ALPHA_GRID

SPLITS = {
    "msmarco-passage/dev/small": ("RR@10", "R@50", "R@1000"),
    "msmarco-passage/trec-dl-2019/judged": ("nDCG@10",),
    "msmarco-passage/trec-dl-2020/judged": ("nDCG@10",),
}
CHOICES = tuple(c for c in SYSTEM_CHOICES if c != "recorded") + BASELINE_CHOICES
DEFAULT_SYSTEMS = ("bm25", "simlm", "hybrid", "rrf")


def run(datasets, systems, simlm: str = "simlm", runs_dir="runs", work_dir="work", hits: int = 1000,
        k1: float = 0.9, b: float = 0.4, threads: int = 2, colbert: str = DEFAULT_COLBERT,
        alpha: float | None = None, tune_on: str | None = AUTO, alpha_grid=DEFAULT_ALPHA_GRID,
        fusion_depth: int = 1000, corpus: str | None = None, say=print,
        plaid_nbits: int = 2) -> tuple[dict, list[str]]:
    """Benchmark ``systems`` on each split; returns ({split: results}, [splits skipped]).

    ``corpus``: a JSONL file of the same passages with titles, used instead of ir_datasets' (for the
    tuning split too)."""
    done, skipped = {}, []
    for dataset in datasets:
        measures = list(SPLITS.get(dataset, ("RR@10", "nDCG@10", "R@1000")))
        try:
            collection = load_collection(dataset)
            tune = tune_spec(tune_on)
            tune = default_tune_split(dataset) if tune == AUTO else tune
            if corpus is not None:
                check_corpus(corpus)
                collection = WithCorpus(collection, corpus)
                tune = WithCorpus(load_collection(tune), corpus) if isinstance(tune, str) else tune
            lineup = build_systems(systems, None, None, k1, b, threads, simlm=simlm, say=say)
            extend_systems(lineup, systems, dataset, colbert, alpha, tune, measures[0], alpha_grid,
                           fusion_depth, say, plaid_nbits)
            results, _ = run_benchmark(collection, lineup, runs_dir, work_dir, measures, hits)
        except SimLMIRError as exc:
            say(f"skipping {dataset}: {exc}")
            skipped.append(dataset)
            continue
        say(leaderboard_with_published(dataset, results, measures, Path(runs_dir) / collection.slug))
        done[dataset] = results
    return done, skipped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(SPLITS), help="ir_datasets ids (default: all three)")
    ap.add_argument("--systems", nargs="+", default=list(DEFAULT_SYSTEMS), choices=CHOICES,
                    help="systems to run (default: %(default)s)")
    ap.add_argument("--simlm", default="simlm", help="SimLM checkpoint, e.g. intfloat/simlm-base-msmarco-finetuned")
    ap.add_argument("--hits", type=int, default=1000, help="depth of each run")
    ap.add_argument("--corpus", default=None,
                    help="the passages from this JSONL file (with titles: {docid|id, title, text}; .gz too) instead "
                         "of ir_datasets' title-less msmarco-passage; same passage ids")
    add_run_arguments(ap)
    add_arguments(ap)
    args = ap.parse_args(argv)
    done, _ = run(args.datasets, args.systems, args.simlm, args.runs_dir, args.work_dir, args.hits, args.k1, args.b,
                  args.threads, args.colbert, args.alpha, args.tune_on, args.alpha_grid, args.fusion_depth,
                  args.corpus, plaid_nbits=args.plaid_nbits)
    return 0 if done else 2


if __name__ == "__main__":
    sys.exit(main())
