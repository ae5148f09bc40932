r"""Train the cross-encoder re-ranker (the distillation teacher) with listwise cross-entropy.

    python -m simlm_ir.train.rerank --dataset debian-known-item --train-file stage1_negs.jsonl \
        --init minilm --output reranker

Each query: 1 positive + ``group_size - 1`` mined negatives, one logit per pair, cross-entropy
with the positive as the target. As the authors' re-ranker: all 64 candidates go forward without
gradient (dropout off), and the loss covers the model's own top ``group_size / forward_factor``
(16), the positive always kept; R-Drop adds the symmetric KL between two dropout passes to the
mean cross-entropy of both. Max length 192, lr 3e-5, 3 epochs, 64 queries per step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.losses import listwise_rerank_loss, rdrop_loss
from simlm_ir.modeling.reranker import RERANK_MAX_LENGTH, CrossEncoder
from simlm_ir.train.distributed import final_loss, run_training_cli
from simlm_ir.train.loop import GroupBatches, run_loop
from simlm_ir.util.cli import arg, parse_config
from simlm_ir.util.device import autocast

CONFIG_NAME = "rerank_config.json"


@dataclass
class RerankConfig:
    """A re-ranker training run; also the command line (one flag per field) and ``rerank_config.json``."""

    output: str = arg(help="run directory: the cross-encoder (HF layout), log, checkpoints")
    train_file: str = arg(help="training JSONL (python -m simlm_ir.train.mine)")
    init: str = arg("minilm", "checkpoint dir or hub id")
    corpus: str = arg("debian-known-item", "passages: JSONL file/dir or ir_datasets id", aliases=["--dataset"])
    group_size: int = arg(64, "candidates per query forwarded: 1 positive + mined negatives (SimLM: 64)")
    rerank_forward_factor: int = arg(4, "forward --group-size candidates without gradient, then train on the "
                                        "model's top group-size/factor with the positive kept (the authors' 4: "
                                        "64 -> 16); 1 = train on the whole group")
    rdrop_weight: float = arg(1.0, "weight of the R-Drop term (symmetric KL between two dropout passes, the "
                                   "authors' 1); 0 = one pass, plain cross-entropy")
    negatives_top: int = arg(0, "sample negatives from the top-N mined (0: all of them)")
    batch_size: int = arg(64, "queries per step (the authors' global batch: 64)")
    lr: float = arg(3e-5, "peak learning rate (AdamW)")
    epochs: float = arg(3.0, "passes over the training queries (when --max-steps is 0)")
    max_steps: int = arg(0, "optimizer steps (0: from --epochs)")
    warmup_steps: int = arg(1000, "linear warm-up steps (at most a tenth of the run)")
    weight_decay: float = arg(0.0, "AdamW weight decay (the authors': HF Trainer's default, 0)")
    max_length: int = arg(RERANK_MAX_LENGTH, "tokens per (query, passage) pair (SimLM: 192)")
    length_buckets: int = arg(1, "run each step's pairs as N length-sorted chunks, each padded to its own longest "
                                 "(the same logits; faster on CPU when lengths vary)")
    seed: int = arg(42, "every random choice of a step derives from (seed, step)")
    save_steps: int = arg(200, "checkpoint every N steps")
    log_every: int = arg(10, "log the mean loss every N steps")
    bf16: bool = arg(False, "bfloat16 autocast of the forward passes (mixed precision, as the authors' fp16 on "
                            "GPU; a MiniLM training step measured 1.3-1.6x faster on a CPU with AMX, lscpu's amx_bf16)")
    resume: bool = arg(False, "continue from the newest checkpoint-<step> in --output")
    device: str = arg("auto", "auto, cpu, cuda, cuda:1, ...")
    progress: bool = arg(True, "progress bar")


def select_for_backward(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices (B, k) of each row's ``k`` highest logits, the positive (column 0) always
    first: the candidates the authors' re-ranker back-propagates through."""
    forced = logits.detach().float().clone()
    forced[:, 0] = float("inf")
    return torch.topk(forced, k, dim=1, largest=True, sorted=True).indices


def forward_select(ce: CrossEncoder, queries, groups, docs, k: int) -> list[list[str]]:
    """Score every candidate without gradient and with dropout off; keep each group's top ``k``."""
    if len({len(g) for g in groups}) > 1:
        raise ValueError("forward_select needs groups of one size")
    flat = [d for g in groups for d in g]
    qs = [q for q, g in zip(queries, groups) for _ in g]
    was_training = ce.model.training
    ce.model.eval()
    try:
        scores = torch.from_numpy(ce.score(qs, [docs[d][0] for d in flat], [docs[d][1] for d in flat]))
    finally:
        ce.model.train(was_training)
    picked = select_for_backward(scores.view(len(groups), -1), k)
    return [[g[j] for j in row] for g, row in zip(groups, picked.tolist())]


def rerank_loss(ce: CrossEncoder, queries, groups, docs, rdrop_weight: float,
                buckets: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, R-Drop term) of one batch of groups (positive first). With ``rdrop_weight`` > 0 the
    groups go forward twice (independent dropout): loss = mean CE of both + weight x symmetric KL."""
    flat = [d for g in groups for d in g]
    qs = [q for q, g in zip(queries, groups) for _ in g]
    titles, texts = [docs[d][0] for d in flat], [docs[d][1] for d in flat]
    first = ce.logits(qs, titles, texts, buckets).float().view(len(groups), -1)
    if rdrop_weight <= 0:
        return listwise_rerank_loss(first), first.new_zeros(())
    second = ce.logits(qs, titles, texts, buckets).float().view(len(groups), -1)
    rdrop = rdrop_loss(first, second)
    ce_loss = 0.5 * (listwise_rerank_loss(first) + listwise_rerank_loss(second))
    return ce_loss + rdrop_weight * rdrop, rdrop


def train_reranker(cfg: RerankConfig) -> list[dict]:
    factor = cfg.rerank_forward_factor
    if factor < 1 or cfg.group_size % factor or cfg.group_size // factor < 2:
        raise SimLMIRError(f"--group-size {cfg.group_size} must be a multiple of --rerank-forward-factor {factor} "
                           "leaving at least 2 candidates per query")
    torch.manual_seed(cfg.seed)
    ce = CrossEncoder(cfg.init, device=cfg.device, max_length=cfg.max_length)
    docs = {p.id: (p.title, p.text) for p in iter_passages(cfg.corpus)}
    data = GroupBatches(cfg, docs, CONFIG_NAME)

    def step_fn(step: int) -> torch.Tensor:
        batch, groups = data.step(step)
        queries = [ex.query for ex in batch]
        with autocast(ce.device, cfg.bf16):
            if factor > 1:
                groups = forward_select(ce, queries, groups, docs, cfg.group_size // factor)
            return rerank_loss(ce, queries, groups, docs, cfg.rdrop_weight, cfg.length_buckets)[0]

    def load_model(path: Path) -> None:
        from safetensors.torch import load_file

        ce.model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)

    settings = data.settings("rerank", cfg.log_every)
    settings.weight_decay = cfg.weight_decay
    records = run_loop(ce.model, step_fn, settings, ce.save_pretrained, load_model).records
    ce.model.eval()
    ce.save_pretrained(data.output)
    return records


def main(argv=None) -> int:
    cfg = parse_config(RerankConfig, argv, prog="python -m simlm_ir.train.rerank", description=__doc__)
    return run_training_cli(train_reranker, cfg, lambda records: final_loss(records) + f" -> {cfg.output}")


if __name__ == "__main__":
    sys.exit(main())
