r"""Score each training query's group with the cross-encoder, for the distillation stage.

    python -m simlm_ir.train.teacher_scores --reranker reranker --train-file stage1_negs.jsonl \
        --negatives 23 --output teacher.jsonl

The output is the training file again, each query with ``teacher_scores`` for its positives and
its top ``--negatives`` mined negatives (raw logits).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.reranker import CrossEncoder
from simlm_ir.train.data import read_train_file, write_train_file
from simlm_ir.util.cli import arg, parse_config
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


@dataclass
class TeacherScoresConfig:
    """The command line (one flag per field)."""

    reranker: str = arg(help="cross-encoder checkpoint (python -m simlm_ir.train.rerank)")
    train_file: str = arg(help="training JSONL to score (python -m simlm_ir.train.mine)")
    output: str = arg(help="the training JSONL again, with teacher_scores")
    corpus: str = arg("debian-known-item", "passages: JSONL file/dir or ir_datasets id", aliases=["--dataset"])
    negatives: int = arg(23, "score the top N negatives")
    device: str | None = arg(None, "cpu, cuda, cuda:1 (default: cuda if available)")


def main(argv=None) -> int:
    cfg = parse_config(TeacherScoresConfig, argv, prog="python -m simlm_ir.train.teacher_scores", description=__doc__)
    try:
        n = score_train_file(cfg.reranker, cfg.train_file, cfg.output, cfg.corpus, cfg.negatives, cfg.device)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} queries scored -> {cfg.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
