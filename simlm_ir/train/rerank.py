r"""Train the cross-encoder re-ranker (the distillation teacher) with listwise cross-entropy.

    python -m simlm_ir.train.rerank --dataset debian-known-item --train-file stage1_negs.jsonl \
        --init minilm --output reranker

Each query: 1 positive + ``group_size - 1`` mined negatives, one logit per pair, cross-entropy
with the positive as the target (SimLM: 1 + 63 negatives, max length 192).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from simlm_ir.data.datasets import iter_passages
from simlm_ir.modeling.losses import listwise_rerank_loss
from simlm_ir.modeling.reranker import RERANK_MAX_LENGTH, CrossEncoder
from simlm_ir.train.distributed import final_loss, run_training_cli
from simlm_ir.train.loop import GroupBatches, run_loop
from simlm_ir.util.cli import arg, parse_config

CONFIG_NAME = "rerank_config.json"


@dataclass
class RerankConfig:
    """A re-ranker training run; also the command line (one flag per field) and ``rerank_config.json``."""

    output: str = arg(help="run directory: the cross-encoder (HF layout), log, checkpoints")
    train_file: str = arg(help="training JSONL (python -m simlm_ir.train.mine)")
    init: str = arg("minilm", "checkpoint dir or hub id")
    corpus: str = arg("debian-known-item", "passages: JSONL file/dir or ir_datasets id", aliases=["--dataset"])
    group_size: int = arg(64, "1 positive + mined negatives per query (SimLM: 64)")
    negatives_top: int = arg(0, "sample negatives from the top-N mined (0: all of them)")
    batch_size: int = arg(8, "queries per step")
    lr: float = arg(3e-5, "peak learning rate (AdamW)")
    epochs: float = arg(1.0, "passes over the training queries (when --max-steps is 0)")
    max_steps: int = arg(0, "optimizer steps (0: from --epochs)")
    warmup_steps: int = arg(1000, "linear warm-up steps (at most a tenth of the run)")
    max_length: int = arg(RERANK_MAX_LENGTH, "tokens per (query, passage) pair (SimLM: 192)")
    seed: int = arg(42, "every random choice of a step derives from (seed, step)")
    save_steps: int = arg(200, "checkpoint every N steps")
    log_every: int = arg(10, "log the mean loss every N steps")
    resume: bool = arg(False, "continue from the newest checkpoint-<step> in --output")
    device: str = arg("auto", "auto, cpu, cuda, cuda:1, ...")
    progress: bool = arg(True, "progress bar")


def train_reranker(cfg: RerankConfig) -> list[dict]:
    torch.manual_seed(cfg.seed)
    ce = CrossEncoder(cfg.init, device=cfg.device, max_length=cfg.max_length)
    docs = {p.id: (p.title, p.text) for p in iter_passages(cfg.corpus)}
    data = GroupBatches(cfg, docs, CONFIG_NAME)

    def step_fn(step: int) -> torch.Tensor:
        batch, groups = data.step(step)
        queries = [ex.query for ex, g in zip(batch, groups) for _ in g]
        flat = [d for g in groups for d in g]
        logits = ce.logits(queries, [docs[d][0] for d in flat], [docs[d][1] for d in flat])
        return listwise_rerank_loss(logits.view(len(batch), cfg.group_size))

    def load_model(path: Path) -> None:
        from safetensors.torch import load_file

        ce.model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)

    settings = data.settings("rerank", cfg.log_every)
    records = run_loop(ce.model, step_fn, settings, ce.save_pretrained, load_model).records
    ce.model.eval()
    ce.save_pretrained(data.output)
    return records


def main(argv=None) -> int:
    cfg = parse_config(RerankConfig, argv, prog="python -m simlm_ir.train.rerank", description=__doc__)
    return run_training_cli(train_reranker, cfg, lambda records: final_loss(records) + f" -> {cfg.output}")


if __name__ == "__main__":
    sys.exit(main())
