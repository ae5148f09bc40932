"""SimLM pre-training driver: corpus → tokenized passages → RLM training with resumable checkpoints.

``python -m simlm_ir.train.pretrain --corpus CORPUS --init minilm --output DIR`` is a thin layer over
:func:`pretrain`. Everything random (data order, masks, generator samples, dropout) is derived from
``seed`` and the step number, so ``--resume`` reproduces the losses of an uninterrupted run.
Passages are fed as SimLM encodes them: ``[CLS] title [SEP] text [SEP]`` (title ``-`` when absent).

Under ``torchrun --nproc_per_node N`` (``--batch-size`` is per process) rank r trains on slice r of
each global batch with the masks and generator samples one process would draw for it, and the loss
is weighted by target tokens, so N processes follow the loss curve of one process with N x the batch
(up to floating-point noise; dropout differs per rank).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.checkpoints import quiet_transformers, resolve_checkpoint
from simlm_ir.modeling.generators import MaskFiller, MLMGenerator, UnigramGenerator
from simlm_ir.modeling.masking import WholeWordMasker
from simlm_ir.modeling.rlm import (
    OBJECTIVES,
    SimLMConfig,
    SimLMForPretraining,
    check_bert_encoder,
    load_encoder,
    load_tokenizer,
)
from simlm_ir.train.data import DataOrder, TokenizedCorpus, collate, derive_seed, tokenize_corpus
from simlm_ir.train.distributed import barrier, rank_world, run_training_cli
from simlm_ir.train.loop import LoopSettings, StepOutput, latest_checkpoint, linear_warmup_decay, run_loop
from simlm_ir.util.cli import arg, parse_config
from simlm_ir.util.device import autocast, resolve_device
from simlm_ir.util.io import atomic_directory, atomic_write
from simlm_ir.util.progress import progress

logger = logging.getLogger(__name__)

RUN_CONFIG_NAME = "run_config.json"
GENERATOR_DIR_NAME = "generator"
GENERATOR_KEYWORDS = ("mlm-warmup", "unigram")
# The paper's generator (ELECTRA-base generator, bert-base-uncased vocab); needs the hub or a local cache.
DEFAULT_GENERATOR = "google/electra-base-generator"


@dataclass
class PretrainConfig:
    """Everything that defines a pre-training run: the command line (one flag per field) and, written
    to ``run_config.json`` in the output dir, the record of the run."""

    corpus: str = arg(help="JSONL file/directory or ir_datasets id")
    init: str = arg(help='encoder start: BERT dir, hub id, "minilm" or "scratch"')
    output: str = arg(help="run directory (checkpoints, logs, final encoder)")
    generator: str = arg(DEFAULT_GENERATOR, 'masked-LM checkpoint, "mlm-warmup" (train a small one first) or '
                                            '"unigram" (ablation)')
    generator_warmup_steps: int = arg(1000, 'for "mlm-warmup": plain-MLM steps before pre-training')
    generator_warmup_lr: float = arg(5e-4, 'for "mlm-warmup": its learning rate')
    generator_config_overrides: str = arg("", 'for "mlm-warmup": BertConfig overrides of the small generator')
    tokenizer: str | None = arg(None, "tokenizer for --init scratch (default: MiniLM's bert-base-uncased vocab)")
    config_overrides: str = arg("", 'BertConfig overrides, e.g. "hidden_size=256,num_hidden_layers=4"')
    max_length: int = arg(144, "passage tokens, title included (SimLM: 144)")
    encoder_mask_rate: float = arg(0.3, "share of tokens the encoder's corrupted copy replaces")
    decoder_mask_rate: float = arg(0.5, "share of tokens the decoder's corrupted copy replaces")
    decoder_layers: int = arg(2, "layers of the bottleneck decoder (copied from the encoder's last)")
    objective: str = arg("rlm", "rlm = SimLM; mlm / enc-dec-mlm / condenser = the paper's ablation baselines "
                                "(MLM-style objectives score only masked positions)", choices=OBJECTIVES)
    condenser_layer: int = arg(0, 'for "condenser": the early layer its head reads (0: half the depth)')
    head_warmup_steps: int = arg(0, "first N steps train only the MLM head and the decoder, the encoder frozen. A "
                                    "checkpoint saved without an MLM head (MiniLM, any fine-tuned retriever) gets a "
                                    "new random one, whose first large gradients would otherwise run into the encoder "
                                    "and undo what it knows; the paper starts from BERT with its trained head")
    lr: float = arg(3e-4, "peak learning rate (AdamW)")
    warmup_steps: int = arg(4000, "linear warm-up steps")
    max_steps: int = arg(80000, "optimizer steps")
    batch_size: int = arg(32, "passages per device and micro-batch; global batch = batch size x grad accum x world")
    grad_accum: int = arg(1, "micro-batches per optimizer step")
    weight_decay: float = arg(0.0, "AdamW weight decay (none on biases and LayerNorm); the reference RLM uses 0")
    max_grad_norm: float = arg(1.0, "gradient clipping")
    seed: int = arg(42, "data order, masks, generator samples and dropout all derive from (seed, step)")
    bf16: bool = arg(False, "bfloat16 autocast (CUDA with bf16 support, or CPU)")
    save_steps: int = arg(1000, "checkpoint every N steps")
    save_total_limit: int = arg(2, "checkpoints kept")
    logging_steps: int = arg(10, "log mean losses every N steps")
    resume: bool = arg(False, "continue from the last checkpoint in --output")
    device: str = arg("auto", '"auto", "cpu", "cuda", "cuda:1", ...')
    threads: int | None = arg(None, "torch CPU threads")
    progress: bool = arg(True, "progress bars")

    # Changing these mid-run would make a resumed run a different run.
    RUN_DEFINING = ("corpus", "init", "generator", "generator_warmup_steps", "generator_config_overrides",
                    "tokenizer", "config_overrides", "max_length", "encoder_mask_rate", "decoder_mask_rate",
                    "decoder_layers", "objective", "condenser_layer", "batch_size", "grad_accum", "seed",
                    "head_warmup_steps")

    def validate(self) -> None:
        if self.max_length < 8:
            raise SimLMIRError(f"--max-length must be at least 8, got {self.max_length}")
        if not 0.0 <= self.encoder_mask_rate <= self.decoder_mask_rate <= 1.0:
            raise SimLMIRError("mask rates must satisfy 0 <= --encoder-mask-rate <= --decoder-mask-rate <= 1 "
                               f"(got {self.encoder_mask_rate}, {self.decoder_mask_rate})")
        if not 0 <= self.head_warmup_steps < self.max_steps:
            raise SimLMIRError(f"--head-warmup-steps must be in [0, --max-steps), got {self.head_warmup_steps}")
        for name in ("batch_size", "grad_accum", "max_steps", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise SimLMIRError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.objective not in OBJECTIVES:
            raise SimLMIRError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.generator == "mlm-warmup" and self.objective == "rlm" and self.generator_warmup_steps < 1:
            raise SimLMIRError("--generator mlm-warmup needs --generator-warmup-steps >= 1")


@dataclass
class PretrainResult:
    output: Path
    steps: int
    losses: dict[int, float] = field(default_factory=dict)  # optimizer step → loss (this process's run)
    generator: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------------


def warmup_generator_config(encoder_config, tokenizer, overrides: str = "") -> dict:
    """A small BERT for the MLM-warm-up generator: ~1/3 of the encoder's width (as ELECTRA), 2 layers."""
    from simlm_ir.modeling.rlm import parse_config_overrides

    hidden = max(64, (encoder_config.hidden_size // 3) // 64 * 64)
    cfg = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "hidden_size": hidden,
           "num_hidden_layers": 2, "num_attention_heads": max(1, hidden // 64), "intermediate_size": 4 * hidden,
           "max_position_embeddings": encoder_config.max_position_embeddings,
           "type_vocab_size": encoder_config.type_vocab_size}
    cfg.update(parse_config_overrides(overrides))
    return cfg


def train_warmup_generator(cfg: PretrainConfig, corpus: TokenizedCorpus, tokenizer, encoder_config,
                           device: torch.device, out_dir: Path) -> dict:
    """Plain MLM (whole-word [MASK] at the encoder rate) for a small BERT, saved to ``out_dir``.

    Runs on rank 0 alone, with the global batch (batch size x world size), so the generator is the
    same however many processes pre-train.
    """
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(derive_seed(cfg.seed, 10))
    gen_cfg = warmup_generator_config(encoder_config, tokenizer, cfg.generator_config_overrides)
    model = BertForMaskedLM(BertConfig(**gen_cfg)).to(device)
    model.train()
    masker = WholeWordMasker(tokenizer)
    order = DataOrder(len(corpus), derive_seed(cfg.seed, 11), cfg.batch_size * rank_world()[1])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.generator_warmup_lr, weight_decay=0.01)
    warm = max(1, cfg.generator_warmup_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(warm, cfg.generator_warmup_steps))
    # rank 0 alone trains it (see above), so no rank check here
    bar = progress(total=cfg.generator_warmup_steps, desc="generator MLM warm-up", unit="step",
                   disable=not cfg.progress)
    loss_value = float("nan")
    for step in range(cfg.generator_warmup_steps):
        batch = collate(corpus, order.indices(step), tokenizer.pad_token_id)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, 12, step))
        mask = masker.mask(batch["input_ids"], cfg.encoder_mask_rate, g, batch["attention_mask"])
        labels = batch["input_ids"].masked_fill(~mask, -100)
        inputs = batch["input_ids"].masked_fill(mask, tokenizer.mask_token_id)
        if not mask.any():
            continue
        with autocast(device, cfg.bf16):
            loss = model(input_ids=inputs.to(device), attention_mask=batch["attention_mask"].to(device),
                         token_type_ids=batch["token_type_ids"].to(device), labels=labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        bar.set_postfix(loss=f"{loss_value:.3f}")
        bar.update(1)
    bar.close()
    with atomic_directory(out_dir) as tmp:
        with quiet_transformers():
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
    return {"kind": "mlm-warmup", "path": str(out_dir), "warmup_steps": cfg.generator_warmup_steps,
            "final_mlm_loss": loss_value, "config": gen_cfg}


def build_generator(cfg: PretrainConfig, corpus: TokenizedCorpus, tokenizer, encoder_config,
                    device: torch.device, output: Path):
    """The frozen generator ``cfg.generator`` names; trains the warm-up one first if needed (rank 0)."""
    rank, _ = rank_world()
    if cfg.objective != "rlm":
        return MaskFiller(tokenizer.mask_token_id, tokenizer.all_special_ids)
    if cfg.generator == "unigram":
        counts = torch.from_numpy(np.bincount(corpus.ids, minlength=len(tokenizer)).astype(np.float64))
        return UnigramGenerator(counts, tokenizer.all_special_ids)
    if cfg.generator == "mlm-warmup":
        gen_dir = output / GENERATOR_DIR_NAME
        info_file = gen_dir / "warmup.json"
        missing = not info_file.exists()
        # every rank looks before rank 0 may write it, so all ranks agree on taking the barrier below
        # (a rank that looked after rank 0 finished would skip it and deadlock the others)
        barrier()
        if missing:
            if rank == 0:
                info = train_warmup_generator(cfg, corpus, tokenizer, encoder_config, device, gen_dir)
                with atomic_write(info_file) as fh:
                    json.dump(info, fh, indent=2)
            barrier()
        info = json.loads(info_file.read_text())
        return MLMGenerator.from_pretrained(gen_dir, tokenizer, source=info)
    return MLMGenerator.from_pretrained(cfg.generator, tokenizer)


# --------------------------------------------------------------------------------------------------
# Pre-training (the loop itself is simlm_ir.train.loop's)
# --------------------------------------------------------------------------------------------------


def _save_final(model: SimLMForPretraining, output: Path) -> None:
    """The final encoder in ``output`` itself, so ``BertModel.from_pretrained(output)`` just works."""
    tmp = Path(tempfile.mkdtemp(prefix=".final.", dir=output))
    try:
        model.save_pretrained(tmp)
        for f in tmp.iterdir():
            os.replace(f, output / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_resume_config(saved: dict, cfg: PretrainConfig, output: Path) -> None:
    diffs = [f"{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}" for k in PretrainConfig.RUN_DEFINING
             if k in saved and saved[k] != getattr(cfg, k)]
    if diffs:
        raise SimLMIRError(f"{output / RUN_CONFIG_NAME}: --resume with settings that change the run: "
                           + "; ".join(diffs))


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Run (or resume) SimLM pre-training; returns the per-step losses this call computed."""
    cfg.validate()
    rank, world = rank_world()
    is_main = rank == 0
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SimLMIRError(f"--bf16: {torch.cuda.get_device_name(device)} does not support bfloat16")
    output = Path(cfg.output)
    run_config_file = output / RUN_CONFIG_NAME

    resume_from = None
    if run_config_file.exists():
        if not cfg.resume:
            raise SimLMIRError(f"{output} already holds a pre-training run ({RUN_CONFIG_NAME}); "
                               "pass --resume to continue it or choose another --output")
        saved = json.loads(run_config_file.read_text())
        _check_resume_config(saved["config"], cfg, output)
        resume_from = latest_checkpoint(output)
    output.mkdir(parents=True, exist_ok=True)

    # Tokenizer and corpus first: a bad corpus fails before any model is loaded.
    tokenizer = load_tokenizer(cfg.tokenizer) if str(cfg.init) == "scratch" else None
    if resume_from is not None:
        tokenizer = load_tokenizer(resume_from)
    elif tokenizer is None:
        path = resolve_checkpoint(cfg.init)
        check_bert_encoder(path)
        tokenizer = load_tokenizer(path)
    corpus = tokenize_corpus(cfg.corpus, tokenizer, cfg.max_length)
    logger.info("corpus: %d passages, %d tokens, %.1f MB tokenized", len(corpus), corpus.num_tokens,
                corpus.nbytes / 1e6)

    # Model: fresh from --init, or the last checkpoint. The generator is rebuilt the same way either way.
    torch.manual_seed(derive_seed(cfg.seed, 0))
    simlm_cfg = SimLMConfig(cfg.encoder_mask_rate, cfg.decoder_mask_rate, cfg.decoder_layers, cfg.objective,
                            cfg.condenser_layer)
    if resume_from is not None:
        model = SimLMForPretraining.from_pretrained(resume_from)
    else:
        encoder, tokenizer = load_encoder(cfg.init, tokenizer, cfg.config_overrides)
        model = SimLMForPretraining(encoder, tokenizer, simlm_cfg)
    if cfg.max_length > model.encoder.config.max_position_embeddings:
        raise SimLMIRError(f"--max-length {cfg.max_length} exceeds the encoder's "
                           f"{model.encoder.config.max_position_embeddings} positions")
    model.generator = build_generator(cfg, corpus, tokenizer, model.encoder.config, device, output)
    model.to(device)
    model.train()

    if is_main and resume_from is None:
        with atomic_write(run_config_file) as fh:
            json.dump({"config": asdict(cfg), "generator": model.generator.describe(), "world_size": world,
                       "corpus_passages": len(corpus), "corpus_tokens": corpus.num_tokens,
                       "encoder_parameters": sum(p.numel() for p in model.encoder.parameters())}, fh, indent=2)

    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    masker = WholeWordMasker(tokenizer)
    # Every rank collates the whole global micro-batch and draws its masks and sampling noise (cheap,
    # on CPU), then keeps its own rows: data, masks and generator samples of a step do not depend on
    # how many processes share it, and weighting each rank's loss by its share of the target tokens
    # makes the summed gradient that of the global batch's token-mean loss (as in one process).
    orders = [DataOrder(len(corpus), cfg.seed, cfg.batch_size, r, world) for r in range(world)]
    rows = slice(rank * cfg.batch_size, (rank + 1) * cfg.batch_size)
    # The encoder body, word embeddings included (the MLM head's output projection is tied to them).
    body = list(model.encoder.bert.parameters())

    def step_fn(step: int) -> StepOutput:
        """``grad_accum`` micro-batches, back-propagated (DDP syncs the last); the global batch's losses."""
        frozen = step < cfg.head_warmup_steps
        if world == 1:  # no backward through a frozen encoder; DDP needs every gradient, nulled below instead
            for p in body:
                p.requires_grad_(not frozen)
        totals = torch.zeros(3)
        tokens = 0
        for micro in range(cfg.grad_accum):
            micro_batch = step * cfg.grad_accum + micro
            # Every random draw of this micro-batch comes from (seed, step, micro) alone; dropout also
            # from the rank (it cannot be shared: it acts inside each rank's forward pass).
            torch.manual_seed(derive_seed(cfg.seed, 2, micro_batch, rank))
            full = collate(corpus, [i for o in orders for i in o.indices(micro_batch)], tokenizer.pad_token_id)
            g_mask = torch.Generator().manual_seed(derive_seed(cfg.seed, 3, micro_batch, 0))
            masks = masker.encoder_decoder_masks(full["input_ids"], cfg.encoder_mask_rate, cfg.decoder_mask_rate,
                                                 g_mask, full["attention_mask"])
            g_sample = torch.Generator().manual_seed(derive_seed(cfg.seed, 4, micro_batch, 0))
            noise = (torch.rand(full["input_ids"].shape, generator=g_sample),
                     torch.rand(full["input_ids"].shape, generator=g_sample))
            targets = ~masker.special_positions(full["input_ids"], full["attention_mask"])
            width = int(full["attention_mask"][rows].sum(1).max())  # this rank's rows, re-trimmed

            def mine(t: torch.Tensor) -> torch.Tensor:
                return t[rows, :width].to(device)

            batch = {k: mine(v) for k, v in full.items()}
            share = float(targets[rows].sum()) / max(1.0, float(targets.sum()))
            sync = micro == cfg.grad_accum - 1 or world == 1
            ctx = contextlib.nullcontext() if sync else train_model.no_sync()
            with ctx:
                with autocast(device, cfg.bf16):
                    out = train_model(batch["input_ids"], batch["attention_mask"], mine(masks.encoder),
                                      mine(masks.decoder), batch["token_type_ids"],
                                      uniforms=(mine(noise[0]), mine(noise[1])))
                # DDP averages gradients over ranks; x world turns that into the share-weighted sum.
                (out.loss * (share * world / cfg.grad_accum)).backward()
            totals += share * torch.stack([out.loss.detach(), out.encoder_loss.detach(),
                                           out.decoder_loss.detach()]).float().cpu()
            tokens += int(batch["attention_mask"].sum())
        if world > 1:  # the loss of the global batch (share-weighted sum), not of this rank's shard
            import torch.distributed as dist

            reduced = totals.to(device)
            dist.all_reduce(reduced)
            totals = reduced.cpu()
        if frozen:  # neither clipped nor stepped (AdamW skips parameters without a gradient)
            for p in body:
                p.grad = None
        loss, enc_loss, dec_loss = (totals / cfg.grad_accum).tolist()
        return StepOutput(loss, {"encoder_loss": enc_loss, "decoder_loss": dec_loss}, tokens * world)

    settings = LoopSettings(total_steps=cfg.max_steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps, output=output,
                            save_steps=cfg.save_steps, keep_checkpoints=cfg.save_total_limit,
                            weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                            resume=resume_from is not None, log_every=cfg.logging_steps, desc="SimLM pre-training",
                            progress=cfg.progress, gradient_sync="step", fused_adamw=True, checkpoint_at_end=True,
                            log_window_mean=False)
    if resume_from is not None:
        logger.info("resuming from %s", resume_from)
    # the weights of resume_from are in the model already (it was built from them)
    loop = run_loop(model, step_fn, settings, model.save_pretrained)
    if is_main:
        _save_final(model, output)
    barrier()
    return PretrainResult(output=output, steps=loop.steps, losses=loop.losses, generator=model.generator.describe())


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(PretrainConfig, argv, prog="python -m simlm_ir.train.pretrain", description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_training_cli(pretrain, cfg, lambda result: json.dumps(
        {"output": str(result.output), "steps": result.steps, "generator": result.generator}))


if __name__ == "__main__":
    sys.exit(main())
