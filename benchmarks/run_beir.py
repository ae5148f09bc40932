#!/usr/bin/env python
"""Main job: every available system on BEIR-style collections -> TREC runs + leaderboard.

    python benchmarks/run_beir.py                       # the embedded default collection
    python benchmarks/run_beir.py --datasets beir/scifact/test beir/nfcorpus/test

Collections are ir_datasets ids; offline they must already be under $IR_DATASETS_HOME.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simlm_ir.benchmark import run_benchmark  # noqa: E402
from simlm_ir.systems import BM25System  # noqa: E402
from simlm_ir.embedded import DEFAULT_DATASET  # noqa: E402
from simlm_ir.errors import SimLMIRError  # noqa: E402
from simlm_ir.evaluation import DEFAULT_MEASURES  # noqa: E402


def build_systems(args) -> list:
    systems = []
    if "bm25" in args.systems:
        systems.append(BM25System(k1=args.k1, b=args.b, threads=args.threads))
    return systems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=[DEFAULT_DATASET], help="ir_datasets ids (default: %(default)s)")
    ap.add_argument("--systems", nargs="+", default=["bm25"], choices=["bm25"], help="systems to run")
    ap.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES), help="ir-measures names")
    ap.add_argument("--hits", type=int, default=1000, help="depth of each run")
    ap.add_argument("--k1", type=float, default=0.9, help="BM25 k1")
    ap.add_argument("--b", type=float, default=0.4, help="BM25 b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs", help="where runs and leaderboards go")
    ap.add_argument("--work-dir", default="work", help="cache for indexes")
    args = ap.parse_args(argv)
    for dataset in args.datasets:
        try:
            _, table = run_benchmark(dataset, build_systems(args), args.runs_dir, args.work_dir,
                                     args.measures, args.hits)
        except SimLMIRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
