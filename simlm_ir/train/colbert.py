"""ColBERT training: the same training queries and BM25 negatives as SimLM, MaxSim contrastive loss.

    python -m simlm_ir.train.mine --dataset debian-known-item/train --method bm25 --output bm25_negs.jsonl
    python -m simlm_ir.train.colbert --train-file bm25_negs.jsonl --output work/colbert-default

Model and scoring: :mod:`simlm_ir.modeling.colbert` (ColBERTv2's, from MiniLM by default, a fresh 128-dim
projection). Each query brings 1 positive + ``group_size - 1`` hard negatives from the training file
(``simlm_ir.train.data`` format); with ``--in-batch`` (the default, as ColBERTv2's
``use_ib_negatives``) every passage of the batch is a negative too. Loss: cross-entropy over the raw
MaxSim scores (no temperature, as ColBERT). Writes a colbert-ai style checkpoint; ``--resume``
continues from the newest ``checkpoint-<step>``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from simlm_ir.data.datasets import iter_passages
from simlm_ir.modeling.colbert import ColBERT, ColBERTConfig, maxsim
from simlm_ir.train.distributed import final_loss, run_training_cli
from simlm_ir.train.loop import GroupBatches, run_loop

CONFIG_NAME = "colbert_train_config.json"


@dataclass
class ColBERTTrainConfig:
    """Defaults are sized for 2 CPU cores (~5-8 min on the 1,024-query SimLM recipe file)."""

    train_file: str
    output: str
    init: str = "minilm"  # any BERT checkpoint, or a ColBERT one to continue from
    corpus: str = "debian-known-item"  # JSONL file/dir or ir_datasets id holding the passages
    group_size: int = 4  # 1 positive + 3 BM25 negatives per query
    negatives_top: int = 0  # sample negatives from the top-N mined (0: all of them)
    batch_size: int = 16  # queries per step
    in_batch: bool = True  # the other queries' passages are negatives too
    lr: float = 5e-5
    epochs: float = 1.0
    max_steps: int = 0
    warmup_steps: int = 20
    dim: int = 128
    query_maxlen: int = 32
    doc_maxlen: int = 180
    micro_batch: int = 16  # passages per forward pass, length-sorted (same loss, less padding)
    seed: int = 42
    save_steps: int = 50
    log_every: int = 10
    resume: bool = False
    threads: int = 0


def colbert_loss(scores: torch.Tensor, group_size: int, in_batch: bool) -> torch.Tensor:
    """Cross-entropy of (B, B*G) MaxSim scores; query i's positive is column i*G. Without
    in-batch negatives only the query's own group counts."""
    B = scores.shape[0]
    targets = torch.arange(B, device=scores.device) * group_size
    if in_batch:
        return F.cross_entropy(scores, targets)
    own = scores.view(B, B, group_size)[torch.arange(B), torch.arange(B)]
    return F.cross_entropy(own, torch.zeros(B, dtype=torch.long, device=scores.device))


def train_colbert(cfg: ColBERTTrainConfig) -> list[dict]:
    """Train (or resume); returns the loss log records of this call."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = ColBERT.from_pretrained(cfg.init, ColBERTConfig(dim=cfg.dim, query_maxlen=cfg.query_maxlen,
                                                            doc_maxlen=cfg.doc_maxlen), seed=cfg.seed)
    docs = {p.id: p.contents for p in iter_passages(cfg.corpus)}
    data = GroupBatches(cfg, docs, CONFIG_NAME)

    def step_fn(step: int) -> torch.Tensor:
        batch, groups = data.step(step)
        q = model.query_vectors(model.tokenize_queries([ex.query for ex in batch]))
        d_batch = model.tokenize_docs([docs[d] for g in groups for d in g])
        scores = maxsim(q, model.doc_vectors(d_batch, cfg.micro_batch), d_batch["keep"])
        return colbert_loss(scores, cfg.group_size, cfg.in_batch)

    def save_model(path: Path) -> None:
        model.save_pretrained(path)

    def load_model(path: Path) -> None:
        loaded = ColBERT.from_pretrained(str(path))
        model.load_state_dict(loaded.state_dict())

    settings = data.settings("colbert", cfg.log_every)
    records = run_loop(model, step_fn, settings, save_model, load_model)
    model.eval()
    save_model(data.output)
    return records


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simlm_ir.train.colbert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-file", required=True, help="training JSONL (python -m simlm_ir.train.mine)")
    ap.add_argument("--output", required=True)
    ap.add_argument("--init", default="minilm", help="BERT or ColBERT checkpoint dir / hub id (default: %(default)s)")
    ap.add_argument("--corpus", "--dataset", dest="corpus", default="debian-known-item",
                    help="passages: JSONL file/dir or ir_datasets id (default: %(default)s)")
    d = ColBERTTrainConfig
    for flag, typ in (("group-size", int), ("negatives-top", int), ("batch-size", int), ("lr", float),
                      ("epochs", float), ("max-steps", int), ("warmup-steps", int), ("dim", int),
                      ("query-maxlen", int), ("doc-maxlen", int), ("micro-batch", int), ("seed", int),
                      ("save-steps", int), ("log-every", int), ("threads", int)):
        name = flag.replace("-", "_")
        ap.add_argument(f"--{flag}", type=typ, default=getattr(d, name), help="(default: %(default)s)")
    ap.add_argument("--no-in-batch", action="store_true", help="only the query's own group as negatives")
    ap.add_argument("--resume", action="store_true")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(ColBERTTrainConfig) if hasattr(args, f.name)}
    cfg = ColBERTTrainConfig(**given, in_batch=not args.no_in_batch)
    return run_training_cli(train_colbert, cfg, lambda records: final_loss(records) + f" -> {cfg.output}")


if __name__ == "__main__":
    sys.exit(main())
