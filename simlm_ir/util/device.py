"""The one place a ``--device`` value becomes a torch device (encoding, training, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from simlm_ir.errors import SimLMIRError


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None/empty) means this process's GPU when CUDA is there (``cuda:LOCAL_RANK``, so
    each torchrun worker takes its own), else the CPU. A CUDA device asked for on a machine without
    CUDA falls back to the CPU with a warning; a string torch cannot parse is a one-line error."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SimLMIRError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:0, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device {device!r} requested but CUDA is not available; using cpu", stacklevel=3)
        return torch.device("cpu")
    return dev


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on ``device`` when ``bf16`` (mixed precision: weights and optimizer stay
    fp32), else nothing. The authors train in fp16 on GPUs; on CPUs with AMX bf16 matrix units
    (``lscpu``: amx_bf16) a MiniLM training step measured 1.3-1.6x faster here (docs/finetune.md)."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
