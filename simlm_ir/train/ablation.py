"""The SimLM paper's pre-training ablation at small scale: does RLM through a [CLS] bottleneck make
a better retriever than plain MLM, Enc-Dec MLM or no further pre-training, at the same compute?

    python benchmarks/pretrain_ablation.py                      # CPU preset (~2 h on 2 cores; resumable)
    python benchmarks/pretrain_ablation.py --preset gpu         # larger, bf16, <= 10 min on one H100/H200
    python benchmarks/pretrain_ablation.py --preset tiny        # seconds; what the test suite runs

Design (as the paper's Table 6, which starts every arm from BERT-base):

1. a WordPiece vocabulary trained on the pre-training corpus (``benchmarks/make_pretrain_corpus.py``);
2. **base**: a small BERT pre-trained from random initialisation with plain MLM, once; its cost is
   reported but charged to no arm;
3. every arm continues from the base with the *same* budget (steps x batch x length, same data
   order): continued MLM (15%), Enc-Dec MLM (30/50, [MASK]ed copies through the same bottleneck),
   SimLM RLM (30/50, the frozen base as its sampling generator), optionally Condenser and the RLM
   mask-rate variants; plus the base itself and a random initialisation as the floor;
4. each arm is fine-tuned identically (SimLM's contrastive loss with BM25 negatives on
   debian-known-item/train, 10% and 100% of the training queries) and evaluated on dev and test,
   and once zero-shot ([CLS] vectors straight from pre-training).

Every stage writes a ``done.json`` when it finishes and is skipped on the next call; pre-training and
fine-tuning resume from their last checkpoint, so a stopped run continues where it stopped. The
table goes to ``runs/pretraining-ablation/ablation.{md,csv,png}`` (``--runs-dir``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from simlm_ir.errors import SimLMIRError
from simlm_ir.eval.ablation_report import write_report
from simlm_ir.util.io import atomic_directory, atomic_write

logger = logging.getLogger(__name__)

# work/ and runs/ are relative to where the command runs, as for the other benchmark scripts.
DEFAULT_CORPUS = Path("work/pretrain-corpus/corpus.jsonl.gz")
DATASET = "debian-known-item"


@dataclass(frozen=True)
class Arm:
    """One row: how its encoder is obtained from the shared base."""

    name: str
    objective: str | None  # None: no continued pre-training (base or random init)
    encoder_mask_rate: float = 0.3
    decoder_mask_rate: float = 0.5
    start: str = "base"  # "base" or "random"


ARMS = {
    "random": Arm("random init (floor)", None, start="random"),
    "base": Arm("base, no further pre-training (paper's BERT row)", None),
    "mlm": Arm("continued MLM 15%", "mlm", 0.15, 0.15),
    "enc-dec-mlm": Arm("Enc-Dec MLM 30/50", "enc-dec-mlm", 0.3, 0.5),
    "condenser": Arm("Condenser 15%", "condenser", 0.15, 0.15),
    "rlm": Arm("SimLM RLM 30/50", "rlm", 0.3, 0.5),
    "rlm-15-15": Arm("SimLM RLM 15/15", "rlm", 0.15, 0.15),
    "rlm-30-100": Arm("SimLM RLM 30/100", "rlm", 0.3, 1.0),
}


@dataclass(frozen=True)
class Preset:
    """Model size, budgets and fine-tuning recipe of one ablation scale.

    ``start="scratch"`` is the paper's design (a base BERT we pre-train with MLM first); a checkpoint
    name (``"minilm"``) is the practical track: every arm continues that model instead, and the
    size fields other than ``max_length`` are ignored.
    """

    start: str = "scratch"
    rlm_generator: str = "base"  # "base" (the frozen base as generator), "mlm-warmup" or "unigram"
    generator_warmup_steps: int = 200  # for "mlm-warmup": its steps count in the RLM arm's cost
    vocab_size: int = 8192
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    max_length: int = 64  # pre-training and passage length (a description's first 64 tokens)
    batch_size: int = 32
    base_steps: int = 4000
    base_lr: float = 5e-4
    arm_steps: int = 600
    arm_lr: float = 2e-4
    ft_batch: int = 32
    ft_group: int = 2  # 1 positive + 1 BM25 negative; the other 62 passages of the batch are negatives too
    ft_steps: int = 200  # on 100% of the training queries (~1.6 epochs; ~1.2 s a step on one CPU core)
    ft_steps_few: int = 80  # on 10% of them (~6 epochs)
    ft_lr: float = 2e-4
    ft_weight_decay: float = 0.01  # what the committed CPU table was fine-tuned with (then the loop's default)
    bf16: bool = False
    corpus_limit: int = 0  # 0: the whole pre-training corpus
    arms: tuple[str, ...] = ("random", "base", "mlm", "enc-dec-mlm", "rlm")
    fractions: tuple[float, ...] = (0.1, 1.0)
    seeds: tuple[int, ...] = (1,)

    @property
    def config_overrides(self) -> str:
        return (f"hidden_size={self.hidden},num_hidden_layers={self.layers},num_attention_heads={self.heads},"
                f"intermediate_size={4 * self.hidden},max_position_embeddings={max(self.max_length, 144) + 16}")


PRESETS = {
    "cpu": Preset(),
    "gpu": Preset(vocab_size=16384, hidden=512, layers=6, heads=8, max_length=128, batch_size=256,
                  base_steps=3000, base_lr=5e-4, arm_steps=1000, ft_batch=64, ft_group=8, ft_steps=800,
                  ft_steps_few=300, bf16=True,
                  arms=("random", "base", "mlm", "enc-dec-mlm", "condenser", "rlm", "rlm-15-15", "rlm-30-100"),
                  seeds=(1, 2, 3)),
    # The practical track: does continued pre-training on the corpus help an existing sentence
    # encoder? MiniLM has no MLM head, so RLM samples from a small generator trained first.
    "minilm": Preset(start="minilm", rlm_generator="mlm-warmup", max_length=96, batch_size=16, arm_steps=300,
                     arm_lr=2e-5, ft_batch=32, ft_group=4, ft_steps=400, ft_steps_few=150, ft_lr=3e-5,
                     arms=("base", "mlm", "enc-dec-mlm", "rlm")),
    "tiny": Preset(vocab_size=600, hidden=32, layers=2, heads=2, max_length=32, batch_size=8, base_steps=6,
                   arm_steps=4, ft_batch=8, ft_group=2, ft_steps=4, ft_steps_few=2, corpus_limit=300,
                   arms=("base", "mlm", "rlm"), fractions=(1.0,)),
}


# -- stage bookkeeping -------------------------------------------------------------------------------

def _done(path: Path) -> dict | None:
    f = path / "done.json"
    return json.loads(f.read_text()) if f.exists() else None


def _mark_done(path: Path, info: dict) -> dict:
    with atomic_write(path / "done.json") as fh:
        json.dump(info, fh, indent=2)
    return info


# -- stages ---------------------------------------------------------------------------------------------

def limited_corpus(corpus: Path, work: Path, limit: int) -> Path:
    """The first ``limit`` passages of ``corpus`` as a JSONL file (the tiny preset), or ``corpus`` itself."""
    if not limit:
        return corpus
    out = work / "corpus-head.jsonl"
    if not out.exists():
        opener = gzip.open if corpus.suffix == ".gz" else open
        with opener(corpus, "rt", encoding="utf-8") as src, atomic_write(out) as dst:
            for i, line in enumerate(src):
                if i >= limit:
                    break
                dst.write(line)
    return out


def train_vocab(corpus: Path, out: Path, vocab_size: int) -> Path:
    """A lower-cased WordPiece vocabulary trained on ``corpus`` with the ``tokenizers`` library,
    saved as a BERT tokenizer directory (a 30k vocabulary's output layer would dominate a small model)."""
    if (out / "tokenizer.json").exists():
        return out
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    from simlm_ir.data.datasets import iter_passages

    def texts():
        for p in iter_passages(str(corpus)):
            yield p.text

    tok = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    tok.train_from_iterator(texts(), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    with atomic_directory(out) as tmp:
        tok.save_model(str(tmp))
        vocab = {line.rstrip("\n"): i for i, line in enumerate((tmp / "vocab.txt").open(encoding="utf-8"))}
        BertTokenizerFast(vocab=vocab, do_lower_case=True, strip_accents=True).save_pretrained(str(tmp))
    return out


def pretrain_stage(out: Path, corpus: Path, init: str, preset: Preset, objective: str, steps: int, lr: float,
                   enc_rate: float, dec_rate: float, tokenizer: Path | None = None, generator: str = "unigram",
                   progress: bool = True) -> dict:
    """One pre-training run (resumable); returns its cost: steps, tokens, wall time, tokens/s."""
    info = _done(out)
    if info:
        info.setdefault("train_s", _log_seconds(info.get("log") or []))
        return info
    from simlm_ir.train.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(corpus=str(corpus), init=init, output=str(out), generator=generator,
                         generator_warmup_steps=preset.generator_warmup_steps,
                         tokenizer=str(tokenizer) if tokenizer else None,
                         config_overrides=preset.config_overrides if init == "scratch" else "",
                         max_length=preset.max_length, encoder_mask_rate=enc_rate, decoder_mask_rate=dec_rate,
                         objective=objective, lr=lr, warmup_steps=max(1, steps // 10), max_steps=steps,
                         batch_size=preset.batch_size, bf16=preset.bf16, save_steps=max(1, min(250, steps // 4)),
                         logging_steps=max(1, min(25, steps // 4)), resume=(out / "run_config.json").exists(),
                         progress=progress)
    t0 = time.perf_counter()
    pretrain(cfg)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line]
    run_cfg = json.loads((out / "run_config.json").read_text())
    tokens_per_step = [r["tokens_per_s"] for r in log]
    return _mark_done(out, {
        "objective": objective, "steps": steps, "batch_size": preset.batch_size, "max_length": preset.max_length,
        "encoder_mask_rate": enc_rate, "decoder_mask_rate": dec_rate, "generator": run_cfg.get("generator"),
        "wall_s_this_call": time.perf_counter() - t0,
        "train_s": _log_seconds(log),
        # non-padding tokens trained on, summed over the log's windows (checkpoints fall on log steps)
        "tokens": int(sum(r.get("tokens", 0) for r in log)),
        "median_tokens_per_s": float(np.median(tokens_per_step)) if tokens_per_step else None,
        "final_loss": log[-1]["loss"] if log else None,
        "final_encoder_loss": log[-1]["encoder_loss"] if log else None,
        "final_decoder_loss": log[-1]["decoder_loss"] if log else None,
        "log": log,
    })


def _log_seconds(log: list[dict]) -> float:
    """Training seconds over a whole run, resumed parts included: each log window's tokens / its speed."""
    return float(sum(r["tokens"] / r["tokens_per_s"] for r in log if r.get("tokens") and r.get("tokens_per_s")))


def random_init(out: Path, tokenizer: Path, preset: Preset, seed: int = 42) -> Path:
    """A randomly initialised BERT of the preset's size (the floor arm)."""
    if _done(out):
        return out
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from simlm_ir.modeling.rlm import parse_config_overrides

    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                 **parse_config_overrides(preset.config_overrides)), add_pooling_layer=False)
    with atomic_directory(out) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    _mark_done(out, {"kind": "random"})
    return out


def training_files(work: Path, fractions, seed: int = 0) -> dict[float, Path]:
    """BM25-negative training files (Pyserini BM25 top 200 minus positives) for each query fraction.

    A fraction keeps the training queries whose sha1 falls in that share, the same for every arm."""
    from simlm_ir.train.mine import mine

    full = work / "bm25_negs.jsonl"
    if not full.exists():
        mine(f"{DATASET}/train", "bm25", full, depth=200, work_dir=work / "mine")
    files = {}
    lines = full.read_text(encoding="utf-8").splitlines()
    for frac in fractions:
        if frac >= 1.0:
            files[frac] = full
            continue
        path = work / f"bm25_negs.{int(frac * 100)}pct.jsonl"
        if not path.exists():
            keep = [ln for ln in lines if ln.strip() and int(hashlib.sha1(
                f"{seed}:{json.loads(ln)['query_id']}".encode()).hexdigest(), 16) % 1000 < frac * 1000]
            with atomic_write(path) as fh:
                fh.write("".join(ln + "\n" for ln in keep))
        files[frac] = path
    return files


def finetune_stage(out: Path, init: Path, train_file: Path, preset: Preset, steps: int, seed: int,
                   progress: bool = True) -> Path:
    if _done(out):
        return out
    from simlm_ir.train.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(train_file=str(train_file), output=str(out), init=str(init), corpus=DATASET,
                         group_size=preset.ft_group, batch_size=preset.ft_batch, lr=preset.ft_lr, max_steps=steps,
                         warmup_steps=max(1, steps // 10), passage_max_length=preset.max_length, seed=seed,
                         save_steps=max(1, steps // 4), log_every=max(1, min(10, steps // 4)),
                         weight_decay=preset.ft_weight_decay,
                         resume=(out / "finetune_config.json").exists(), progress=progress)
    t0 = time.perf_counter()
    records = finetune(cfg)
    _mark_done(out, {"steps": steps, "wall_s_this_call": time.perf_counter() - t0,
                     "final_loss": records[-1].get("loss") if records else None})
    return out


def evaluate_encoder(checkpoint: Path, preset: Preset, splits=("dev", "test")) -> dict:
    """nDCG@10 and RR@10 (aggregate and per query) of ``checkpoint`` on each split, exact search."""
    cache = checkpoint / "ablation_eval.json"
    if cache.exists():
        return json.loads(cache.read_text())
    import faiss

    from simlm_ir.data.datasets import load_collection
    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.eval.measures import evaluate

    enc = SimLMEncoder(str(checkpoint), passage_max_length=preset.max_length)
    passages = list(load_collection(DATASET).passages())
    vectors = enc.encode_passages([p.text for p in passages], [p.title for p in passages])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    results = {}
    for split in splits:
        coll = load_collection(f"{DATASET}/{split}")
        qids = list(coll.queries)
        scores, idx = index.search(enc.encode_queries([coll.queries[q] for q in qids]).astype(np.float32), 100)
        run = {q: {passages[j].id: float(s) for s, j in zip(srow, irow) if j >= 0}
               for q, srow, irow in zip(qids, scores, idx)}
        ev = evaluate(run, coll.qrels, ("nDCG@10", "RR@10"))
        results[split] = {"aggregate": ev.aggregate, "per_query": ev.per_query}
    with atomic_write(cache) as fh:
        json.dump(results, fh)
    return results


def bottleneck_gap(arm_dir: Path, generator: str, batches: int = 8, batch_size: int = 32, seed: int = 7) -> dict:
    """Decoder loss with each passage's own [CLS] vs with another passage's (rolled within the batch).

    The decoder sees the passage only through [CLS], so the gap is how much the bottleneck vector
    tells it: ~0 means the decoder ignores [CLS] and the objective cannot shape it. Measured on the
    embedded collection's documents (held-out text for the pre-training losses is not needed: this
    compares two inputs of the same model on the same text).
    """
    import torch

    from simlm_ir.data.datasets import iter_passages
    from simlm_ir.modeling.generators import MaskFiller, MLMGenerator
    from simlm_ir.modeling.masking import WholeWordMasker
    from simlm_ir.modeling.rlm import SimLMForPretraining
    from simlm_ir.train.data import collate, tokenize_passages

    model = SimLMForPretraining.from_pretrained(arm_dir)
    tok, cfg = model.tokenizer, model.config
    if cfg.objective == "rlm":
        model.generator = MLMGenerator.from_pretrained(generator, tok) if Path(generator).is_dir() else None
    else:
        model.generator = MaskFiller(tok.mask_token_id, tok.all_special_ids)
    if model.generator is None:
        return {}
    model.eval()
    run_cfg = json.loads((arm_dir / "run_config.json").read_text())["config"]
    passages = [p for _, p in zip(range(batches * batch_size), iter_passages(DATASET))]
    corpus = tokenize_passages(passages, tok, run_cfg["max_length"])
    masker = WholeWordMasker(tok)
    own, other = [], []
    with torch.no_grad():
        for b in range(batches):
            batch = collate(corpus, list(range(b * batch_size, (b + 1) * batch_size)), tok.pad_token_id)
            g = torch.Generator().manual_seed(seed + b)
            m = masker.encoder_decoder_masks(batch["input_ids"], cfg.encoder_mask_rate, cfg.decoder_mask_rate, g,
                                             batch["attention_mask"])
            out = model(batch["input_ids"], batch["attention_mask"], m.encoder, m.decoder, batch["token_type_ids"],
                        rng=torch.Generator().manual_seed(seed + b))
            every = model.label_positions(batch["input_ids"], batch["attention_mask"])
            targets = every if cfg.objective == "rlm" else m.decoder & every
            for cls, sink in ((out.encoder_last_hidden_state[:, 0], own),
                              (out.encoder_last_hidden_state[:, 0].roll(1, dims=0), other)):
                hidden = model.decode(cls, out.decoder_input_ids, batch["attention_mask"])
                sink.append(float(model._mlm_loss(hidden, batch["input_ids"], targets)))
    return {"decoder_loss_own_cls": float(np.mean(own)), "decoder_loss_other_cls": float(np.mean(other)),
            "gap": float(np.mean(other) - np.mean(own))}


# -- the whole ablation -------------------------------------------------------------------------------------

def run_ablation(preset: Preset, corpus: Path, work: Path, runs_dir: Path, progress: bool = True) -> dict:
    """Run (or continue) every stage, then write the table; returns the result rows."""
    work.mkdir(parents=True, exist_ok=True)
    if not corpus.exists():
        raise SimLMIRError(f"{corpus}: pre-training corpus not found; build it with "
                           "python benchmarks/make_pretrain_corpus.py (or pass --corpus FILE)")
    corpus = limited_corpus(corpus, work, preset.corpus_limit)
    if preset.start == "scratch":
        tokenizer = train_vocab(corpus, work / "tokenizer", preset.vocab_size)
        base_dir = work / "base"
        base = pretrain_stage(base_dir, corpus, "scratch", preset, "mlm", preset.base_steps, preset.base_lr,
                              0.15, 0.15, tokenizer=tokenizer, progress=progress)
        logger.info("base: %s steps, final MLM loss %.3f", base["steps"], base["final_loss"])
    else:
        from simlm_ir.modeling.checkpoints import resolve_checkpoint

        tokenizer, base_dir = None, Path(resolve_checkpoint(preset.start))
        base = {"start": preset.start, "path": str(base_dir)}
    rlm_generator = str(base_dir) if preset.rlm_generator == "base" else preset.rlm_generator
    encoders: dict[str, tuple[Path, dict | None]] = {}
    for key in preset.arms:
        arm = ARMS[key]
        if arm.start == "random":
            encoders[key] = (random_init(work / "arms" / key, tokenizer, preset), None)
        elif arm.objective is None:
            encoders[key] = (base_dir, None)
        else:
            out = work / "arms" / key
            # RLM samples its replacements from the frozen base: the paper freezes an MLM generator.
            cost = pretrain_stage(out, corpus, str(base_dir), preset, arm.objective, preset.arm_steps, preset.arm_lr,
                                  arm.encoder_mask_rate, arm.decoder_mask_rate,
                                  generator=rlm_generator, progress=progress)
            encoders[key] = (out, cost)
    files = training_files(work, preset.fractions)
    rows = []
    for key in preset.arms:
        path, cost = encoders[key]
        if cost and ARMS[key].objective in ("rlm", "enc-dec-mlm") and "bottleneck" not in cost:
            cost["bottleneck"] = bottleneck_gap(path, rlm_generator)
            _mark_done(path, cost)
        row = {"arm": key, "name": ARMS[key].name, "pretrain": cost and {k: v for k, v in cost.items() if k != "log"},
               "zero_shot": evaluate_encoder(path, preset, ("test",)), "finetuned": {}}
        for frac, train_file in files.items():
            steps = preset.ft_steps if frac >= 1.0 else preset.ft_steps_few
            per_seed = []
            for seed in preset.seeds:
                ft = finetune_stage(work / "finetuned" / f"{key}-{int(frac * 100)}pct-s{seed}", path, train_file,
                                    preset, steps, seed, progress)
                per_seed.append(evaluate_encoder(ft, preset))
            row["finetuned"][frac] = per_seed
        rows.append(row)
    result = {"preset": asdict(preset), "base": {k: v for k, v in base.items() if k != "log"}, "rows": rows,
              "logs": {**{k: c["log"] for k, (_, c) in encoders.items() if c and c.get("log")},
                       "base (MLM from scratch)": base.get("log")}}
    write_report(result, runs_dir)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="pre-training corpus (JSONL, may be gzipped)")
    ap.add_argument("--work-dir", type=Path, default=None, help="default: work/ablation/<preset>")
    ap.add_argument("--runs-dir", type=Path, default=None, help="default: runs/pretraining-ablation[-<preset>]")
    ap.add_argument("--arms", nargs="+", choices=sorted(ARMS), help="override the preset's arms")
    ap.add_argument("--seeds", nargs="+", type=int, help="fine-tuning seeds (override the preset's)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    preset = PRESETS[args.preset]
    if args.arms:
        preset = replace(preset, arms=tuple(args.arms))
    if args.seeds:
        preset = replace(preset, seeds=tuple(args.seeds))
    work = args.work_dir or Path("work/ablation") / args.preset
    runs = args.runs_dir or Path("runs") / ("pretraining-ablation" if args.preset == "cpu"
                                             else f"pretraining-ablation-{args.preset}")
    try:
        run_ablation(preset, args.corpus, work, runs, progress=not args.no_progress)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((runs / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
