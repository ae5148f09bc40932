r"""SimLM fine-tuning: contrastive loss with hard negatives, or cross-encoder distillation.

    python -m simlm_ir.train.finetune --dataset debian-known-item/train --train-file bm25_negs.jsonl \
        --init PRETRAINED_DIR --output stage1
    python -m simlm_ir.train.finetune --dataset debian-known-item --kd-teacher teacher.jsonl \
        --init PRETRAINED_DIR --eval-dataset debian-known-item/dev --output stage3

Query and passage share one encoder (SimLM's input format, [CLS] pooling, L2 norm). Each query
brings 1 positive + ``group_size - 1`` hard negatives; all other passages in the batch are
negatives too. Loss: SimLM's full contrastive loss at temperature tau; with ``--kd-teacher``,
KL to the re-ranker's scores over the group + ``kd_alpha`` x contrastive, each epoch drawing the
group from the next slice of the teacher-scored pool, with the authors' stage-3 defaults (24
passages, lr 3e-5, 6 epochs). With a dev split (``--eval-dataset``) the best checkpoint on it is
the output. Writes a standard HF checkpoint; ``--resume`` continues from the newest
``checkpoint-<step>``.

Multi-process (``torchrun --nproc_per_node N -m simlm_ir.train.finetune ...``): ``--batch-size`` is
per process (global batch = N x batch size). Rank r takes slice r of each global batch (the shared
DataOrder); query and passage vectors are gathered from all ranks, so every query sees the whole
global batch as in-batch negatives, and the loss is the single-process loss of the global batch.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.losses import KD_CONTRASTIVE_WEIGHT, TAU, contrastive_loss, distillation_loss
from simlm_ir.train.data import DataOrder, derive_seed, kd_group, read_train_file, sample_group, teacher_matrix
from simlm_ir.train.dev_eval import BEST_EVAL
from simlm_ir.train.distributed import barrier, final_loss, gather_with_grad, rank_world, run_training_cli
from simlm_ir.train.loop import LoopSettings, run_loop, steps_for
from simlm_ir.util.cli import arg, parse_config
from simlm_ir.util.io import atomic_write

CONFIG_NAME = "finetune_config.json"
# The authors' settings: contrastive stages (1, 2) and the distillation stage (3)
GROUP_SIZE, LR, EPOCHS = 16, 2e-5, 3.0
KD_GROUP_SIZE, KD_LR, KD_EPOCHS = 24, 3e-5, 6.0


@dataclass
class FinetuneConfig:
    """One fine-tuning stage; also the command line (one flag per field) and ``finetune_config.json``."""

    output: str = arg(help="run directory: the fine-tuned encoder (HF layout), log, checkpoints")
    train_file: str | None = arg(None, "training JSONL (python -m simlm_ir.train.mine)")
    kd_teacher: str | None = arg(None, "training JSONL with teacher_scores (python -m "
                                       "simlm_ir.train.teacher_scores): distillation stage; each epoch draws "
                                       "the group's negatives from the next slice of the scored pool")
    init: str = arg("minilm", "checkpoint dir or hub id; the authors start every stage, distillation "
                              "included, from the pre-trained checkpoint")
    corpus: str = arg("debian-known-item", "passages: JSONL file/dir or ir_datasets id", aliases=["--dataset"])
    # None: the authors' value for the stage (contrastive / distillation), set in __post_init__
    group_size: int | None = arg(None, f"1 positive + hard negatives per query (default: {GROUP_SIZE}; "
                                       f"{KD_GROUP_SIZE} with --kd-teacher)")
    negatives_top: int = arg(0, "contrastive: sample negatives from the top-N mined (0: all of them); "
                                "distillation draws from the scored pool")
    batch_size: int = arg(64, "queries per step and process (global batch = batch size x world size)")
    lr: float | None = arg(None, f"peak learning rate (AdamW) (default: {LR}; {KD_LR} with --kd-teacher)")
    epochs: float | None = arg(None, f"passes over the training queries when --max-steps is 0 "
                                     f"(default: {EPOCHS:g}; {KD_EPOCHS:g} with --kd-teacher)")
    max_steps: int = arg(0, "optimizer steps (0: from --epochs)")
    warmup_steps: int = arg(1000, "linear warm-up steps (at most a tenth of the run)")
    weight_decay: float = arg(0.0, "AdamW weight decay (the authors': HF Trainer's default, 0)")
    tau: float = arg(TAU, "temperature of the contrastive loss")
    in_batch_only: bool = arg(False, "plain query-vs-passage loss (no SimLM extra terms)")
    kd_alpha: float = arg(KD_CONTRASTIVE_WEIGHT, "weight of the contrastive term when distilling")
    query_max_length: int = arg(32, "query tokens (SimLM: 32)")
    passage_max_length: int = arg(144, "passage tokens, title included (SimLM: 144)")
    eval_dataset: str = arg("", "keep the best checkpoint on this dev split (ir_datasets id, e.g. "
                                "debian-known-item/dev): evaluated after every checkpoint and at the end, the best "
                                "weights become the output, as the authors' distillation run keeps its best")
    eval_topics: str = arg("", "dev topics (TSV) instead of --eval-dataset, with --eval-qrels; searched over --corpus")
    eval_qrels: str = arg("", "dev qrels (TREC) for --eval-topics")
    eval_measure: str = arg("RR@10", "ir-measures name that picks the best checkpoint. The authors use in-batch MRR "
                                     "over their dev groups; we rank the whole --corpus for the dev queries, which "
                                     "measures what we report and costs one encoding pass on a corpus this size")
    length_buckets: int = arg(1, "encode each step's passages as N length-sorted chunks, each padded to its own "
                                 "longest: same loss up to dropout noise, less padding (measured: 4 chunks halve "
                                 "a CPU step on Debian descriptions, 20.2 -> 10.0 s at 32 x 4 passages)")
    seed: int = arg(42, "every random choice of a step derives from (seed, step)")
    save_steps: int = arg(200, "checkpoint every N steps")
    log_every: int = arg(10, "log the mean loss every N steps")
    resume: bool = arg(False, "continue from the newest checkpoint-<step> in --output")
    device: str = arg("auto", "auto, cpu, cuda, cuda:1, ...")
    threads: int = arg(0, "torch CPU threads (0: torch's default)")
    progress: bool = arg(True, "progress bar")

    def __post_init__(self):
        kd = self.distill
        if self.group_size is None:
            self.group_size = KD_GROUP_SIZE if kd else GROUP_SIZE
        if self.lr is None:
            self.lr = KD_LR if kd else LR
        if self.epochs is None:
            self.epochs = KD_EPOCHS if kd else EPOCHS

    @property
    def distill(self) -> bool:
        return bool(self.kd_teacher)

    @property
    def keeps_best(self) -> bool:
        return bool(self.eval_dataset or self.eval_topics or self.eval_qrels)


def finetune(cfg: FinetuneConfig) -> list[dict]:
    """Fine-tune (or resume); returns the loss log records of this call.

    Under torch.distributed each rank encodes its own slice of every global batch; see the module
    docstring. One process gives exactly the behaviour it had before distributed support.
    """
    from simlm_ir.encode.encoder import SimLMEncoder

    if not (cfg.train_file or cfg.kd_teacher):
        raise SimLMIRError("give --train-file (contrastive) or --kd-teacher (distillation)")
    rank, world = rank_world()
    torch.manual_seed(cfg.seed)
    enc = SimLMEncoder(cfg.init, device=cfg.device,
                       threads=cfg.threads or None, query_max_length=cfg.query_max_length,
                       passage_max_length=cfg.passage_max_length)
    model = enc.model
    docs = {p.id: (p.title, p.text) for p in iter_passages(cfg.corpus)}
    doc_ids = sorted(docs)
    train_file = cfg.kd_teacher or cfg.train_file
    examples = read_train_file(train_file, docs)
    if cfg.distill and not any(ex.teacher_scores for ex in examples):
        raise SimLMIRError(f"{train_file}: --kd-teacher needs teacher_scores (python -m simlm_ir.train.teacher_scores)")
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
        picks = [ie for r in range(world) for ie in orders[r].indices_with_epochs(step)]
        global_batch = [examples[i] for i, _ in picks]
        if cfg.distill:  # each epoch: the next slice of the scored pool
            global_groups = [kd_group(examples[i], i, cfg.group_size - 1, epoch, cfg.seed) for i, epoch in picks]
        else:
            global_groups = [sample_group(ex, cfg.group_size - 1, rng, doc_ids, cfg.negatives_top or None)
                             for ex in global_batch]
        lo, hi = rank * cfg.batch_size, (rank + 1) * cfg.batch_size
        batch, groups = global_batch[lo:hi], global_groups[lo:hi]
        q = enc.cls_vectors(enc.pad(enc.tokenize_queries([ex.query for ex in batch])["input_ids"]))
        flat = [d for g in groups for d in g]
        p_enc = enc.tokenize_passages([docs[d][1] for d in flat], [docs[d][0] for d in flat])
        p = enc.train_vectors(p_enc["input_ids"], p_enc["token_type_ids"], cfg.length_buckets)
        # Every rank scores the whole global batch; its own slice carries gradient, and the loop
        # sums gradients over ranks ("sum" sync), which is the gradient of the global-batch loss.
        # (Scoring only the local queries, as the paper's code does, would drop the gradient that
        # other ranks' queries send to this rank's passages.)
        q, p = gather_with_grad(q), gather_with_grad(p)
        if cfg.distill:
            teacher = torch.tensor(teacher_matrix(global_batch, global_groups), device=q.device)
            return distillation_loss(q, p, teacher, cfg.tau, cfg.kd_alpha)
        return contrastive_loss(q, p, cfg.tau, not cfg.in_batch_only)

    def save_model(path: Path) -> None:
        model.save_pretrained(path)
        enc.tokenizer.save_pretrained(path)

    def load_model(path: Path) -> None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)

    settings = LoopSettings(total_steps=total, lr=cfg.lr, warmup_steps=min(cfg.warmup_steps, max(1, total // 10)),
                            output=out, save_steps=cfg.save_steps, resume=cfg.resume, log_every=cfg.log_every,
                            weight_decay=cfg.weight_decay, desc="finetune (kd)" if cfg.distill else "finetune",
                            gradient_sync="sum", progress=cfg.progress)
    best = _best_checkpoint(cfg, enc, docs, save_model, rank == 0) if cfg.keeps_best else None
    records = run_loop(model, step_fn, settings, save_model, load_model, evaluate=best).records
    model.eval()
    if rank == 0:
        if best is not None:  # the authors' load_best_model_at_end
            load_model(best.best_dir())
            shutil.copy(best.best_dir() / BEST_EVAL, out / BEST_EVAL)
        save_model(out)
    barrier()
    return records


def _best_checkpoint(cfg: FinetuneConfig, enc, docs, save_model, is_main: bool):
    from simlm_ir.train.dev_eval import BestCheckpoint, DevEvaluator, load_dev_split
    from simlm_ir.train.loop import latest_checkpoint

    queries, qrels = load_dev_split(cfg.eval_dataset, cfg.eval_topics, cfg.eval_qrels)
    evaluator = DevEvaluator(queries, qrels, docs, cfg.eval_measure)
    resume_step = None
    if cfg.resume:
        ckpt = latest_checkpoint(Path(cfg.output))
        if ckpt is None:  # before the eval log is touched
            raise SimLMIRError(f"{cfg.output}: --resume given but no checkpoint-<step> directory is there")
        resume_step = int(ckpt.name.split("-")[1])
    return BestCheckpoint(Path(cfg.output), lambda: evaluator(enc), save_model, cfg.eval_measure,
                          resume_step=resume_step, is_main=is_main)


def main(argv=None) -> int:
    cfg = parse_config(FinetuneConfig, argv, prog="python -m simlm_ir.train.finetune", description=__doc__)
    return run_training_cli(finetune, cfg, lambda records: final_loss(records) + f" -> {cfg.output}")


if __name__ == "__main__":
    sys.exit(main())
