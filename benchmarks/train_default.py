#!/usr/bin/env python
"""Build the small default SimLM (and its re-ranker) from what is on our machines.

    python benchmarks/train_default.py                 # the whole recipe
    python benchmarks/train_default.py --from-stage stage2
    python benchmarks/train_default.py --only teacher stage3 --kd-init stage2   # ablation: distil stage 2

Every stage is the public CLI command it prints (so the recipe doubles as documentation):

 1. ``mine-bm25``  BM25 (Pyserini) top-100 negatives for the *train* queries of debian-known-item
 2. ``pretrain``   SimLM RLM pre-training of all-MiniLM-L6-v2 on the collection's documents only
 3. ``nopretrain`` ablation: MiniLM fine-tuned with BM25 negatives, no SimLM pre-training
 4. ``stage1``     pre-trained SimLM fine-tuned with BM25 negatives
 5. ``mine-dense`` negatives mined by stage 1 (top 200, positives removed)
 6. ``stage2``     pre-trained SimLM fine-tuned with stage-1 negatives
 7. ``reranker``   cross-encoder (MiniLM) trained on BM25 negatives (``--rerank-negatives stage1``: the
                   authors' choice, the retriever's own): the teacher; forwards
                   ``--rerank-group-size`` candidates without gradient and trains on its own top
                   1/``--rerank-forward-factor`` with the positive kept, plus R-Drop
 8. ``teacher``    the re-ranker scores each training query's positives and a pool of its top
                   ``--kd-pool`` stage-1 negatives + 10 random ones
 9. ``stage3``     the *pre-trained* checkpoint distilled from the re-ranker (KL + 0.2 x
                   contrastive), each epoch a new slice of the scored pool as group negatives, the
                   best checkpoint on debian-known-item/dev kept (``--kd-init stage2``: ablation)
10. ``colbert``    the ColBERT baseline (``python -m simlm_ir.train.colbert``) on stage 1's BM25-negative
                   training file (with ``--extra-train``, the same 4,020 + extra queries and corpus) and
                   the same batch, group, lr, epochs and warm-up, so the leaderboard compares the two
                   architectures at one data and compute budget
11. ``export``     the ``--export-stage`` checkpoint, the re-ranker and ColBERT (when trained) -> fp16
                   safetensors under simlm_ir/resources/

Scale is cut to fit 2 CPU cores (the paper's settings are in SIMLM.md); the defaults are the previous
default's settings (docs/finetune.md): all 4,020 training queries, batches of 32 queries x (1
positive + 1 negative), 2 epochs per contrastive stage, 100 RLM steps of 32 passages. The shipped
default adds ``--extra-train 24000 --epochs 1`` (stage 1 and its twin; ``extra-data`` builds that file
from the apt lists first). Stage 3 takes the
authors' defaults (24 passages, lr 3e-5, 6 epochs) unless ``--kd-group-size/--kd-lr/--kd-epochs``
cut them. Test queries are never used; dev queries only pick stage 3's best checkpoint.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from simlm_ir.train.data import read_train_file, write_train_file
from simlm_ir.util.io import atomic_write

RESOURCES = ROOT / "simlm_ir" / "resources"
DATASET = "debian-known-item"
TRAIN_SPLIT = f"{DATASET}/train"


def stages(w: Path, a) -> list[tuple[str, list[str]]]:
    py = [sys.executable, "-m"]
    extra = w / "extra-train"
    # the contrastive stages' data: the collection's training queries, or those + --extra-train more
    s1_file = extra / "train.jsonl" if a.extra_train else w / "bm25_negs.jsonl"
    s1_corpus = str(extra / "corpus.jsonl.gz") if a.extra_train else DATASET

    def ft(group: int, corpus: str = DATASET) -> list[str]:
        return ["--corpus", corpus, "--batch-size", str(a.batch_size), "--group-size", str(group),
                "--epochs", str(a.epochs), "--warmup-steps", str(a.warmup_steps), "--save-steps", "50",
                "--length-buckets", str(a.length_buckets), "--seed", str(a.seed)]

    def opt(flag: str, value) -> list[str]:  # leave a flag to the trainer's default when not given
        return [] if value is None else [flag, str(value)]

    kd = ["--corpus", DATASET, "--batch-size", str(a.batch_size), *opt("--group-size", a.kd_group_size),
          *opt("--lr", a.kd_lr), *opt("--epochs", a.kd_epochs), "--warmup-steps", str(a.warmup_steps),
          "--length-buckets", str(a.length_buckets),
          "--save-steps", str(a.kd_save_steps), "--eval-dataset", f"{DATASET}/dev", "--seed", str(a.seed)]

    return [
        ("mine-bm25", py + ["simlm_ir.train.mine", "--dataset", TRAIN_SPLIT, "--method", "bm25", "--depth", "100",
                            "--output", str(w / "bm25_negs.all.jsonl"), "--work-dir", str(ROOT / "work")]),
        ("subset", []),
        *([("extra-data", [sys.executable, str(ROOT / "benchmarks" / "make_extra_train.py"),
                           "--lists", str(a.apt_lists), "--extra", str(a.extra_train), "--output", str(extra),
                           "--work-dir", str(ROOT / "work")])] if a.extra_train else []),  # only with --extra-train
        ("pretrain", py + ["simlm_ir.train.pretrain", "--corpus", a.pretrain_corpus, "--init", "minilm",
                           "--output", str(w / "pretrained"), "--generator", "mlm-warmup",
                           "--generator-warmup-steps", str(a.generator_steps), "--max-steps", str(a.pretrain_steps),
                           "--batch-size", str(a.pretrain_batch), "--lr", str(a.pretrain_lr), "--warmup-steps", "10",
                           "--head-warmup-steps", str(a.head_warmup_steps),
                           "--max-length", "144", "--save-steps", "100", "--seed", str(a.seed), "--no-progress"]),
        ("nopretrain", py + ["simlm_ir.train.finetune", "--train-file", str(s1_file), "--init", "minilm",
                             "--output", str(w / "nopretrain"), "--lr", str(a.lr), *ft(a.group_size, s1_corpus)]),
        ("stage1", py + ["simlm_ir.train.finetune", "--train-file", str(s1_file),
                         "--init", str(w / "pretrained"), "--output", str(w / "stage1"), "--lr", str(a.lr),
                         *ft(a.group_size, s1_corpus)]),
        ("mine-dense", py + ["simlm_ir.train.mine", "--dataset", TRAIN_SPLIT, "--method", "dense",
                             "--encoder", str(w / "stage1"), "--depth", "200",
                             "--output", str(w / "stage1_negs.all.jsonl"),
                             "--work-dir", str(ROOT / "work")]),
        ("subset2", []),
        ("stage2", py + ["simlm_ir.train.finetune", "--train-file", str(w / "stage1_negs.jsonl"),
                         "--init", str(w / a.stage2_init), "--output", str(w / "stage2"), "--lr", str(a.lr),
                         *ft(a.group_size)]),
        ("reranker", py + ["simlm_ir.train.rerank", "--train-file", str(w / f"{a.rerank_negatives}_negs.jsonl"),
                           "--init", "minilm",
                           "--output", str(w / "reranker"), "--corpus", DATASET,
                           "--group-size", str(a.rerank_group_size),
                           "--rerank-forward-factor", str(a.rerank_forward_factor),
                           "--batch-size", str(a.rerank_batch), "--epochs", str(a.rerank_epochs),
                           "--lr", str(a.rerank_lr), "--rdrop-weight", str(a.rerank_rdrop),
                           "--negatives-top", str(a.rerank_negatives_top), *(["--bf16"] if a.rerank_bf16 else []),
                           "--length-buckets", str(a.length_buckets),
                           "--warmup-steps", str(a.warmup_steps), "--save-steps", "50", "--seed", str(a.seed)]),
        ("teacher", py + ["simlm_ir.train.teacher_scores", "--reranker", str(w / "reranker"),
                          "--train-file", str(w / "stage2_negs.jsonl"), "--negatives", str(a.kd_pool),
                          "--random-negatives", str(a.kd_random), "--seed", str(a.seed),
                          "--output", str(w / "teacher.jsonl"), "--corpus", DATASET]),
        ("stage3", py + ["simlm_ir.train.finetune", "--kd-teacher", str(w / "teacher.jsonl"),
                         "--init", str(w / ("pretrained" if a.kd_init == "pretrained" else "stage2")),
                         "--output", str(w / "stage3"), *kd]),
        # ColBERT gets SimLM stage 1's data and budget (issue 11: the same data as the shipped default)
        ("colbert", py + ["simlm_ir.train.colbert", "--train-file", str(s1_file), "--init", "minilm",
                          "--output", str(w / "colbert"), "--corpus", s1_corpus, "--batch-size", str(a.batch_size),
                          "--group-size", str(a.group_size), "--lr", str(a.lr), "--epochs", str(a.epochs),
                          "--warmup-steps", str(a.warmup_steps), "--save-steps", "50", "--seed", str(a.seed)]),
        ("export", []),
    ]


EXPORT_MODELS = {"stage1": "SimLM stage 1 (pre-trained, BM25 negatives)",
                 "stage2": "SimLM stage 2 (pre-trained, stage-1 negatives)", "stage3": "SimLM stage 3 (distilled)"}


def reranker_line(a) -> str:
    """How the exported re-ranker was trained, for its leaderboard note."""
    negatives = "BM25" if a.rerank_negatives == "bm25" else "stage-1 dense"
    pool = f"top {a.rerank_negatives_top}" if a.rerank_negatives_top else "all mined"
    epochs = f"{a.rerank_epochs:g} epoch" + ("" if a.rerank_epochs == 1 else "s")
    return (f"MiniLM cross-encoder, {a.train_queries:,} queries x {epochs}, {negatives} negatives "
            f"({pool}), {a.rerank_group_size} forwarded / top {a.rerank_group_size // a.rerank_forward_factor} trained")


def subset(src: Path, dst: Path, n: int, seed: int) -> None:
    """A fixed random subset of the training queries (the same queries for every stage)."""
    examples = read_train_file(src)
    rng = random.Random(seed)
    keep = sorted(rng.sample(range(len(examples)), min(n, len(examples))))
    write_train_file([examples[i] for i in keep], dst)


def export_fp16(src: Path, dst: Path, extra: dict) -> None:
    """Copy a checkpoint as fp16 safetensors with its tokenizer, configs and logs."""
    import torch
    from safetensors.torch import load_file, save_file

    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              str(tmp / "model.safetensors"), metadata={"format": "pt"})
    for f in src.iterdir():
        # .metadata: colbert-ai's artifact.metadata (ColBERT's settings)
        if f.is_file() and f.suffix in (".json", ".txt", ".jsonl", ".metadata") and f.name != "model.safetensors":
            shutil.copy(f, tmp / f.name)
    (tmp / "simlm_ir_recipe.json").write_text(json.dumps(extra, indent=2) + "\n")
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", type=Path, default=ROOT / "work" / "default")
    ap.add_argument("--from-stage", default=None, help="skip the stages before this one")
    ap.add_argument("--only", nargs="*", default=None, help="run only these stages")
    ap.add_argument("--train-queries", type=int, default=4020, help="training queries (default: all of them)")
    ap.add_argument("--extra-train", type=int, default=0,
                    help="add this many training queries to stage 1 and its twin, drawn from the 11 in 12 "
                         "bookworm-main packages the collection left out (benchmarks/make_extra_train.py; no "
                         "dev/test package, document or query text); a departure: the task's own training "
                         "split is 4,020 queries (default: 0, none)")
    ap.add_argument("--apt-lists", type=Path, default=ROOT / "work" / "apt" / "lists",
                    help="apt lists with bookworm main's Translation-en, for --extra-train")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=2)
    ap.add_argument("--kd-group-size", type=int, default=None,
                    help="stage-3 passages per query (default: the trainer's, 24 as the authors)")
    ap.add_argument("--kd-lr", type=float, default=None,
                    help="stage-3 lr (default: the trainer's, 3e-5 as the authors)")
    ap.add_argument("--kd-epochs", type=float, default=None,
                    help="stage-3 epochs (default: the trainer's, 6 as the authors)")
    ap.add_argument("--kd-save-steps", type=int, default=50,
                    help="stage-3 checkpoint and dev-evaluation interval (default: %(default)s)")
    ap.add_argument("--kd-pool", type=int, default=200,
                    help="teacher-scored mined negatives per query, + --kd-random random ones "
                         "(default: %(default)s, as the authors)")
    ap.add_argument("--kd-random", type=int, default=10,
                    help="teacher-scored random negatives per query (default: %(default)s, as the authors)")
    ap.add_argument("--stage2-init", choices=["pretrained", "stage1"], default="pretrained",
                    help="stage-2 start: the pre-trained checkpoint, as the authors (default), or stage 1 continued "
                         "on its own mined negatives (a departure, for when only stage 1 is at hand: e.g. the "
                         "shipped default copied to WORK_DIR/stage1)")
    ap.add_argument("--kd-init", choices=["pretrained", "stage2"], default="pretrained",
                    help="stage-3 start: the pre-trained checkpoint as the authors, or stage 2 (ablation; what "
                         "the recipe did before) (default: %(default)s)")
    ap.add_argument("--rerank-group-size", type=int, default=16,
                    help="re-ranker candidates per query forwarded (default: %(default)s; the authors' 64 is too "
                         "slow for 2 CPU cores)")
    ap.add_argument("--rerank-forward-factor", type=int, default=4,
                    help="re-ranker trains on its top group/factor, positive kept "
                         "(default: %(default)s, as the authors)")
    ap.add_argument("--rerank-batch", type=int, default=16)
    ap.add_argument("--rerank-lr", type=float, default=5e-5,
                    help="(default: %(default)s, the other stages' lr: about 250 steps of 16 queries need more than "
                         "the authors' 3e-5 over 3 MS MARCO epochs)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--rerank-epochs", type=float, default=1.0)
    ap.add_argument("--rerank-negatives", choices=["bm25", "stage1"], default="bm25",
                    help="the re-ranker's training negatives: BM25's top 100 (default: what the main job's "
                         "re-ranker row re-ranks) or stage 1's dense top 200 (the authors': their re-ranker "
                         "re-ranks the retriever's own candidates)")
    ap.add_argument("--rerank-rdrop", type=float, default=0.0,
                    help="re-ranker R-Drop weight (default: %(default)s, one pass: with the second dropout pass a step "
                         "took about 10 s instead of 6.8 s on 2 cores; the authors' is 1)")
    ap.add_argument("--rerank-negatives-top", type=int, default=32,
                    help="the re-ranker's group negatives are drawn from each query's top N mined (default: "
                         "%(default)s, the confusers near the main job's re-rank depth of 20; 0 = all mined)")
    ap.add_argument("--rerank-bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="re-ranker forward passes in bfloat16 autocast (default: on; mixed precision as the authors' "
                         "fp16 on GPU; a MiniLM training step measured 1.3-1.6x faster on a CPU with AMX)")
    ap.add_argument("--warmup-steps", type=int, default=20, help="linear warm-up of every fine-tuning stage")
    ap.add_argument("--length-buckets", type=int, default=8,
                    help="fine-tuning encodes each step's passages as this many length-sorted chunks (speed only)")
    ap.add_argument("--pretrain-corpus", default=DATASET,
                    help="unlabelled text for RLM (JSONL[.gz] or ir_datasets id), e.g. "
                         "work/pretrain-corpus/corpus.jsonl.gz from benchmarks/make_pretrain_corpus.py")
    ap.add_argument("--pretrain-lr", type=float, default=1e-4)
    ap.add_argument("--head-warmup-steps", type=int, default=40,
                    help="pre-training steps that train only MiniLM's new MLM head and the decoder")
    ap.add_argument("--pretrain-steps", type=int, default=100)
    ap.add_argument("--pretrain-batch", type=int, default=32)
    ap.add_argument("--generator-steps", type=int, default=50)
    ap.add_argument("--export-stage", choices=sorted(EXPORT_MODELS), default="stage3",
                    help="the checkpoint exported as the default retriever (default: %(default)s, the recipe's "
                         "last stage; an earlier one when a budget stops the recipe before distillation)")
    ap.add_argument("--export-models", nargs="+", choices=["simlm", "reranker", "colbert"],
                    default=["simlm", "reranker", "colbert"],
                    help="what ``export`` writes under simlm_ir/resources/ (the re-ranker and ColBERT only when "
                         "trained); e.g. ``--export-models reranker`` after retraining only the re-ranker")
    ap.add_argument("--seed", type=int, default=42)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    w = a.work_dir
    w.mkdir(parents=True, exist_ok=True)
    log_path = w / "recipe_log.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {"stages": {}}
    log["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    names = [n for n, _ in stages(w, a)]
    if a.from_stage and a.from_stage not in names:
        ap.error(f"--from-stage must be one of {names}")
    started = a.from_stage is None
    for name, cmd in stages(w, a):
        started = started or name == a.from_stage
        if not started or (a.only is not None and name not in a.only):
            continue
        t0 = time.perf_counter()
        print(f"\n=== {name}: {shlex.join(cmd) if cmd else '(in-process)'}", flush=True)
        if name == "subset":
            subset(w / "bm25_negs.all.jsonl", w / "bm25_negs.jsonl", a.train_queries, a.seed)
        elif name == "subset2":
            subset(w / "stage1_negs.all.jsonl", w / "stage1_negs.jsonl", a.train_queries, a.seed)
            # the distillation groups come from the stage-2 training data (stage-1 negatives)
            shutil.copy(w / "stage1_negs.jsonl", w / "stage2_negs.jsonl")
        elif name == "export":
            recipe = {"recipe": "benchmarks/train_default.py", "settings": log["settings"], "stages": log["stages"]}
            if "simlm" in a.export_models:
                model = EXPORT_MODELS[a.export_stage]
                if a.export_stage == "stage2" and a.stage2_init == "stage1":
                    model = "SimLM stage 2 (stage 1 continued on its own mined negatives)"
                if a.export_stage == "stage1" and a.extra_train:
                    model = (f"SimLM stage 1 (pre-trained, BM25 negatives, {a.train_queries:,} + {a.extra_train:,} "
                             "training queries)")
                export_fp16(w / a.export_stage, RESOURCES / "simlm-default", {**recipe, "model": model})
            if "reranker" in a.export_models and (w / "reranker" / "model.safetensors").exists():
                export_fp16(w / "reranker", RESOURCES / "reranker-default",
                            {**recipe, "model": reranker_line(a)})
            if "colbert" in a.export_models and (w / "colbert" / "model.safetensors").exists():
                queries = f"{a.train_queries:,} + {a.extra_train:,}" if a.extra_train else f"{a.train_queries:,}"
                export_fp16(w / "colbert", RESOURCES / "colbert-default",
                            {**recipe, "model": f"ColBERT (MiniLM + 128-dim projection), {queries} queries x "
                                                f"{a.epochs:g} epoch{'' if a.epochs == 1 else 's'}, BM25 negatives"})
        else:
            proc = subprocess.run(cmd, cwd=ROOT)
            if proc.returncode != 0:
                print(f"stage {name} failed (exit {proc.returncode})", file=sys.stderr)
                return proc.returncode
        log["stages"][name] = {"seconds": round(time.perf_counter() - t0, 1), "command": shlex.join(cmd) if cmd else ""}
        with atomic_write(log_path) as fh:
            json.dump(log, fh, indent=2)
        print(f"=== {name} done in {log['stages'][name]['seconds']:.0f}s", flush=True)
    total = sum(s["seconds"] for s in log["stages"].values())
    print(f"\nrecipe wall time (all recorded stages): {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
