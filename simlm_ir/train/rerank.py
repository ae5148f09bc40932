"""Train the cross-encoder re-ranker (the distillation teacher) with listwise cross-entropy.

    python -m simlm_ir.train.rerank --dataset debian-known-item --train-file stage1_negs.jsonl \
        --init minilm --output reranker

Each query: 1 positive + ``group_size - 1`` mined negatives, one logit per pair, cross-entropy
with the positive as the target (SimLM: 1 + 63 negatives, max length 192).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from simlm_ir.data.datasets import iter_passages
from simlm_ir.modeling.losses import listwise_rerank_loss
from simlm_ir.modeling.reranker import RERANK_MAX_LENGTH, CrossEncoder
from simlm_ir.train.distributed import final_loss, run_training_cli
from simlm_ir.train.loop import GroupBatches, run_loop

CONFIG_NAME = "rerank_config.json"


@dataclass
class RerankConfig:
    train_file: str
    output: str
    init: str = "minilm"
    corpus: str = "debian-known-item"
    group_size: int = 64
    negatives_top: int = 0
    batch_size: int = 8
    lr: float = 3e-5
    epochs: float = 1.0
    max_steps: int = 0
    warmup_steps: int = 1000
    max_length: int = RERANK_MAX_LENGTH
    seed: int = 42
    save_steps: int = 200
    resume: bool = False
    device: str = "auto"


def train_reranker(cfg: RerankConfig) -> list[dict]:
    torch.manual_seed(cfg.seed)
    ce = CrossEncoder(cfg.init, device=None if cfg.device == "auto" else cfg.device, max_length=cfg.max_length)
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

    settings = data.settings("rerank")
    records = run_loop(ce.model, step_fn, settings, ce.save_pretrained, load_model)
    ce.model.eval()
    ce.save_pretrained(data.output)
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simlm_ir.train.rerank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-file", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--init", default="minilm")
    ap.add_argument("--corpus", "--dataset", dest="corpus", default="debian-known-item")
    d = RerankConfig
    for flag, typ in (("group-size", int), ("negatives-top", int), ("batch-size", int), ("lr", float),
                      ("epochs", float), ("max-steps", int), ("warmup-steps", int), ("max-length", int),
                      ("seed", int), ("save-steps", int)):
        ap.add_argument(f"--{flag}", type=typ, default=getattr(d, flag.replace("-", "_")), help="(default: %(default)s)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    cfg = RerankConfig(**{k: v for k, v in vars(args).items()})
    return run_training_cli(train_reranker, cfg, lambda records: final_loss(records) + f" -> {cfg.output}")


if __name__ == "__main__":
    sys.exit(main())
