#!/usr/bin/env python
"""Main job: every available system on each collection -> TREC runs + leaderboard (``make run``).

    python benchmarks/run_beir.py                       # the embedded default collection
    python benchmarks/run_beir.py --datasets beir/scifact/test nfcorpus/      # ids and BEIR directories
    python benchmarks/run_beir.py --corpus corpus.jsonl.gz --topics topics.tsv --qrels qrels.txt \
        --name mine --dense mine=path/to/checkpoint --tune-on dev_topics.tsv dev_qrels.txt

A collection is an ir_datasets id (offline, its files must already be under $IR_DATASETS_HOME; a
missing one is reported in one line and skipped), a directory in BEIR's unzipped layout
(``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``; the hybrid tunes on ``qrels/dev.tsv``
when there is one), or your three files. A bad file stops its collection with one line naming the
file and line. Runs and the leaderboard go to ``<runs-dir>/<collection>/``. With several
collections, a summary table (nDCG@10 per collection and the average) is printed and written to
``<runs-dir>/summary.md``; published numbers are shown in their own tables, never among the
measured rows.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from simlm_ir.bench.job import BenchmarkJob, run_job, user_collection
from simlm_ir.bench.lineup import BASELINE_CHOICES, add_arguments, add_run_arguments
from simlm_ir.bench.systems import SYSTEM_CHOICES
from simlm_ir.data.embedded import DEFAULT_DATASET
from simlm_ir.errors import SimLMIRError
from simlm_ir.eval.measures import DEFAULT_MEASURES


def parse_dense(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --dense expects NAME=CHECKPOINT, got {item!r}")
        name, ckpt = item.split("=", 1)
        out[name] = ckpt
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=None,
                    help=f"ir_datasets ids and/or BEIR directories (default: {DEFAULT_DATASET}, unless --corpus)")
    g = ap.add_argument_group("your own files (Pyserini's formats)")
    g.add_argument("--corpus", help="JSONL corpus ({id, contents} or {id, title, text}; .jsonl.gz too), or a "
                                    "directory of them")
    g.add_argument("--topics", help="topics: TSV 'qid<TAB>query' or JSONL {_id, text}")
    g.add_argument("--qrels", help="qrels: TREC 'qid 0 docid relevance' or BEIR TSV")
    g.add_argument("--name", help="collection name: runs go to <runs-dir>/<name>/ (default: the corpus file's stem)")
    # Every system but OPQ, whose rotation training takes minutes on 2 cores for a row the SQ8 one dominates.
    ap.add_argument("--systems", nargs="+", default=[s for s in SYSTEM_CHOICES + BASELINE_CHOICES if s != "simlm-pq"],
                    choices=SYSTEM_CHOICES + BASELINE_CHOICES,
                    help="systems to run (default: all; 'recorded' = runs under runs/<collection>/recorded/; "
                         "'hybrid'/'rrf' fuse SimLM and BM25)")
    ap.add_argument("--dense", nargs="*", metavar="NAME=CHECKPOINT",
                    help="extra SimLM-format dense systems: any checkpoint Pyserini's --encoder simlm: takes")
    ap.add_argument("--record", nargs="*", metavar="SYSTEM", default=None,
                    help="also record runs under runs/<collection>/recorded/ for later tables: the named systems "
                         "(leaderboard names), or with no names the --dense systems")
    ap.add_argument("--rerank-depth", type=int, default=20,
                    help="BM25 depth the re-ranker re-scores (default %(default)s on CPU; the paper re-ranks the "
                         "top 100)")
    ap.add_argument("--reranker", default="reranker-default", metavar="CHECKPOINT",
                    help="the re-ranker row's cross-encoder: the shipped one (default), a directory from python -m "
                         "simlm_ir.train.rerank, or any 1-logit sequence-classification checkpoint")
    ap.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES), help="ir-measures names")
    ap.add_argument("--hits", type=int, default=1000, help="depth of each run")
    add_run_arguments(ap)
    add_arguments(ap)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda message, *a, **k: f"warning: {message}\n"
    datasets = list(args.datasets or ([] if args.corpus else [DEFAULT_DATASET]))
    try:
        if args.corpus:
            datasets.append(user_collection(args.corpus, args.topics, args.qrels, args.name))
        elif args.topics or args.qrels:
            raise SimLMIRError("--topics and --qrels go with --corpus")
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    job = BenchmarkJob(datasets=datasets, systems=args.systems, dense=parse_dense(args.dense), record=
                       None if args.record is None else set(args.record), rerank_depth=args.rerank_depth,
                       measures=args.measures, hits=args.hits, k1=args.k1, b=args.b, threads=args.threads,
                       runs_dir=args.runs_dir, work_dir=args.work_dir, colbert=args.colbert, alpha=args.alpha,
                       tune_on=args.tune_on, alpha_grid=args.alpha_grid, fusion_depth=args.fusion_depth,
                       plaid_nbits=args.plaid_nbits, reranker=args.reranker)
    _, failed = run_job(job, warn=lambda line: print(line, file=sys.stderr))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
