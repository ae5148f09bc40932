"""Score each training query's group with the cross-encoder, for the distillation stage.

    python -m simlm_ir.train.teacher_scores --reranker reranker --train-file stage1_negs.jsonl \
        --negatives 23 --output teacher.jsonl

The output is the training file again, each query with ``teacher_scores`` for its positives and
its top ``--negatives`` mined negatives (raw logits).
"""

from __future__ import annotations

import argparse
import sys

from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.reranker import CrossEncoder
from simlm_ir.train.data import read_train_file, write_train_file
from simlm_ir.util.progress import progress


def score_train_file(reranker, train_file, output, corpus="debian-known-item", negatives: int = 23,
                     device: str | None = None) -> int:
    ce = reranker if isinstance(reranker, CrossEncoder) else CrossEncoder(reranker, device=device)
    docs = {p.id: (p.title, p.text) for p in iter_passages(corpus)}
    examples = read_train_file(train_file, docs)
    for ex in progress(examples, desc="teacher scores", unit="q"):
        group = ex.positives + ex.negatives[:negatives]
        scores = ce.score([ex.query] * len(group), [docs[d][0] for d in group], [docs[d][1] for d in group])
        ex.teacher_scores = {d: round(float(s), 4) for d, s in zip(group, scores)}
    write_train_file(examples, output)
    return len(examples)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simlm_ir.train.teacher_scores", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reranker", required=True, help="cross-encoder checkpoint")
    ap.add_argument("--train-file", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--corpus", "--dataset", dest="corpus", default="debian-known-item")
    ap.add_argument("--negatives", type=int, default=23, help="score the top N negatives (default: %(default)s)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    try:
        n = score_train_file(args.reranker, args.train_file, args.output, args.corpus, args.negatives, args.device)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} queries scored -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
