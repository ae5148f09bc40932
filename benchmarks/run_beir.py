#!/usr/bin/env python
"""Main job: every available system on BEIR-style collections -> TREC runs + leaderboard.

    python benchmarks/run_beir.py                       # the embedded default collection
    python benchmarks/run_beir.py --datasets beir/scifact/test beir/nfcorpus/test

Collections are ir_datasets ids; offline they must already be under $IR_DATASETS_HOME (a missing
one is reported in one line and skipped). With several collections, a summary table (nDCG@10 per
collection and the average) is printed and written to ``<runs-dir>/summary.md``; published numbers
are shown in their own tables, never among the measured rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simlm_ir.bench.lineup import BASELINE_CHOICES, add_arguments, add_run_arguments, extend_systems
from simlm_ir.bench.runner import run_benchmark
from simlm_ir.bench.systems import SYSTEM_CHOICES, build_systems, prefer_live
from simlm_ir.data.embedded import DEFAULT_DATASET
from simlm_ir.errors import SimLMIRError
from simlm_ir.eval.leaderboard import summary_markdown
from simlm_ir.eval.measures import DEFAULT_MEASURES
from simlm_ir.eval.published import leaderboard_with_published, published_rows
from simlm_ir.util.io import atomic_write


def parse_dense(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --dense expects NAME=CHECKPOINT, got {item!r}")
        name, ckpt = item.split("=", 1)
        out[name] = ckpt
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=[DEFAULT_DATASET], help="ir_datasets ids (default: %(default)s)")
    ap.add_argument("--systems", nargs="+", default=list(SYSTEM_CHOICES + BASELINE_CHOICES),
                    choices=SYSTEM_CHOICES + BASELINE_CHOICES,
                    help="systems to run (default: all; 'recorded' = runs under runs/<collection>/recorded/; "
                         "'hybrid'/'rrf' fuse SimLM and BM25)")
    ap.add_argument("--dense", nargs="*", metavar="NAME=CHECKPOINT", help="extra SimLM-format dense systems")
    ap.add_argument("--record", nargs="*", metavar="SYSTEM", default=None,
                    help="also record runs under runs/<collection>/recorded/ for later tables: the named systems "
                         "(leaderboard names), or with no names the --dense systems")
    ap.add_argument("--rerank-depth", type=int, default=20,
                    help="BM25 depth the re-ranker re-scores (default %(default)s: ~0.7 s/query on 2 CPU cores; "
                         "the paper re-ranks the top 100)")
    ap.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES), help="ir-measures names")
    ap.add_argument("--hits", type=int, default=1000, help="depth of each run")
    add_run_arguments(ap)
    add_arguments(ap)
    args = ap.parse_args(argv)
    dense = parse_dense(args.dense)
    per_dataset, failed = {}, False
    for dataset in args.datasets:
        recorded = Path(args.runs_dir) / dataset.replace("/", "-") / "recorded"
        try:
            systems = build_systems(args.systems, recorded, dense, args.k1, args.b, args.threads, args.rerank_depth)
            extend_systems(systems, args.systems, dataset, args.colbert, args.alpha, args.tune_on,
                           args.measures[0], args.alpha_grid, args.fusion_depth, plaid_nbits=args.plaid_nbits)
            systems = prefer_live(systems)
            results, table = run_benchmark(dataset, systems, args.runs_dir, args.work_dir, args.measures, args.hits,
                                           record=set(args.record or dense) if args.record is not None else set())
        except SimLMIRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        if results and published_rows(dataset):  # the same leaderboard, with the published table under it
            table = leaderboard_with_published(dataset, results, args.measures,
                                               Path(args.runs_dir) / dataset.replace("/", "-"))
        print(table)
        per_dataset[dataset] = results
    if len(per_dataset) > 1:
        measure = "nDCG@10" if "nDCG@10" in args.measures else args.measures[0]
        summary = summary_markdown(per_dataset, measure, f"{measure} per collection",
                                   {d: published_rows(d) for d in per_dataset})
        with atomic_write(Path(args.runs_dir) / "summary.md") as fh:
            fh.write(summary)
        print(summary)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
