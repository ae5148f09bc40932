"""The pre-training ablation's table: one row per arm (cost, bottleneck gap, zero-shot and fine-tuned
quality, paired t-test against SimLM RLM), the published Table 6 beside it, and a loss/quality chart.

Reads only the result dict that :func:`simlm_ir.train.ablation.run_ablation` builds, so a finished
ablation can be re-rendered without training anything.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from simlm_ir.eval.leaderboard import paired_p_value
from simlm_ir.eval.published import SIMLM_PRETRAINING_ABLATION
from simlm_ir.util.io import atomic_write


def _seed_mean(per_seed: list[dict], split: str, measure: str) -> tuple[float, float, dict[str, float]]:
    aggs = [s[split]["aggregate"][measure] for s in per_seed]
    qids = per_seed[0][split]["per_query"][measure].keys()
    per_query = {q: float(np.mean([s[split]["per_query"][measure][q] for s in per_seed])) for q in qids}
    return float(np.mean(aggs)), float(np.std(aggs)), per_query


def _p(a: dict[str, float], b: dict[str, float]) -> float | None:
    return paired_p_value(a, b)


def _train_s(cost: dict) -> float:
    """Training seconds of a pre-training run (from its log windows, so a resumed run counts whole)."""
    if cost.get("train_s") is not None:
        return cost["train_s"]
    return cost["wall_s_this_call"]


def report_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    fracs = sorted({float(f) for r in result["rows"] for f in r["finetuned"]})
    header = ["arm", "pre-training tokens", "training s", "tokens/s", "decoder loss: own / other [CLS]",
              "zero-shot test nDCG@10"]
    for f in fracs:
        pct = f"{int(f * 100)}%"
        header += [f"{pct}: dev nDCG@10", f"{pct}: test nDCG@10", f"{pct}: test RR@10",
                   f"{pct}: p vs RLM (test nDCG@10)"]
    ref = next((r for r in result["rows"] if r["arm"] == "rlm"), None)
    body = []
    for r in result["rows"]:
        pre = r["pretrain"] or {}
        cells = [r["name"], f"{pre['tokens']:,}" if pre else "0", f"{_train_s(pre):.0f}" if pre else "-",
                 f"{pre['median_tokens_per_s']:,.0f}" if pre else "-",
                 (f"{pre['bottleneck']['decoder_loss_own_cls']:.3f} / {pre['bottleneck']['decoder_loss_other_cls']:.3f}"
                  if pre and pre.get("bottleneck") else "-"),
                 f"{r['zero_shot']['test']['aggregate']['nDCG@10']:.4f}"]
        for f in fracs:
            per_seed = r["finetuned"].get(f) or r["finetuned"].get(str(f))
            dev_m, dev_s, _ = _seed_mean(per_seed, "dev", "nDCG@10")
            test_m, test_s, test_q = _seed_mean(per_seed, "test", "nDCG@10")
            rr_m, rr_s, _ = _seed_mean(per_seed, "test", "RR@10")
            sd = len(per_seed) > 1
            cells += [f"{dev_m:.4f}" + (f" ± {dev_s:.4f}" if sd else ""),
                      f"{test_m:.4f}" + (f" ± {test_s:.4f}" if sd else ""),
                      f"{rr_m:.4f}" + (f" ± {rr_s:.4f}" if sd else "")]
            if ref is None or r is ref:
                cells.append("-")
            else:
                ref_seeds = ref["finetuned"].get(f) or ref["finetuned"].get(str(f))
                p = _p(_seed_mean(ref_seeds, "test", "nDCG@10")[2], test_q)
                cells.append("-" if p is None else f"{p:.3g}")
        body.append(cells)
    return header, body


def write_report(result: dict, runs_dir: Path) -> Path:
    header, body = report_rows(result)
    p = result["preset"]
    base = result["base"]
    if p.get("start", "scratch") == "scratch":
        model = (f"Model: BERT {p['layers']} layers x {p['hidden']}, WordPiece vocabulary of {p['vocab_size']:,} "
                 f"trained on the pre-training corpus; passages cut to {p['max_length']} tokens. Base: plain MLM from "
                 f"random initialisation, {base['steps']:,} steps x {p['batch_size']} ({base['tokens']:,} tokens, "
                 f"{_train_s(base):.0f} s of training, final MLM loss {base['final_loss']:.3f}; charged to no arm).")
    else:
        model = (f"Practical track: every arm starts from {p['start']} (already trained for retrieval, so this "
                 f"does not test the paper's claim); passages cut to {p['max_length']} tokens.")
    gen = {"base": "the frozen base", "mlm-warmup": f"a small generator trained first with MLM "
           f"({p.get('generator_warmup_steps')} steps, counted in the RLM arm's wall time)",
           "unigram": "unigram sampling (ablation)"}[p.get("rlm_generator", "base")]
    md = ["# Pre-training ablation (debian-known-item; a known-item task, not BEIR)", "",
          f"{model} RLM replacements are sampled from {gen}. Each arm "
          f"continues from it for {p['arm_steps']:,} steps x {p['batch_size']} passages (same data order), then "
          f"fine-tuning with BM25 negatives (contrastive, tau 0.02, {p['ft_batch']} queries x {p['ft_group']} "
          f"passages, lr {p['ft_lr']}): {p['ft_steps']} steps on 100% of the 4,020 training queries, "
          f"{p['ft_steps_few']} on 10%. Seeds: {len(p['seeds'])}; p: paired t-test over test queries "
          f"(per-query nDCG@10 averaged over seeds) against SimLM RLM 30/50.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(row) + " |" for row in body]
    md += ["", "## Published (SimLM paper, Table 6; MS MARCO dev MRR@10 after BM25-negative fine-tuning)", "",
           "| pre-training | MRR@10 |", "|---|---|"] + [f"| {n} | {v} |" for n, v in SIMLM_PRETRAINING_ABLATION]
    runs_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(runs_dir / "ablation.md") as fh:
        fh.write("\n".join(md) + "\n")
    with atomic_write(runs_dir / "ablation.csv") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(body)
    with atomic_write(runs_dir / "ablation.json") as fh:
        json.dump({k: v for k, v in result.items() if k != "logs"}, fh, indent=1)
    _plot(result, runs_dir / "ablation.png")
    return runs_dir / "ablation.md"


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, log in result["logs"].items():
        if log:
            ax1.plot([r["step"] for r in log], [r["loss"] for r in log], label=key)
    ax1.set_xlabel("pre-training step")
    ax1.set_ylabel("loss (objective's own)")
    ax1.set_title("pre-training loss per arm")
    ax1.legend(fontsize=8)
    rows = result["rows"]
    fracs = sorted({float(f) for r in rows for f in r["finetuned"]})
    width = 0.8 / max(1, len(fracs))
    for i, f in enumerate(fracs):
        vals = [_seed_mean(r["finetuned"].get(f) or r["finetuned"].get(str(f)), "test", "nDCG@10")[0] for r in rows]
        ax2.bar(np.arange(len(rows)) + i * width, vals, width, label=f"{int(f * 100)}% of training queries")
    ax2.set_xticks(np.arange(len(rows)) + width * (len(fracs) - 1) / 2)
    ax2.set_xticklabels([r["arm"] for r in rows], rotation=20, fontsize=8)
    ax2.set_ylabel("test nDCG@10")
    ax2.set_title("after fine-tuning")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, mode="wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
