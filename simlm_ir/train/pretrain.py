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

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import InputFormatError, SimLMIRError
from simlm_ir.modeling.checkpoints import quiet_transformers, resolve_checkpoint
from simlm_ir.modeling.generators import MLMGenerator, UnigramGenerator
from simlm_ir.modeling.masking import WholeWordMasker
from simlm_ir.modeling.rlm import SimLMConfig, SimLMForPretraining, check_bert_encoder, load_encoder, load_tokenizer
from simlm_ir.train.data import DataOrder, derive_seed
from simlm_ir.train.distributed import barrier, rank_world, run_training_cli
from simlm_ir.util.device import resolve_device
from simlm_ir.util.io import atomic_directory, atomic_write

logger = logging.getLogger(__name__)

RUN_CONFIG_NAME = "run_config.json"
TRAIN_LOG_NAME = "train_log.jsonl"
TRAINER_STATE_NAME = "trainer_state.pt"
GENERATOR_DIR_NAME = "generator"
GENERATOR_KEYWORDS = ("mlm-warmup", "unigram")
# The paper's generator (ELECTRA-base generator, bert-base-uncased vocab); needs the hub or a local cache.
DEFAULT_GENERATOR = "google/electra-base-generator"


@dataclass
class PretrainConfig:
    """Everything that defines a pre-training run (written to ``run_config.json`` in the output dir)."""

    corpus: str
    init: str
    output: str
    generator: str = DEFAULT_GENERATOR  # a masked-LM checkpoint, "mlm-warmup" or "unigram" (ablation)
    generator_warmup_steps: int = 1000  # for "mlm-warmup": plain-MLM steps before pre-training
    generator_warmup_lr: float = 5e-4
    generator_config_overrides: str = ""  # for "mlm-warmup": BertConfig overrides of the small generator
    tokenizer: str | None = None  # only for init="scratch"; default: MiniLM's bert-base-uncased vocab
    config_overrides: str = ""  # BertConfig overrides, e.g. "hidden_size=64,num_hidden_layers=2"
    max_length: int = 144
    encoder_mask_rate: float = 0.3
    decoder_mask_rate: float = 0.5
    decoder_layers: int = 2
    lr: float = 3e-4
    warmup_steps: int = 4000
    max_steps: int = 80000
    batch_size: int = 32  # per device and micro-batch; global batch = batch_size * grad_accum * world
    grad_accum: int = 1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    bf16: bool = False
    save_steps: int = 1000
    save_total_limit: int = 2
    logging_steps: int = 10
    resume: bool = False
    device: str = "auto"
    threads: int | None = None
    progress: bool = True

    # Changing these mid-run would make a resumed run a different run.
    RUN_DEFINING = ("corpus", "init", "generator", "generator_warmup_steps", "generator_config_overrides",
                    "tokenizer", "config_overrides", "max_length", "encoder_mask_rate", "decoder_mask_rate",
                    "decoder_layers", "batch_size", "grad_accum", "seed")

    def validate(self) -> None:
        if self.max_length < 8:
            raise SimLMIRError(f"--max-length must be at least 8, got {self.max_length}")
        if not 0.0 <= self.encoder_mask_rate <= self.decoder_mask_rate <= 1.0:
            raise SimLMIRError("mask rates must satisfy 0 <= --encoder-mask-rate <= --decoder-mask-rate <= 1 "
                               f"(got {self.encoder_mask_rate}, {self.decoder_mask_rate})")
        for name in ("batch_size", "grad_accum", "max_steps", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise SimLMIRError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.generator == "mlm-warmup" and self.generator_warmup_steps < 1:
            raise SimLMIRError("--generator mlm-warmup needs --generator-warmup-steps >= 1")


@dataclass
class PretrainResult:
    output: Path
    steps: int
    losses: dict[int, float] = field(default_factory=dict)  # optimizer step → loss (this process's run)
    generator: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Data: tokenized corpus and a deterministic, shardable order
# --------------------------------------------------------------------------------------------------


@dataclass
class TokenizedCorpus:
    """All passages tokenized once, stored flat (ids, token types) with per-passage offsets.

    Compact on purpose, because pre-training holds the whole tokenized corpus in memory: 2 bytes per
    token id (uint16 when the vocabulary fits, as BERT's 30,522 does; else int32) + 1 byte per token
    type + 8 bytes per passage. MS MARCO's 8.8M passages at SimLM's 144-token cap (~75 tokens on
    average) take ~2 GB (twice that for a moment while the chunks are joined); larger corpora need more
    RAM or a subset.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.type_ids[a:b]

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.type_ids.nbytes + self.offsets.nbytes


def tokenize_corpus(corpus, tokenizer, max_length: int) -> TokenizedCorpus:
    """Tokenize every passage of ``corpus``; InputFormatError (file:line) for bad files or no passages."""
    tokenized = tokenize_passages(iter_passages(corpus), tokenizer, max_length)
    if not len(tokenized):
        raise InputFormatError(corpus, None, "corpus holds no passages")
    return tokenized


def tokenize_passages(passages, tokenizer, max_length: int, chunk: int = 2000) -> TokenizedCorpus:
    """Tokenize passages as SimLM encodes them: ``tokenizer(title, text_pair=text)``, truncated.

    Streams ``passages`` and keeps only the compact arrays (one per ``chunk`` passages, joined at the end).
    """
    id_dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32
    ids, types, lengths = [], [], []

    def flush(batch):
        enc = tokenizer([p.title for p in batch], text_pair=[p.text for p in batch], max_length=max_length,
                        truncation=True, return_token_type_ids=True, return_attention_mask=False)
        lens = np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(batch))
        total = int(lens.sum())
        ids.append(np.fromiter(itertools.chain.from_iterable(enc["input_ids"]), dtype=id_dtype, count=total))
        types.append(np.fromiter(itertools.chain.from_iterable(enc["token_type_ids"]), dtype=np.uint8, count=total))
        lengths.append(lens)

    batch = []
    for passage in passages:
        batch.append(passage)
        if len(batch) == chunk:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not lengths:
        return TokenizedCorpus(np.zeros(0, id_dtype), np.zeros(0, np.uint8), np.zeros(1, np.int64))
    all_lengths = np.concatenate(lengths)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    return TokenizedCorpus(np.concatenate(ids), np.concatenate(types), offsets)


def collate(corpus: TokenizedCorpus, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of passages to its longest member."""
    examples = [corpus.example(i) for i in indices]
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(examples), length), dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, (ids, tt) in enumerate(examples):
        input_ids[row, :len(ids)] = torch.from_numpy(ids.astype(np.int64))
        token_type_ids[row, :len(ids)] = torch.from_numpy(tt.astype(np.int64))
        attention_mask[row, :len(ids)] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


