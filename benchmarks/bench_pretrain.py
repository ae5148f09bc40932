"""SimLM pre-training throughput (tokens/s) and peak memory on this machine, through the real driver,
with a plain BERT-MLM step on the same model and batch as the yardstick.

``python benchmarks/bench_pretrain.py`` runs a few steps of :func:`simlm_ir.train.pretrain.pretrain`
for each objective (``--objectives``, default ``mlm rlm``: 15% MLM, encoder only, vs SimLM's RLM with
its generator) on the same passages of real English text, one after the other in this process, and
prints the median tokens/s of the timed steps of each (the first ``--skip`` steps are warm-up) and
their ratio, peak RSS, and CUDA peak memory on a GPU. Tokens are the non-padding tokens of the encoder
input, counted once per passage. ``--generator self`` makes RLM sample from the frozen ``--init``
model, as the pre-training ablation does with its base.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from simlm_ir.train.pretrain import PretrainConfig, pretrain
from simlm_ir.util.device import resolve_device

BENCH_MODULES = ["json", "argparse", "collections", "functools", "pathlib", "logging", "subprocess", "tempfile",
                 "textwrap", "csv", "heapq", "random", "statistics", "decimal", "datetime", "difflib", "pickle",
                 "sqlite3", "threading", "zipfile", "inspect", "shutil", "calendar", "fractions", "unittest",
                 "email", "http", "urllib", "asyncio", "typing", "dataclasses", "enum", "itertools", "string"]


def write_bench_corpus(path: Path, min_words: int = 130) -> int:
    """Real prose (stdlib docstrings) packed into passages long enough to fill 144 tokens."""
    paras = []
    for name in BENCH_MODULES:
        mod = importlib.import_module(name)
        objs = [mod] + [v for k, v in sorted(vars(mod).items()) if not k.startswith("_") and inspect.isclass(v)]
        for obj in objs:
            for para in re.split(r"\n\s*\n", inspect.getdoc(obj) or ""):
                para = " ".join(para.split())
                if len(para.split()) >= 8 and ">>>" not in para:
                    paras.append(para)
    rows, words = [], []
    for para in paras:
        words.extend(para.split())
        if len(words) >= min_words:
            rows.append({"id": str(len(rows)), "title": "-", "text": " ".join(words)})
            words = []
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def bench_pretrain(init: str = "minilm", corpus: str | None = None, max_length: int = 144, batch_size: int = 16,
                   steps: int = 4, skip: int = 1, generator: str = "mlm-warmup", device: str = "auto",
                   threads: int | None = None, bf16: bool = False, objective: str = "rlm",
                   generator_warmup_steps: int = 1) -> dict:
    """Run ``steps`` pre-training steps of ``objective`` and summarise throughput and memory."""
    if steps <= skip:
        raise ValueError(f"--steps ({steps}) must exceed --skip ({skip})")
    with tempfile.TemporaryDirectory(prefix="bench_pretrain.") as tmp:
        tmp = Path(tmp)
        if corpus is None:
            corpus = str(tmp / "corpus.jsonl")
            write_bench_corpus(Path(corpus))
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        mask_rates = (0.15, 0.15) if objective == "mlm" else (0.3, 0.5)
        cfg = PretrainConfig(corpus=corpus, init=init, output=str(tmp / "run"),
                             generator=init if generator == "self" else generator, objective=objective,
                             encoder_mask_rate=mask_rates[0], decoder_mask_rate=mask_rates[1],
                             generator_warmup_steps=generator_warmup_steps, max_length=max_length,
                             batch_size=batch_size,
                             max_steps=steps, warmup_steps=1, lr=1e-4, save_steps=10 ** 9, logging_steps=1,
                             device=device, threads=threads, bf16=bf16, progress=False)
        start = time.perf_counter()
        pretrain(cfg)
        wall = time.perf_counter() - start
        log = [json.loads(line) for line in (tmp / "run" / "train_log.jsonl").read_text().splitlines()]
        run_config = json.loads((tmp / "run" / "run_config.json").read_text())
    timed = [r["tokens_per_s"] for r in log[skip:]]
    resolved = str(resolve_device(device))
    out = {
        "objective": objective, "init": init, "encoder_parameters": run_config["encoder_parameters"],
        "generator": run_config["generator"]["kind"],
        "max_length": max_length, "batch_size": batch_size, "timed_steps": len(timed),
        "device": resolved, "threads": torch.get_num_threads(), "bf16": bf16,
        "tokens_per_s": statistics.median(timed),
        "mean_passage_tokens": run_config["corpus_tokens"] / run_config["corpus_passages"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s_including_setup": wall,
        "losses": [round(r["loss"], 3) for r in log],
    }
    if torch.cuda.is_available() and out["device"].startswith("cuda"):
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", default="minilm")
    p.add_argument("--corpus", default=None, help="JSONL corpus (default: packed stdlib docstrings)")
    p.add_argument("--max-length", type=int, default=144)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--skip", type=int, default=1, help="warm-up steps left out of the median")
    p.add_argument("--objectives", nargs="+", default=["mlm", "rlm"], help="measured in this order, same batches")
    p.add_argument("--generator", default="mlm-warmup",
                   help='RLM generator: "mlm-warmup", "unigram", "self" (the frozen --init) or a masked-LM checkpoint')
    p.add_argument("--generator-warmup-steps", type=int, default=1, help='for "mlm-warmup" (not timed)')
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action="store_true")
    args = p.parse_args(argv)
    results = [bench_pretrain(args.init, args.corpus, args.max_length, args.batch_size, args.steps, args.skip,
                              args.generator, args.device, args.threads, args.bf16, objective,
                              args.generator_warmup_steps) for objective in args.objectives]
    first = results[0]
    print(f"Pre-training throughput ({first['init']}, {first['encoder_parameters'] / 1e6:.1f}M encoder params, "
          f"max_length={first['max_length']}, batch={first['batch_size']}, device={first['device']}, "
          f"threads={first['threads']}, bf16={first['bf16']})")
    print(f"  {'objective':<10} {'generator':<12} {'tokens/s':>10} {'cost vs ' + first['objective']:>14}")
    for r in results:
        print(f"  {r['objective']:<10} {r['generator']:<12} {r['tokens_per_s']:>10,.0f} "
              f"{first['tokens_per_s'] / r['tokens_per_s']:>13.2f}x")
    print(f"  peak RSS   : {max(r['peak_rss_mib'] for r in results):,.0f} MiB")
    if "cuda_peak_mib" in first:
        print(f"  CUDA peak  : {max(r['cuda_peak_mib'] for r in results):,.0f} MiB ({first['gpu']})")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
