"""The leaderboard: one row per system, metrics with significance markers, size and latency.

Markdown (best value per metric in bold) and CSV (plain numbers plus p-values) are written side by
side, atomically. Significance: two-sided paired t-test over the per-query values of each metric
against each baseline system (BM25 and SimLM by default), marker when p < 0.05.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from scipy import stats

from simlm_ir.evaluation import Evaluation
from simlm_ir.io_utils import atomic_write

ALPHA = 0.05
MARKERS = {"BM25": "†", "SimLM": "‡"}


@dataclass
class SystemResult:
    """What one system produced on one collection."""

    name: str
    evaluation: Evaluation
    index_bytes: int | None = None
    latency_ms: float | None = None  # mean per query, queries searched one at a time
    encode_s: float | None = None  # time to build the index (encoding included)
    note: str = ""
    extra: dict = field(default_factory=dict)


def paired_p_value(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Two-sided paired t-test over the queries both systems were evaluated on."""
    qids = sorted(set(a) & set(b))
    if len(qids) < 2:
        return None
    x = [a[q] for q in qids]
    y = [b[q] for q in qids]
    if all(u == v for u, v in zip(x, y)):
        return 1.0
    return float(stats.ttest_rel(x, y).pvalue)


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def significance(results: Sequence[SystemResult], measures: Sequence[str],
                 baselines: Sequence[str] = tuple(MARKERS)) -> dict[tuple[str, str, str], float | None]:
    """p-values keyed by (system, measure, baseline)."""
    by_name = {r.name: r for r in results}
    out = {}
    for r in results:
        for base in baselines:
            if base not in by_name or base == r.name:
                continue
            for m in measures:
                out[(r.name, m, base)] = paired_p_value(r.evaluation.per_query.get(m, {}),
                                                        by_name[base].evaluation.per_query.get(m, {}))
    return out


def to_markdown(results: Sequence[SystemResult], measures: Sequence[str], title: str = "") -> str:
    pvals = significance(results, measures)
    best = {m: max((r.evaluation.aggregate.get(m, float("-inf")) for r in results), default=None) for m in measures}
    header = ["System", *measures, "Index size", "Latency (ms/q)", "Index time (s)"]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r.name + (f" ({r.note})" if r.note else "")]
        for m in measures:
            v = r.evaluation.aggregate.get(m)
            if v is None:
                cells.append("–")
                continue
            s = f"{v:.4f}"
            if best[m] is not None and abs(v - best[m]) < 1e-12:
                s = f"**{s}**"
            for base, mark in MARKERS.items():
                p = pvals.get((r.name, m, base))
                if p is not None and p < ALPHA:
                    s += mark
            cells.append(s)
        cells.append(_fmt_size(r.index_bytes))
        cells.append("–" if r.latency_ms is None else f"{r.latency_ms:.1f}")
        cells.append("–" if r.encode_s is None else f"{r.encode_s:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    present = [f"{mark} p < {ALPHA} vs {base} (paired t-test)" for base, mark in MARKERS.items()
               if any(r.name == base for r in results)]
    if present:
        lines += ["", "; ".join(present) + ". Best value per column in bold."]
    return "\n".join(lines) + "\n"


def to_csv(results: Sequence[SystemResult], measures: Sequence[str]) -> str:
    pvals = significance(results, measures)
    bases = [b for b in MARKERS if any(r.name == b for r in results)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["system", "note", *measures, *[f"p({m} vs {b})" for b in bases for m in measures],
                "index_bytes", "latency_ms", "index_time_s", "queries"])
    for r in results:
        nq = len(next(iter(r.evaluation.per_query.values()), {}))
        w.writerow([r.name, r.note,
                    *[_num(r.evaluation.aggregate.get(m)) for m in measures],
                    *[_num(pvals.get((r.name, m, b))) for b in bases for m in measures],
                    r.index_bytes if r.index_bytes is not None else "",
                    _num(r.latency_ms, 3), _num(r.encode_s, 2), nq])
    return buf.getvalue()


def _num(v, digits: int = 6) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def write_leaderboard(results: Sequence[SystemResult], measures: Sequence[str], out_dir, title: str = "") -> tuple[Path, Path]:
    """Write ``leaderboard.md`` and ``leaderboard.csv`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    md, csv_path = out_dir / "leaderboard.md", out_dir / "leaderboard.csv"
    with atomic_write(md) as fh:
        fh.write(to_markdown(results, measures, title))
    with atomic_write(csv_path) as fh:
        fh.write(to_csv(results, measures))
    return md, csv_path
