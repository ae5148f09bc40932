"""SimLM fine-tuning: contrastive loss with hard negatives, or cross-encoder distillation.

    python -m simlm_ir.train.finetune --dataset debian-known-item/train --train-file bm25_negs.jsonl \
        --init PRETRAINED_DIR --output stage1
    python -m simlm_ir.train.finetune ... --kd-teacher teacher_scores.jsonl --output stage3

Query and passage share one encoder (SimLM's input format, [CLS] pooling, L2 norm). Each query
brings 1 positive + ``group_size - 1`` hard negatives; all other passages in the batch are
negatives too. Loss: SimLM's full contrastive loss at temperature tau; with ``--kd-teacher``,
KL to the re-ranker's scores over the group + ``kd_alpha`` x contrastive. Writes a standard HF
checkpoint; ``--resume`` continues from the newest ``checkpoint-<step>``.

Multi-process (``torchrun --nproc_per_node N -m simlm_ir.train.finetune ...``): ``--batch-size`` is
per process (global batch = N x batch size). Rank r takes slice r of each global batch (pretrain's
DataOrder); query and passage vectors are gathered from all ranks, so every query sees the whole
global batch as in-batch negatives, and the loss is the single-process loss of the global batch.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.losses import KD_CONTRASTIVE_WEIGHT, TAU, contrastive_loss, distillation_loss
from simlm_ir.train.data import DataOrder, derive_seed, read_train_file, sample_group
from simlm_ir.train.distributed import barrier, final_loss, gather_with_grad, rank_world, run_training_cli
from simlm_ir.train.loop import LoopSettings, run_loop, steps_for
from simlm_ir.util.io import atomic_write

CONFIG_NAME = "finetune_config.json"


@dataclass
class FinetuneConfig:
    train_file: str
    output: str
    init: str = "minilm"
    corpus: str = "debian-known-item"  # JSONL file/dir or ir_datasets id holding the passages
    kd_teacher: bool = False  # train_file carries teacher_scores: distillation stage
    group_size: int = 16  # 1 positive + 15 hard negatives (paper); 24 for distillation
    negatives_top: int = 0  # sample negatives from the top-N mined (0: all of them)
    batch_size: int = 64  # queries per step and process (global batch = batch_size x world size)
    lr: float = 2e-5
    epochs: float = 3.0
    max_steps: int = 0
    warmup_steps: int = 1000
    tau: float = TAU
    full_contrastive: bool = True
    kd_alpha: float = KD_CONTRASTIVE_WEIGHT
    query_max_length: int = 32
    passage_max_length: int = 144
    seed: int = 42
    save_steps: int = 200
    log_every: int = 10
    resume: bool = False
    device: str = "auto"
    threads: int = 0
    progress: bool = True


def finetune(cfg: FinetuneConfig) -> list[dict]:
    """Fine-tune (or resume); returns the loss log records of this call.

    Under torch.distributed each rank encodes its own slice of every global batch; see the module
    docstring. One process gives exactly the behaviour it had before distributed support.
    """
    from simlm_ir.encode.encoder import SimLMEncoder

    rank, world = rank_world()
    torch.manual_seed(cfg.seed)
    enc = SimLMEncoder(cfg.init, device=cfg.device,
                       threads=cfg.threads or None, query_max_length=cfg.query_max_length,
                       passage_max_length=cfg.passage_max_length)
    model = enc.model
    docs = {p.id: (p.title, p.text) for p in iter_passages(cfg.corpus)}
    doc_ids = sorted(docs)
    examples = read_train_file(cfg.train_file, docs)
    if cfg.kd_teacher and not any(ex.teacher_scores for ex in examples):
        raise SimLMIRError(f"{cfg.train_file}: --kd-teacher needs teacher_scores (python -m simlm_ir.train.teacher_scores)")
    total = steps_for(len(examples), cfg.batch_size * world, cfg.epochs, cfg.max_steps)
    orders = [DataOrder(len(examples), cfg.seed, cfg.batch_size, r, world) for r in range(world)]
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        with atomic_write(out / CONFIG_NAME) as fh:
            json.dump({**asdict(cfg), "total_steps": total, "examples": len(examples), "world_size": world,
                       "global_batch_size": cfg.batch_size * world}, fh, indent=2)

    def step_fn(step: int) -> torch.Tensor:
        rng = random.Random(derive_seed(cfg.seed, 2, step))
        torch.manual_seed(derive_seed(cfg.seed, 3, step, *([rank] if rank else [])))  # dropout, per rank
        # Groups are drawn for the whole global batch from one stream (cheap), so a step trains on
        # the same groups however many processes share it.
        global_batch = [examples[i] for r in range(world) for i in orders[r].indices(step)]
        global_groups = [sample_group(ex, cfg.group_size - 1, rng, doc_ids, cfg.negatives_top or None)
                         for ex in global_batch]
        lo, hi = rank * cfg.batch_size, (rank + 1) * cfg.batch_size
        batch, groups = global_batch[lo:hi], global_groups[lo:hi]
        q = enc.cls_vectors(enc.pad(enc.tokenize_queries([ex.query for ex in batch])["input_ids"]))
        flat = [d for g in groups for d in g]
        p_enc = enc.tokenize_passages([docs[d][1] for d in flat], [docs[d][0] for d in flat])
        p = enc.cls_vectors(enc.pad(p_enc["input_ids"], p_enc["token_type_ids"]))
        # Every rank scores the whole global batch; its own slice carries gradient, and the loop
        # sums gradients over ranks ("sum" sync), which is the gradient of the global-batch loss.
        # (Scoring only the local queries, as the paper's code does, would drop the gradient that
        # other ranks' queries send to this rank's passages.)
        q, p = gather_with_grad(q), gather_with_grad(p)
        if cfg.kd_teacher:
            teacher = torch.tensor([[ex.teacher_scores.get(d, min(ex.teacher_scores.values())) for d in g]
                                    for ex, g in zip(global_batch, global_groups)], device=q.device)
            return distillation_loss(q, p, teacher, cfg.tau, cfg.kd_alpha)
        return contrastive_loss(q, p, cfg.tau, cfg.full_contrastive)

    def save_model(path: Path) -> None:
        model.save_pretrained(path)
        enc.tokenizer.save_pretrained(path)

    def load_model(path: Path) -> None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)

    settings = LoopSettings(total_steps=total, lr=cfg.lr, warmup_steps=min(cfg.warmup_steps, max(1, total // 10)),
                            output=out, save_steps=cfg.save_steps, resume=cfg.resume, log_every=cfg.log_every,
                            desc="finetune (kd)" if cfg.kd_teacher else "finetune", gradient_sync="sum")
    records = run_loop(model, step_fn, settings, save_model, load_model)
    model.eval()
    if rank == 0:
        save_model(out)
    barrier()
    return records


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simlm_ir.train.finetune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-file", help="training JSONL (python -m simlm_ir.train.mine)")
    ap.add_argument("--kd-teacher", metavar="FILE", help="training JSONL with teacher_scores: distillation stage")
    ap.add_argument("--output", required=True)
    ap.add_argument("--init", default="minilm", help="checkpoint dir or hub id (default: %(default)s)")
    ap.add_argument("--corpus", "--dataset", dest="corpus", default="debian-known-item",
                    help="passages: JSONL file/dir or ir_datasets id (default: %(default)s)")
    d = FinetuneConfig
    for flag, typ in (("group-size", int), ("negatives-top", int), ("batch-size", int), ("lr", float),
                      ("epochs", float), ("max-steps", int), ("warmup-steps", int), ("tau", float),
                      ("kd-alpha", float), ("query-max-length", int), ("passage-max-length", int),
                      ("seed", int), ("save-steps", int), ("log-every", int), ("threads", int)):
        name = flag.replace("-", "_")
        ap.add_argument(f"--{flag}", type=typ, default=getattr(d, name), help="(default: %(default)s)")
    ap.add_argument("--in-batch-only", action="store_true", help="plain query-vs-passage loss (no SimLM extra terms)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.train_file or args.kd_teacher):
        print("error: give --train-file (contrastive) or --kd-teacher (distillation)", file=sys.stderr)
        return 2
    cfg = FinetuneConfig(train_file=args.kd_teacher or args.train_file, output=args.output, init=args.init,
                         corpus=args.corpus, kd_teacher=bool(args.kd_teacher), group_size=args.group_size,
                         negatives_top=args.negatives_top, batch_size=args.batch_size, lr=args.lr,
                         epochs=args.epochs, max_steps=args.max_steps, warmup_steps=args.warmup_steps,
                         tau=args.tau, full_contrastive=not args.in_batch_only, kd_alpha=args.kd_alpha,
                         query_max_length=args.query_max_length, passage_max_length=args.passage_max_length,
                         seed=args.seed, save_steps=args.save_steps, log_every=args.log_every, resume=args.resume, device=args.device,
                         threads=args.threads, progress=not args.no_progress)
    return run_training_cli(finetune, cfg, lambda records: final_loss(records) + f" -> {cfg.output}")


if __name__ == "__main__":
    sys.exit(main())
