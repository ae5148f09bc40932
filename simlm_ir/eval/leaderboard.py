"""The leaderboard: one row per system, metrics with significance markers, size and latency.

Markdown (best value per metric in bold), CSV (plain numbers plus p-values) and a bar chart PNG are
written side by side, atomically. Significance: two-sided paired t-test over the per-query values of
each metric against each baseline system (BM25 and SimLM by default), marker when p < 0.05.
Published numbers (from papers) go in a separate table under the measured one, never mixed in.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from scipy import stats

from simlm_ir.eval.measures import Evaluation
from simlm_ir.util.io import atomic_write

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


@dataclass
class PublishedRow:
    """A number reported elsewhere (e.g. the SimLM paper), shown apart from what we measured."""

    name: str
    values: dict[str, float]  # measure name -> value on the 0-1 scale of our measures
    source: str = ""


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


def published_markdown(rows: Sequence[PublishedRow], measures: Sequence[str], title: str = "Published") -> str:
    """A separate table of published numbers for the measures we report ("–" where none)."""
    shown = [m for m in measures if any(m in r.values for r in rows)]
    if not rows or not shown:
        return ""
    header = ["System (published)", *shown, "Source"]
    lines = [f"#### {title} (reported in papers, not measured here)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r.name, *[("–" if r.values.get(m) is None else f"{r.values[m]:.3f}") for m in shown], r.source]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_markdown(results: Sequence[SystemResult], measures: Sequence[str], title: str = "",
                published: Sequence[PublishedRow] = ()) -> str:
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
    extra = published_markdown(published, measures)
    if extra:
        lines += ["", extra.rstrip("\n")]
    return "\n".join(lines) + "\n"


def summary_markdown(per_dataset: Mapping[str, Sequence[SystemResult]], measure: str = "nDCG@10",
                     title: str = "", published: Mapping[str, Sequence[PublishedRow]] | None = None) -> str:
    """One row per system, one column per collection (``measure``) and their average.

    The average covers systems measured on every collection ("–" otherwise, so no system is
    averaged over easier subsets). Published numbers, when given, follow in their own table.
    """
    datasets = list(per_dataset)
    names = list(dict.fromkeys(r.name for rows in per_dataset.values() for r in rows))
    value = {(ds, r.name): r.evaluation.aggregate.get(measure) for ds, rows in per_dataset.items() for r in rows}
    header = ["System", *[_short(d) for d in datasets], "Average"]
    lines = [f"### {title}" if title else f"### {measure} per collection", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        vals = [value.get((d, name)) for d in datasets]
        avg = None if any(v is None for v in vals) else sum(vals) / len(vals)
        lines.append("| " + " | ".join([name, *[_cell(v) for v in vals], _cell(avg)]) + " |")
    rows_pub = {d: [r for r in (published or {}).get(d, []) if measure in r.values] for d in datasets}
    pub_names = list(dict.fromkeys(r.name for rows in rows_pub.values() for r in rows))
    if pub_names:
        lines += ["", "#### Published (reported in papers, not measured here)", "",
                  "| " + " | ".join(["System (published)", *header[1:]]) + " |", "|" + "---|" * len(header)]
        for name in pub_names:
            vals = [next((r.values.get(measure) for r in rows_pub[d] if r.name == name), None) for d in datasets]
            avg = None if any(v is None for v in vals) else sum(vals) / len(vals)
            lines.append("| " + " | ".join([name, *[_cell(v, 3) for v in vals], _cell(avg, 3)]) + " |")
    return "\n".join(lines) + "\n"


def _short(dataset_id: str) -> str:
    """``beir/scifact/test`` -> ``scifact``; other ids unchanged."""
    parts = dataset_id.split("/")
    return parts[1] if parts[0] == "beir" and len(parts) >= 2 else dataset_id


def _cell(v: float | None, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


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


# Not mutation-tested (make mutants): sizes, colours and fonts change no number; the bars show the
# aggregates the table tests already check.
def write_chart(results: Sequence[SystemResult], measures: Sequence[str], path,
                title: str = "") -> Path | None:  # pragma: no mutate block
    """A bar chart PNG (one panel per measure, one bar per system), written atomically.

    Returns the path, or None when there is nothing to draw or matplotlib is missing.
    """
    shown = [m for m in measures if any(m in r.evaluation.aggregate for r in results)]
    if not results or not shown:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed; leaderboard chart skipped", stacklevel=2)
        return None
    path = Path(path)
    names = [r.name for r in results][::-1]  # first system at the top
    fig = Figure(figsize=(3.2 * len(shown) + 1.5, 0.45 * len(results) + 1.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(shown), sharey=True, squeeze=False)[0]
    colours = {"BM25": "#8c8c8c", "SimLM": "#d62728"}
    for ax, m in zip(axes, shown):
        values = [r.evaluation.aggregate.get(m, 0.0) for r in results][::-1]
        bars = ax.barh(names, values, color=[colours.get(n, "#1f77b4") for n in names])
        for bar, v in zip(bars, values):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.3f}", va="center", fontsize=8)
        ax.set_title(m, fontsize=10)
        top = max(1.0, max(values))
        ax.set_xlim(0, top * 1.2)  # room for the value labels
        if top == 1.0:
            ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    return path


def write_leaderboard(results: Sequence[SystemResult], measures: Sequence[str], out_dir, title: str = "",
                      published: Sequence[PublishedRow] = ()) -> tuple[Path, Path]:
    """Write ``leaderboard.md``, ``leaderboard.csv`` and the chart ``leaderboard.png`` into
    ``out_dir``; returns the paths of the first two."""
    out_dir = Path(out_dir)
    md, csv_path = out_dir / "leaderboard.md", out_dir / "leaderboard.csv"
    with atomic_write(md) as fh:
        fh.write(to_markdown(results, measures, title, published))
    with atomic_write(csv_path) as fh:
        fh.write(to_csv(results, measures))
    write_chart(results, measures, out_dir / "leaderboard.png", title)
    return md, csv_path
