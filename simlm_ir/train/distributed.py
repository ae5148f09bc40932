"""torch.distributed helpers shared by pre-training and fine-tuning; all are no-ops in one process.

Under ``torchrun --nproc_per_node N`` every process calls :func:`init_from_env` once (the CLIs do);
after that :func:`rank_world` tells a training loop which shard of each global batch is its own.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without an initialised process group."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str = "auto") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...).

    NCCL when this process will train on CUDA, gloo otherwise. Returns True when this call created
    the group (so the caller should destroy it), False in a plain single process.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = torch.cuda.is_available() and device not in ("cpu",) and not str(device).startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """All ranks' ``t`` concatenated in rank order; only this rank's slice carries gradient.

    The other ranks' slices are constants here; their gradient is computed on their own rank, and
    summing gradients across ranks (``all_reduce_gradients(..., average=False)``) adds the parts up.
    """
    if not is_distributed():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.detach().contiguous())
    parts[dist.get_rank()] = t
    return torch.cat(parts, dim=0)


def gather_constant(t: torch.Tensor) -> torch.Tensor:
    """All ranks' ``t`` (no gradient) concatenated in rank order."""
    if not is_distributed():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over ranks; ``value`` itself in one process."""
    if not is_distributed():
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank, so all ranks start identical."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def all_reduce_gradients(model: torch.nn.Module, average: bool) -> None:
    """Sum (or average) every parameter's gradient across ranks, in one flat buffer per dtype.

    ``average=True`` is DDP's rule, right when each rank's loss is the mean over its own shard.
    ``average=False`` is right when every rank computes the loss of the *whole* global batch from
    gathered vectors in which only its own slice carries gradient (:func:`gather_with_grad`).
    """
    if not is_distributed():
        return
    world = dist.get_world_size()
    params = [p for p in model.parameters() if p.requires_grad]
    # A parameter no rank touched keeps grad None (the optimizer skips it, as in one process); one
    # that only some ranks touched takes part with zeros elsewhere.
    if not params:
        return
    touched = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(touched)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p, hit in zip(params, touched.tolist()):
        if hit:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        for bucket in _buckets(grads, BUCKET_ELEMENTS):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat)
            if average:
                flat /= world
            offset = 0
            for g in bucket:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()


BUCKET_ELEMENTS = 1 << 25  # 128 MB of float32 per all-reduce: few calls, bounded extra memory


def _buckets(tensors: list[torch.Tensor], limit: int):
    bucket, size = [], 0
    for t in tensors:
        if bucket and size + t.numel() > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel()
    if bucket:
        yield bucket


def run_training_cli(train, cfg, report) -> int:
    """What every training command does around ``train(cfg)``: join torchrun's process group if
    there is one, turn our input errors into one line and exit status 2, leave the group, and let
    rank 0 alone print ``report(result)``."""
    import sys

    from simlm_ir.errors import SimLMIRError

    created = init_from_env(getattr(cfg, "device", "auto"))
    rank = rank_world()[0]
    try:
        result = train(cfg)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if created:
            dist.destroy_process_group()
    if rank == 0:
        message = report(result)
        if message:
            print(message)
    return 0


def final_loss(records) -> str:
    """The usual closing line of a supervised run."""
    return f"final loss {records[-1]['loss']:.4f} after {records[-1]['step']} steps" if records else ""
