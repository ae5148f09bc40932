"""The supervised training loop shared by bi-encoder fine-tuning and re-ranker training.

A ``step_fn(step) -> loss`` does the model-specific work; this module owns what both need and
must get right: AdamW with linear warm-up/decay, gradient clipping, a progress bar, a JSONL loss
log, atomic ``checkpoint-<step>`` directories (model + optimizer/scheduler/RNG state) and
``resume``, which continues from the newest checkpoint and reproduces the same losses because every
random choice of a step is derived from (seed, step).

Under torch.distributed (``torchrun``) every rank runs the loop: parameters start as rank 0's,
gradients are all-reduced before clipping (so every rank takes the same optimizer step), logged
losses are averaged over ranks, and only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from simlm_ir.errors import SimLMIRError
from simlm_ir.train.data import DataOrder, derive_seed, read_train_file, sample_group
from simlm_ir.train.distributed import (
    all_reduce_gradients,
    barrier,
    broadcast_parameters,
    mean_across_ranks,
    rank_world,
)
from simlm_ir.util.io import atomic_directory, atomic_write
from simlm_ir.util.progress import progress

TRAINER_STATE = "trainer_state.pt"
TRAIN_LOG = "train_log.jsonl"


@dataclass
class LoopSettings:
    total_steps: int
    lr: float
    warmup_steps: int
    output: Path
    save_steps: int = 200
    keep_checkpoints: int = 2
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    resume: bool = False
    log_every: int = 10
    desc: str = "train"
    # Under torch.distributed: "mean" when each rank's loss is the mean over its own shard (DDP's
    # rule); "sum" when each rank returns the loss of the whole global batch with gradient through
    # its own slice only (gathered in-batch negatives), so the ranks' gradients add up to the total.
    gradient_sync: str = "mean"


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def latest_checkpoint(output: Path) -> Path | None:
    found = [(int(p.name.split("-")[1]), p) for p in Path(output).glob("checkpoint-*")
             if p.name.split("-")[1].isdigit() and (p / TRAINER_STATE).exists()]
    return max(found)[1] if found else None


def run_loop(model: torch.nn.Module, step_fn: Callable[[int], torch.Tensor], settings: LoopSettings,
             save_model: Callable[[Path], None], load_model: Callable[[Path], None]) -> list[dict]:
    """Train ``model`` for ``settings.total_steps``; returns the log records of this call."""
    if settings.gradient_sync not in ("mean", "sum"):
        raise ValueError(f"gradient_sync must be 'mean' or 'sum', not {settings.gradient_sync!r}")
    rank, world = rank_world()
    is_main = rank == 0
    out = Path(settings.output)
    out.mkdir(parents=True, exist_ok=True)
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(settings.warmup_steps, settings.total_steps))
    start = 0
    log_file = out / TRAIN_LOG
    if settings.resume:
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            raise SimLMIRError(f"{out}: --resume given but no checkpoint-<step> directory is there")
        load_model(ckpt)
        state = torch.load(ckpt / TRAINER_STATE, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
        if is_main:
            _truncate_log(log_file, start)
    elif log_file.exists() and is_main:
        log_file.unlink()
    broadcast_parameters(model)
    model.train()
    records: list[dict] = []
    bar = progress(total=settings.total_steps, initial=start, desc=settings.desc, unit="step", disable=not is_main)
    window, t0 = [], time.perf_counter()
    for step in range(start, settings.total_steps):
        loss = step_fn(step)
        logged = mean_across_ranks(loss.detach()) if world > 1 else loss.detach()
        if not torch.isfinite(logged):  # every rank sees the same value, so all stop together
            raise SimLMIRError(f"loss is {logged.item()} at step {step + 1}; lower --lr")
        loss.backward()
        all_reduce_gradients(model, average=settings.gradient_sync == "mean")
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(logged.item())
        done = step + 1
        if done % settings.log_every == 0 or done == settings.total_steps:
            rec = {"step": done, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0],
                   "seconds": round(time.perf_counter() - t0, 2)}
            records.append(rec)
            if is_main:
                with open(log_file, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            window = []
        bar.update(1)
        if settings.save_steps and done % settings.save_steps == 0 and done < settings.total_steps:
            if is_main:
                _save_checkpoint(out, done, save_model, optimizer, scheduler, settings.keep_checkpoints)
            barrier()
    bar.close()
    return records


def _save_checkpoint(out: Path, step: int, save_model, optimizer, scheduler, keep: int) -> None:
    with atomic_directory(out / f"checkpoint-{step}") as tmp:
        save_model(tmp)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   tmp / TRAINER_STATE)
    found = sorted((int(p.name.split("-")[1]), p) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    for _, old in found[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _truncate_log(log_file: Path, step: int) -> None:
    if not log_file.exists():
        return
    keep = [ln for ln in log_file.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    with atomic_write(log_file) as fh:
        fh.write("".join(ln + "\n" for ln in keep))


def steps_for(n_examples: int, batch_size: int, epochs: float, max_steps: int) -> int:
    return max_steps if max_steps > 0 else max(1, math.ceil(epochs * math.ceil(n_examples / batch_size)))


class GroupBatches:
    """The data side of a single-process supervised run (re-ranker, ColBERT): the training file,
    the step count, the run config written beside the model, and each step's (queries, groups) —
    every random choice derived from (seed, step), so ``resume`` reproduces the same batches."""

    def __init__(self, cfg, doc_ids, config_name: str):
        self.cfg = cfg
        self.doc_ids = sorted(doc_ids)
        self.examples = read_train_file(cfg.train_file, set(self.doc_ids))
        self.total = steps_for(len(self.examples), cfg.batch_size, cfg.epochs, cfg.max_steps)
        self.order = DataOrder(len(self.examples), cfg.seed, cfg.batch_size)
        self.output = Path(cfg.output)
        self.output.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.output / config_name) as fh:
            json.dump({**asdict(cfg), "total_steps": self.total, "examples": len(self.examples)}, fh, indent=2)

    def step(self, step: int):
        """This step's training examples and their groups (positive first); seeds dropout too."""
        rng = random.Random(derive_seed(self.cfg.seed, 2, step))
        torch.manual_seed(derive_seed(self.cfg.seed, 3, step))  # dropout
        batch = [self.examples[i] for i in self.order.indices(step)]
        groups = [sample_group(ex, self.cfg.group_size - 1, rng, self.doc_ids, self.cfg.negatives_top or None)
                  for ex in batch]
        return batch, groups

    def settings(self, desc: str, log_every: int = 10) -> LoopSettings:
        cfg = self.cfg
        return LoopSettings(total_steps=self.total, lr=cfg.lr, warmup_steps=min(cfg.warmup_steps, max(1, self.total // 10)),
                            output=self.output, save_steps=cfg.save_steps, resume=cfg.resume, log_every=log_every,
                            desc=desc)