# --------------------------------------------------------------------------------------------------
# Distributed helpers: everything works unchanged without torch.distributed
# --------------------------------------------------------------------------------------------------


_dist = rank_world
_barrier = barrier


def _autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


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
    order = DataOrder(len(corpus), derive_seed(cfg.seed, 11), cfg.batch_size * _dist()[1])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.generator_warmup_lr, weight_decay=0.01)
    warm = max(1, cfg.generator_warmup_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _linear_schedule(warm, cfg.generator_warmup_steps))
    bar = _progress(cfg, cfg.generator_warmup_steps, "generator MLM warm-up")
    loss_value = float("nan")
    for step in range(cfg.generator_warmup_steps):
        batch = collate(corpus, order.indices(step), tokenizer.pad_token_id)
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, 12, step))
        mask = masker.mask(batch["input_ids"], cfg.encoder_mask_rate, g, batch["attention_mask"])
        labels = batch["input_ids"].masked_fill(~mask, -100)
        inputs = batch["input_ids"].masked_fill(mask, tokenizer.mask_token_id)
        if not mask.any():
            continue
        with _autocast(device, cfg.bf16):
            loss = model(input_ids=inputs.to(device), attention_mask=batch["attention_mask"].to(device),
                         token_type_ids=batch["token_type_ids"].to(device), labels=labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if bar is not None:
            bar.set_postfix(loss=f"{loss_value:.3f}")
            bar.update(1)
    if bar is not None:
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
    rank, _ = _dist()
    if cfg.generator == "unigram":
        counts = torch.from_numpy(np.bincount(corpus.ids, minlength=len(tokenizer)).astype(np.float64))
        return UnigramGenerator(counts, tokenizer.all_special_ids)
    if cfg.generator == "mlm-warmup":
        gen_dir = output / GENERATOR_DIR_NAME
        info_file = gen_dir / "warmup.json"
        missing = not info_file.exists()
        # every rank looks before rank 0 may write it, so all ranks agree on taking the barrier below
        # (a rank that looked after rank 0 finished would skip it and deadlock the others)
        _barrier()
        if missing:
            if rank == 0:
                info = train_warmup_generator(cfg, corpus, tokenizer, encoder_config, device, gen_dir)
                with atomic_write(info_file) as fh:
                    json.dump(info, fh, indent=2)
            _barrier()
        info = json.loads(info_file.read_text())
        return MLMGenerator.from_pretrained(gen_dir, tokenizer, source=info)
    return MLMGenerator.from_pretrained(cfg.generator, tokenizer)


# --------------------------------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------------------------------


def _linear_schedule(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _progress(cfg: PretrainConfig, total: int, desc: str, initial: int = 0):
    if not cfg.progress or _dist()[0] != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)


def _optimizer(model: SimLMForPretraining, cfg: PretrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue  # the frozen generator
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        # The fused kernel is several times faster than the per-tensor loop, on CPU as on GPU.
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr)


def checkpoints(output: Path) -> list[Path]:
    """Complete checkpoint directories in ``output``, oldest first."""
    found = []
    for p in Path(output).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and p.is_dir() and (p / TRAINER_STATE_NAME).exists():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


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


def save_checkpoint(model: SimLMForPretraining, optimizer, scheduler, step: int, output: Path,
                    keep: int) -> Path:
    """``checkpoint-<step>``: encoder + tokenizer + decoder + optimizer/scheduler/RNG state, atomically."""
    path = output / f"checkpoint-{step}"
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": _rng_state()}, tmp / TRAINER_STATE_NAME)
    for old in checkpoints(output)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


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


def _truncate_log(log_file: Path, step: int) -> None:
    if not log_file.exists():
        return
    keep = [line for line in log_file.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    with atomic_write(log_file) as fh:
        fh.write("".join(line + "\n" for line in keep))


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Run (or resume) SimLM pre-training; returns the per-step losses this call computed."""
    cfg.validate()
    rank, world = _dist()
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
        found = checkpoints(output)
        resume_from = found[-1] if found else None
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
    simlm_cfg = SimLMConfig(cfg.encoder_mask_rate, cfg.decoder_mask_rate, cfg.decoder_layers)
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

    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(cfg.warmup_steps, cfg.max_steps))
    step = 0
    if resume_from is not None:
        state = torch.load(resume_from / TRAINER_STATE_NAME, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # The schedule's length may have changed (a larger --max-steps): recompute the current lr from it.
        for group, base_lr, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base_lr * factor(scheduler.last_epoch)
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        _set_rng_state(state["rng"])
        step = int(state["step"])
        logger.info("resuming from %s (step %d)", resume_from, step)
    log_file = output / TRAIN_LOG_NAME
    if is_main:
        _truncate_log(log_file, step)

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
    result = PretrainResult(output=output, steps=step, generator=model.generator.describe())
    bar = _progress(cfg, cfg.max_steps, "SimLM pre-training", initial=step)
    window_tokens, window_start = 0, time.perf_counter()
    while step < cfg.max_steps:
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
                with _autocast(device, cfg.bf16):
                    out = train_model(batch["input_ids"], batch["attention_mask"], mine(masks.encoder),
                                      mine(masks.decoder), batch["token_type_ids"],
                                      uniforms=(mine(noise[0]), mine(noise[1])))
                # DDP averages gradients over ranks; x world turns that into the share-weighted sum.
                (out.loss * (share * world / cfg.grad_accum)).backward()
            totals += share * torch.stack([out.loss.detach(), out.encoder_loss.detach(),
                                           out.decoder_loss.detach()]).float().cpu()
            tokens += int(batch["attention_mask"].sum())
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                   cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if world > 1:  # log the loss of the global batch (share-weighted sum), not of rank 0's shard
            import torch.distributed as dist

            reduced = totals.to(device)
            dist.all_reduce(reduced)
            totals = reduced.cpu()
        loss, enc_loss, dec_loss = (totals / cfg.grad_accum).tolist()
        if not math.isfinite(loss):
            raise FloatingPointError(f"pre-training loss is {loss} at step {step}; lower --lr or disable --bf16")
        result.losses[step] = loss
        window_tokens += tokens * world
        if is_main:
            elapsed = time.perf_counter() - window_start
            tok_s = window_tokens / elapsed if elapsed > 0 else 0.0
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}")
                bar.update(1)
            if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                with open(log_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": step, "loss": loss, "encoder_loss": enc_loss,
                                         "decoder_loss": dec_loss, "lr": scheduler.get_last_lr()[0],
                                         "grad_norm": float(grad_norm), "tokens_per_s": tok_s}) + "\n")
                window_tokens, window_start = 0, time.perf_counter()
            if step % cfg.save_steps == 0 and step < cfg.max_steps:
                save_checkpoint(model, optimizer, scheduler, step, output, cfg.save_total_limit)
        if step % cfg.save_steps == 0:
            _barrier()
    if bar is not None:
        bar.close()
    if is_main:
        save_checkpoint(model, optimizer, scheduler, step, output, cfg.save_total_limit)
        _save_final(model, output)
    _barrier()
    result.steps = step
    return result


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = {f.name: f.default for f in fields(PretrainConfig)}
    p = argparse.ArgumentParser(prog="python -m simlm_ir.train.pretrain", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus", required=True, help="JSONL file/directory or ir_datasets id")
    p.add_argument("--init", required=True, help='encoder start: BERT dir, hub id, "minilm" or "scratch"')
    p.add_argument("--output", required=True, help="run directory (checkpoints, logs, final encoder)")
    p.add_argument("--generator", default=d["generator"],
                   help='masked-LM checkpoint, "mlm-warmup" (train a small one first) or "unigram" (ablation)')
    p.add_argument("--generator-warmup-steps", type=int, default=d["generator_warmup_steps"])
    p.add_argument("--generator-warmup-lr", type=float, default=d["generator_warmup_lr"])
    p.add_argument("--generator-config-overrides", default=d["generator_config_overrides"])
    p.add_argument("--tokenizer", default=None, help="tokenizer for --init scratch (default: MiniLM's)")
    p.add_argument("--config-overrides", default=d["config_overrides"],
                   help='BertConfig overrides, e.g. "hidden_size=256,num_hidden_layers=4"')
    p.add_argument("--max-length", type=int, default=d["max_length"])
    p.add_argument("--encoder-mask-rate", type=float, default=d["encoder_mask_rate"])
    p.add_argument("--decoder-mask-rate", type=float, default=d["decoder_mask_rate"])
    p.add_argument("--decoder-layers", type=int, default=d["decoder_layers"])
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--warmup-steps", type=int, default=d["warmup_steps"])
    p.add_argument("--max-steps", type=int, default=d["max_steps"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--grad-accum", type=int, default=d["grad_accum"])
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    p.add_argument("--max-grad-norm", type=float, default=d["max_grad_norm"])
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA with bf16 support, or CPU)")
    p.add_argument("--save-steps", type=int, default=d["save_steps"])
    p.add_argument("--save-total-limit", type=int, default=d["save_total_limit"])
    p.add_argument("--logging-steps", type=int, default=d["logging_steps"])
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    p.add_argument("--device", default=d["device"], help='"auto", "cpu", "cuda", "cuda:1", ...')
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = PretrainConfig(**vars(args))
    return run_training_cli(pretrain, cfg, lambda result: json.dumps(
        {"output": str(result.output), "steps": result.steps, "generator": result.generator}))


if __name__ == "__main__":
    sys.exit(main())
