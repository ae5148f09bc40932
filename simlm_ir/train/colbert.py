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

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from simlm_ir.data.datasets import iter_passages
from simlm_ir.modeling.colbert import ColBERT, ColBERTConfig, maxsim
from simlm_ir.train.distributed import final_loss, run_training_cli
from simlm_ir.train.loop import GroupBatches, run_loop
from simlm_ir.util.cli import arg, parse_config

CONFIG_NAME = "colbert_train_config.json"


@dataclass
class ColBERTTrainConfig:
    """A ColBERT training run; also the command line (one flag per field) and ``colbert_train_config.json``.
    Defaults are sized for 2 CPU cores (~5-8 min on the 1,024-query SimLM recipe file)."""

    output: str = arg(help="run directory: the ColBERT checkpoint (colbert-ai layout), log, checkpoints")
    train_file: str = arg(help="training JSONL (python -m simlm_ir.train.mine)")
    init: str = arg("minilm", "BERT or ColBERT checkpoint dir / hub id (a ColBERT one to continue from)")
    corpus: str = arg("debian-known-item", "passages: JSONL file/dir or ir_datasets id", aliases=["--dataset"])
    group_size: int = arg(4, "1 positive + mined negatives per query")
    negatives_top: int = arg(0, "sample negatives from the top-N mined (0: all of them)")
    batch_size: int = arg(16, "queries per step")
    in_batch: bool = arg(True, "the other queries' passages are negatives too (--no-in-batch: only the "
                               "query's own group)")
    lr: float = arg(5e-5, "peak learning rate (AdamW)")
    epochs: float = arg(1.0, "passes over the training queries (when --max-steps is 0)")
    max_steps: int = arg(0, "optimizer steps (0: from --epochs)")
    warmup_steps: int = arg(20, "linear warm-up steps (at most a tenth of the run)")
    dim: int = arg(128, "token vector size")
    query_maxlen: int = arg(32, "query tokens, [MASK]-padded")
    doc_maxlen: int = arg(180, "document tokens")
    micro_batch: int = arg(16, "passages per forward pass, length-sorted (same loss, less padding)")
    seed: int = arg(42, "every random choice of a step derives from (seed, step)")
    save_steps: int = arg(50, "checkpoint every N steps")
    log_every: int = arg(10, "log the mean loss every N steps")
    resume: bool = arg(False, "continue from the newest checkpoint-<step> in --output")
    threads: int = arg(0, "torch CPU threads (0: torch's default)")
    progress: bool = arg(True, "progress bar")


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
    records = run_loop(model, step_fn, settings, save_model, load_model).records
    model.eval()
    save_model(data.output)
    return records


def main(argv=None) -> int:
    cfg = parse_config(ColBERTTrainConfig, argv, prog="python -m simlm_ir.train.colbert", description=__doc__)
    return run_training_cli(train_colbert, cfg, lambda records: final_loss(records) + f" -> {cfg.output}")


if __name__ == "__main__":
    sys.exit(main())
