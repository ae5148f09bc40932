"""The one training loop: SimLM pre-training, fine-tuning, re-ranker and ColBERT training all run in it.

A step function does the model-specific work of one optimizer step; this module owns what every
trainer needs and must get right: AdamW (no decay on biases and LayerNorm) with linear warm-up and
decay, gradient clipping, a stop on a non-finite loss, a progress bar, a JSONL log (means over each
logging window, or the logged step's values), atomic ``checkpoint-<step>`` directories (model +
optimizer/scheduler/RNG state, the newest few kept) and ``resume``, which continues from the newest
checkpoint and reproduces the same losses because every random choice of a step is derived from
(seed, step).

Under torch.distributed (``torchrun``) every rank runs the loop and only rank 0 writes logs and
checkpoints. Supervised steps return a loss tensor: parameters start as rank 0's, the loop
back-propagates, all-reduces gradients before clipping (so every rank takes the same optimizer step)
and logs the loss averaged over ranks. Pre-training accumulates micro-batches under DDP, so its step
back-propagates and synchronises by itself and returns a :class:`StepOutput` (``gradient_sync="step"``).
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
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
GRADIENT_SYNC = ("mean", "sum", "step")


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
    progress: bool = True
    # Under torch.distributed: "mean" when each rank's loss is the mean over its own shard (DDP's
    # rule); "sum" when each rank returns the loss of the whole global batch with gradient through
    # its own slice only (gathered in-batch negatives), so the ranks' gradients add up to the total;
    # "step" when the step function back-propagates and synchronises itself (pre-training's DDP).
    gradient_sync: str = "mean"
    fused_adamw: bool = False  # the fused kernel: several times faster, on CPU as on GPU (pre-training)
    checkpoint_at_end: bool = False  # also keep the last step's state, so a longer run can continue it
    log_window_mean: bool = True  # log means over the window; False: the logged step's own values (pre-training)


@dataclass
class StepOutput:
    """What a step function returns when it back-propagated by itself (``gradient_sync="step"``)."""

    loss: float  # the loss of the whole global batch
    extra: dict[str, float] = field(default_factory=dict)  # more values to log (window means)
    tokens: int = 0  # tokens the step read on all ranks (logged as tokens_per_s)


@dataclass
class LoopResult:
    records: list[dict]  # the log records this call wrote
    losses: dict[int, float]  # optimizer step (1-based) -> loss, for every step this call ran
    steps: int = 0  # optimizer steps taken in all, resumed ones included


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   fused: bool = False) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:  # a frozen part (pre-training's generator) is not optimised
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=lr, fused=True)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(groups, lr=lr)


def checkpoints(output) -> list[Path]:
    """Complete ``checkpoint-<step>`` directories in ``output``, oldest first."""
    found = []
    for p in Path(output).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir() and (p / TRAINER_STATE).exists():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(output) -> Path | None:
    found = checkpoints(output)
    return found[-1] if found else None


def run_loop(model: torch.nn.Module, step_fn: Callable[[int], torch.Tensor | StepOutput], settings: LoopSettings,
             save_model: Callable[[Path], None], load_model: Callable[[Path], None] | None = None,
             evaluate: Callable[[int], None] | None = None) -> LoopResult:
    """Train ``model`` for ``settings.total_steps`` optimizer steps (from the newest checkpoint when
    ``settings.resume``; ``load_model`` reads its weights, None when the caller already did).

    ``step_fn(step)`` (0-based) returns the loss tensor to back-propagate, or a :class:`StepOutput`
    with ``gradient_sync="step"``. Returns this call's log records and per-step losses.

    ``evaluate(step)``, when given, runs on every rank after each checkpoint is written, after the
    last step, and right after a resume (for a checkpoint whose evaluation the interruption cut
    off; the callback skips steps it has already logged). It runs after the checkpoint's RNG state
    is saved, and supervised steps re-seed from (seed, step), so it cannot change training.
    """
    if settings.gradient_sync not in GRADIENT_SYNC:
        raise ValueError(f"gradient_sync must be one of {GRADIENT_SYNC}, not {settings.gradient_sync!r}")
    rank, world = rank_world()
    is_main = rank == 0
    out = Path(settings.output)
    out.mkdir(parents=True, exist_ok=True)
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay, settings.fused_adamw)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(settings.warmup_steps,
                                                                                 settings.total_steps))
    start = 0
    log_file = out / TRAIN_LOG
    if settings.resume:
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            raise SimLMIRError(f"{out}: --resume given but no checkpoint-<step> directory is there")
        if load_model is not None:
            load_model(ckpt)
        start = _restore(ckpt, optimizer, scheduler)
    if is_main:
        _truncate_log(log_file, start)
    if settings.gradient_sync != "step":
        broadcast_parameters(model)
    if evaluate is not None and start > 0:
        evaluate(start)
    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    result = LoopResult([], {}, start)
    bar = progress(total=settings.total_steps, initial=start, desc=settings.desc, unit="step",
                   disable=not (is_main and settings.progress))
    window: dict[str, list[float]] = {}
    tokens, t0 = 0, time.perf_counter()
    window_start = t0
    for step in range(start, settings.total_steps):
        output = step_fn(step)
        if settings.gradient_sync == "step":
            loss_value, extra, tokens = float(output.loss), output.extra, tokens + output.tokens
        else:
            logged = mean_across_ranks(output.detach()) if world > 1 else output.detach()
            loss_value, extra = logged.item(), {}
        if not math.isfinite(loss_value):  # every rank sees the same value, so all stop together
            raise SimLMIRError(f"loss is {loss_value} at step {step + 1}; lower --lr")
        if settings.gradient_sync != "step":
            output.backward()
            all_reduce_gradients(model, average=settings.gradient_sync == "mean")
        grad_norm = torch.nn.utils.clip_grad_norm_(trained, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = result.steps = step + 1
        result.losses[done] = loss_value
        for key, value in {"loss": loss_value, **extra, "grad_norm": float(grad_norm)}.items():
            window.setdefault(key, []).append(value)
        if done % settings.log_every == 0 or done == settings.total_steps:
            now = time.perf_counter()
            means = {k: sum(v) / len(v) if settings.log_window_mean else v[-1] for k, v in window.items()}
            rec = {"step": done, **{k: v for k, v in means.items() if k != "grad_norm"},
                   "lr": scheduler.get_last_lr()[0], "grad_norm": means["grad_norm"]}
            if tokens:
                rec["tokens_per_s"] = tokens / (now - window_start) if now > window_start else 0.0
                rec["tokens"] = tokens  # this window's; summed over the log, the run's tokens (resumes included)
            rec["seconds"] = round(now - t0, 2)
            result.records.append(rec)
            if is_main:
                with open(log_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec) + "\n")
            bar.set_postfix(loss=f"{rec['loss']:.4f}", **({"tok_s": f"{rec['tokens_per_s']:,.0f}"} if tokens else {}))
            window, tokens, window_start = {}, 0, time.perf_counter()
        bar.update(1)
        if settings.save_steps and done % settings.save_steps == 0 and done < settings.total_steps:
            if is_main:
                _save_checkpoint(out, done, save_model, optimizer, scheduler, settings.keep_checkpoints)
            barrier()
            if evaluate is not None:
                evaluate(done)
                model.train()
    if evaluate is not None and start < settings.total_steps:
        evaluate(settings.total_steps)
    bar.close()
    if settings.checkpoint_at_end:
        if is_main:
            _save_checkpoint(out, result.steps, save_model, optimizer, scheduler, settings.keep_checkpoints)
        barrier()
    return result


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(out: Path, step: int, save_model, optimizer, scheduler, keep: int) -> None:
    with atomic_directory(out / f"checkpoint-{step}") as tmp:
        save_model(tmp)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": _rng_state()}, tmp / TRAINER_STATE)
    for old in checkpoints(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def _restore(ckpt: Path, optimizer, scheduler) -> int:
    """Optimizer, scheduler and RNG state of ``ckpt``; returns its step."""
    state = torch.load(ckpt / TRAINER_STATE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    # The schedule's length may have changed (a larger --max-steps): recompute the current lr from it.
    for group, base_lr, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    if "rng" in state:
        _set_rng_state(state["rng"])
    return int(state["step"])


def _truncate_log(log_file: Path, step: int) -> None:
    """Keep the records of steps up to ``step`` (a resumed run rewrites the ones after it)."""
    if not log_file.exists():
        return
    if step == 0:
        log_file.unlink()
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
        return LoopSettings(total_steps=self.total, lr=cfg.lr,
                            warmup_steps=min(cfg.warmup_steps, max(1, self.total // 10)),
                            output=self.output, save_steps=cfg.save_steps, resume=cfg.resume, log_every=log_every,
                            desc=desc, progress=cfg.progress)
