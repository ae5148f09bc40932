#!/usr/bin/env python
"""Natural Questions (open-domain, DPR's Wikipedia passages): top-20/100 retrieval accuracy.

    python benchmarks/run_nq.py                                          # files under $IR_DATASETS_HOME
    python benchmarks/run_nq.py --corpus /data/wikipedia-dpr-100w.jsonl --topics /data/nq-test.qa.csv

Accuracy@k (the papers' R@k, ir-measures' ``Success@k``): a question counts when one of its top k
passages contains an answer string, judged as Pyserini's ``evaluate_dpr_retrieval`` does. Inputs:
``--corpus`` is ir_datasets' ``dpr-w100`` (``$IR_DATASETS_HOME/dpr-w100/docs.tsv.gz``, DPR's
psgs_w100.tsv.gz) or a Pyserini JSONL corpus; ``--topics`` is DPR's ``nq-test.qa.csv``
(default ``$IR_DATASETS_HOME/dpr-w100/nq-test.qa.csv``) or an ir_datasets id with answers
(``dpr-w100/natural-questions/dev``). Missing files are reported in one line. The hybrid's alpha is
tuned on ``dpr-w100/natural-questions/dev`` unless ``--alpha``/``--tune-on`` say otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simlm_ir.bench.lineup import (
    AUTO,
    BASELINE_CHOICES,
    add_arguments,
    add_run_arguments,
    extend_systems,
    tune_spec,
)
from simlm_ir.bench.runner import run_qa_benchmark
from simlm_ir.bench.systems import SYSTEM_CHOICES, build_systems
from simlm_ir.data.embedded import irds_home
from simlm_ir.errors import DatasetNotAvailableError, SimLMIRError
from simlm_ir.eval.published import NQ_TEST
from simlm_ir.eval.qa import QACollection, read_dpr_qas, read_ir_datasets_qas

CHOICES = tuple(c for c in SYSTEM_CHOICES if c != "recorded") + BASELINE_CHOICES
DEFAULT_SYSTEMS = ("bm25", "simlm", "hybrid", "rrf")
NQ_DEV = "dpr-w100/natural-questions/dev"


def default_topics() -> Path:
    return irds_home() / "dpr-w100" / "nq-test.qa.csv"


def load_questions(topics: str | None):
    path = Path(topics) if topics else default_topics()
    if topics and not path.exists() and "/" in topics and not topics.endswith((".csv", ".tsv", ".txt")):
        return read_ir_datasets_qas(topics)
    return read_dpr_qas(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="dpr-w100", help="ir_datasets id or Pyserini JSONL (default: %(default)s)")
    ap.add_argument("--topics", default=None, help="DPR qa.csv file or ir_datasets id with answers "
                                                   "(default: $IR_DATASETS_HOME/dpr-w100/nq-test.qa.csv)")
    ap.add_argument("--name", default="nq-test", help="collection name for runs/<name>/ (default: %(default)s)")
    ap.add_argument("--topk", type=int, nargs="+", default=[20, 100], help="accuracy cut-offs (default: 20 100)")
    ap.add_argument("--systems", nargs="+", default=list(DEFAULT_SYSTEMS), choices=CHOICES,
                    help="systems to run (default: %(default)s)")
    ap.add_argument("--simlm", default="simlm", help="SimLM checkpoint, e.g. intfloat/simlm-base-wiki100w")
    add_run_arguments(ap)
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        questions, answers = load_questions(args.topics)
        collection = QACollection(args.corpus, questions, answers, args.name)
        systems = build_systems(args.systems, None, None, args.k1, args.b, args.threads, simlm=args.simlm)
        tune_on = NQ_DEV if tune_spec(args.tune_on) == AUTO else tune_spec(args.tune_on)
        extend_systems(systems, args.systems, args.name, args.colbert, args.alpha, tune_on,
                       f"Success@{min(args.topk)}", args.alpha_grid, args.fusion_depth, plaid_nbits=args.plaid_nbits)
        published = NQ_TEST if args.name == "nq-test" and set(args.topk) <= {20, 100} else ()
        _, table = run_qa_benchmark(collection, systems, args.runs_dir, args.work_dir, tuple(args.topk), published)
    except DatasetNotAvailableError as exc:
        print(f"NQ not available: {exc}", file=sys.stderr)
        return 2
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
