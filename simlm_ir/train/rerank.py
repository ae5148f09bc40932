"""Train the cross-encoder re-ranker (the distillation teacher) with listwise cross-entropy.

    python -m simlm_ir.train.rerank --dataset debian-known-item --train-file stage1_negs.jsonl \
        --init minilm --output reranker

Each query: 1 positive + ``group_size - 1`` mined negatives, one logit per pair, cross-entropy
with the positive as the target (SimLM: 1 + 63 negatives, max length 192).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from simlm_ir.corpus import iter_passages
from simlm_ir.io_utils import atomic_write
from simlm_ir.modeling.losses import listwise_rerank_loss
from simlm_ir.modeling.reranker import RERANK_MAX_LENGTH, CrossEncoder
from simlm_ir.train.data import read_train_file, sample_group
from simlm_ir.train.distributed import final_loss, run_training_cli
from simlm_ir.train.loop import LoopSettings, run_loop, steps_for
from simlm_ir.train.pretrain import DataOrder, derive_seed

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
    doc_ids = sorted(docs)
    examples = read_train_file(cfg.train_file, docs)
    total = steps_for(len(examples), cfg.batch_size, cfg.epochs, cfg.max_steps)
    order = DataOrder(len(examples), cfg.seed, cfg.batch_size)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / CONFIG_NAME) as fh:
        json.dump({**asdict(cfg), "total_steps": total, "examples": len(examples)}, fh, indent=2)

    def step_fn(step: int) -> torch.Tensor:
        rng = random.Random(derive_seed(cfg.seed, 2, step))
        torch.manual_seed(derive_seed(cfg.seed, 3, step))
        batch = [examples[i] for i in order.indices(step)]
        groups = [sample_group(ex, cfg.group_size - 1, rng, doc_ids, cfg.negatives_top or None) for ex in batch]
        queries = [ex.query for ex, g in zip(batch, groups) for _ in g]
        flat = [d for g in groups for d in g]
        logits = ce.logits(queries, [docs[d][0] for d in flat], [docs[d][1] for d in flat])
        return listwise_rerank_loss(logits.view(len(batch), cfg.group_size))

    def load_model(path: Path) -> None:
        from safetensors.torch import load_file

        ce.model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)

    settings = LoopSettings(total_steps=total, lr=cfg.lr, warmup_steps=min(cfg.warmup_steps, max(1, total // 10)),
                            output=out, save_steps=cfg.save_steps, resume=cfg.resume, desc="rerank")
    records = run_loop(ce.model, step_fn, settings, ce.save_pretrained, load_model)
    ce.model.eval()
    ce.save_pretrained(out)
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
