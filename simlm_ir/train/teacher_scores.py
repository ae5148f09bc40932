r"""Score each training query's positives and a pool of negatives with the cross-encoder, for distillation.

    python -m simlm_ir.train.teacher_scores --reranker reranker --train-file stage1_negs.jsonl \
        --negatives 200 --random-negatives 10 --output teacher.jsonl

As the authors' code does, the pool is a query's top ``--negatives`` mined negatives plus
``--random-negatives`` random corpus documents (never a positive), and the teacher scores all of
them, so the distillation stage can draw a different group from the pool every epoch
(``simlm_ir.train.data.kd_group``). The output is the training file again, with each query's
negatives replaced by its scored pool and ``teacher_scores`` (raw logits) for positives and pool.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Sequence

from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.reranker import CrossEncoder
from simlm_ir.train.data import TrainExample, derive_seed, read_train_file, write_train_file
from simlm_ir.util.cli import arg, parse_config
from simlm_ir.util.progress import progress

POOL_NEGATIVES = 200  # the authors draw their pool from the top 200 mined negatives
RANDOM_NEGATIVES = 10  # ... and pad it with 10 random ones


def negative_pool(ex: TrainExample, index: int, negatives: int, random_negatives: int,
                  doc_ids: Sequence[str], seed: int) -> list[str]:
    """Top ``negatives`` mined negatives, then ``random_negatives`` random corpus documents that are
    neither positive nor already in the pool (fewer only when the corpus runs out); the random
    draw depends only on (seed, example index)."""
    pool = ex.negatives[:negatives]
    taken = set(pool) | set(ex.positives)
    free = len(doc_ids) - len(taken & set(doc_ids))
    rng = random.Random(derive_seed(seed, 5, index))
    extra: list[str] = []
    while len(extra) < min(random_negatives, free):
        d = doc_ids[rng.randrange(len(doc_ids))]
        if d not in taken:
            taken.add(d)
            extra.append(d)
    return pool + extra


def score_train_file(reranker, train_file, output, corpus="debian-known-item", negatives: int = POOL_NEGATIVES,
                     device: str | None = None, random_negatives: int = RANDOM_NEGATIVES, seed: int = 42) -> int:
    """Write ``output``: ``train_file`` with each query's scored negative pool; returns the query count."""
    if negatives < 0 or random_negatives < 0 or negatives + random_negatives == 0:
        raise SimLMIRError("--negatives and --random-negatives must be >= 0 and not both 0: "
                           "distillation needs scored negatives")
    ce = reranker if isinstance(reranker, CrossEncoder) else CrossEncoder(reranker, device=device)
    docs = {p.id: (p.title, p.text) for p in iter_passages(corpus)}
    doc_ids = sorted(docs)
    examples = read_train_file(train_file, docs)
    for i, ex in enumerate(progress(examples, desc="teacher scores", unit="q")):
        ex.negatives = negative_pool(ex, i, negatives, random_negatives, doc_ids, seed)
        group = ex.positives + ex.negatives
        scores = ce.score([ex.query] * len(group), [docs[d][0] for d in group], [docs[d][1] for d in group])
        ex.teacher_scores = {d: round(float(s), 4) for d, s in zip(group, scores)}
    write_train_file(examples, output)
    return len(examples)


@dataclass
class TeacherScoresConfig:
    """The command line (one flag per field)."""

    reranker: str = arg(help="cross-encoder checkpoint (python -m simlm_ir.train.rerank)")
    train_file: str = arg(help="training JSONL with mined negatives (python -m simlm_ir.train.mine)")
    output: str = arg(help="the training JSONL again: negatives = the scored pool, with teacher_scores")
    corpus: str = arg("debian-known-item", "passages: JSONL file/dir or ir_datasets id", aliases=["--dataset"])
    negatives: int = arg(POOL_NEGATIVES, "pool: score the top N mined negatives of each query (the authors' 200)")
    random_negatives: int = arg(RANDOM_NEGATIVES, "pool: add N random corpus documents per query, scored too "
                                                  "(the authors' 10)")
    seed: int = arg(42, "seed of the random negatives")
    device: str | None = arg(None, "cpu, cuda, cuda:1 (default: cuda if available)")


def main(argv=None) -> int:
    cfg = parse_config(TeacherScoresConfig, argv, prog="python -m simlm_ir.train.teacher_scores", description=__doc__)
    try:
        n = score_train_file(cfg.reranker, cfg.train_file, cfg.output, cfg.corpus, cfg.negatives, cfg.device,
                             cfg.random_negatives, cfg.seed)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} queries scored -> {cfg.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
