import csv
import io

import pytest

from simlm_ir.eval.leaderboard import SystemResult, paired_p_value, to_csv, to_markdown, write_leaderboard
from simlm_ir.eval.measures import Evaluation


def result(name, values, **kw):
    per_q = {f"q{i}": v for i, v in enumerate(values)}
    return SystemResult(name, Evaluation({"nDCG@10": sum(values) / len(values)}, {"nDCG@10": per_q}), **kw)


def test_paired_test_detects_consistent_gain_only():
    base = [0.1 * (i % 5) for i in range(40)]
    better = [v + 0.2 + 0.01 * (i % 3) for i, v in enumerate(base)]
    noisy = [v + (0.05 if i % 2 else -0.05) for i, v in enumerate(base)]
    a, b, c = (dict(enumerate(x)) for x in (base, better, noisy))
    assert paired_p_value(b, a) < 0.05
    assert paired_p_value(c, a) > 0.05
    assert paired_p_value(a, a) == 1.0


def test_markdown_bolds_best_and_marks_significance(tmp_path):
    base = [0.1 * (i % 5) for i in range(40)]
    rows = [result("BM25", base, index_bytes=2048, latency_ms=1.5),
            result("SimLM", [v + 0.2 + 0.01 * (i % 3) for i, v in enumerate(base)])]
    md = to_markdown(rows, ["nDCG@10"])
    simlm_line = next(line for line in md.splitlines() if line.startswith("| SimLM"))
    assert "**" in simlm_line and "†" in simlm_line
    bm25_line = next(line for line in md.splitlines() if line.startswith("| BM25"))
    assert "**" not in bm25_line and "2.0 KB" in bm25_line and "1.5" in bm25_line
    md_path, csv_path = write_leaderboard(rows, ["nDCG@10"], tmp_path)
    table = list(csv.DictReader(csv_path.open()))
    assert [r["system"] for r in table] == ["BM25", "SimLM"]
    assert float(table[1]["p(nDCG@10 vs BM25)"]) < 0.05
    assert table[0]["index_bytes"] == "2048"


def test_chart_png_is_written_beside_the_table(tmp_path):
    from simlm_ir.eval.leaderboard import write_chart

    base = [0.1 * (i % 5) for i in range(10)]
    rows = [result("BM25", base), result("SimLM", [v + 0.1 + 0.01 * (i % 3) for i, v in enumerate(base)]),
            result("ColBERT", [0.0] * 10)]
    write_leaderboard(rows, ["nDCG@10"], tmp_path, "toy")
    png = tmp_path / "leaderboard.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.csv", "leaderboard.md", "leaderboard.png"]
    assert write_chart(rows, ["RR@10"], tmp_path / "none.png") is None  # no such measure: nothing drawn
    assert not (tmp_path / "none.png").exists()


def test_chart_is_replaced_atomically(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from simlm_ir.eval.leaderboard import write_chart

    rows = [result("BM25", [0.2, 0.4])]
    path = write_chart(rows, ["nDCG@10"], tmp_path / "c.png")
    before = path.read_bytes()

    def broken(self, *a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    try:
        write_chart(rows, ["nDCG@10"], tmp_path / "c.png")
    except RuntimeError:
        pass
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.png"]


def test_published_rows_stay_in_their_own_table():
    from simlm_ir.eval.leaderboard import PublishedRow

    rows = [result("BM25", [0.2, 0.4]), result("SimLM", [0.5, 0.8])]
    published = [PublishedRow("SimLM (distilled)", {"nDCG@10": 0.714}, "Wang et al. 2023"),
                 PublishedRow("ColBERTv2", {"RR@10": 0.397}, "Santhanam et al. 2022")]
    md = to_markdown(rows, ["nDCG@10"], "toy", published=published)
    measured, _, rest = md.partition("(reported in papers, not measured here)")
    assert "0.714" not in measured and "| SimLM (distilled) | 0.714 | Wang et al. 2023 |" in rest
    assert "| ColBERTv2 | – |" in rest  # no published value for this measure
    assert "**0.6500**" in measured  # bold best is computed over measured rows only
    assert "reported in papers" not in to_markdown(rows, ["nDCG@10"], "toy")


def markers(md: str, system: str) -> str:
    """The significance markers in ``system``'s first metric cell of a Markdown leaderboard."""
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {system} |") or ln.startswith(f"| {system} ("))
    return "".join(c for c in line.split("|")[2] if c in "†‡")


def test_markers_follow_the_p_values_both_ways():
    """† (vs BM25) and ‡ (vs SimLM) appear exactly where a paired t-test, run here with SciPy, gives
    p < 0.05, and never elsewhere."""
    from scipy.stats import ttest_rel

    n = 40
    base = [0.1 * (i % 5) for i in range(n)]
    simlm = [v + 0.2 + 0.01 * (i % 3) for i, v in enumerate(base)]
    near_simlm = [v + (0.05 if i % 2 else -0.05) for i, v in enumerate(simlm)]  # differs from BM25, not SimLM
    above_simlm = [v + 0.1 + 0.02 * (i % 4) for i, v in enumerate(simlm)]  # differs from both
    near_base = [v + (0.03 if i % 2 else -0.03) for i, v in enumerate(base)]  # differs from SimLM, not BM25

    def p(a, b):
        return ttest_rel(a, b).pvalue

    assert p(near_simlm, base) < 0.05 < p(near_simlm, simlm)
    assert p(above_simlm, base) < 0.05 and p(above_simlm, simlm) < 0.05
    assert p(near_base, simlm) < 0.05 < p(near_base, base)

    rows = [result("BM25", base), result("SimLM", simlm), result("Near SimLM", near_simlm),
            result("Above SimLM", above_simlm), result("Near BM25", near_base)]
    md = to_markdown(rows, ["nDCG@10"])
    assert markers(md, "BM25") == "‡"  # BM25 is significantly below SimLM: two-sided, so marked
    assert markers(md, "SimLM") == "†"
    assert markers(md, "Near SimLM") == "†"
    assert markers(md, "Above SimLM") == "†‡"
    assert markers(md, "Near BM25") == "‡"
    table = {r["system"]: r for r in csv.DictReader(io.StringIO(to_csv(rows, ["nDCG@10"])))}
    assert float(table["Near SimLM"]["p(nDCG@10 vs SimLM)"]) == pytest.approx(p(near_simlm, simlm), rel=1e-6)
    assert float(table["Near BM25"]["p(nDCG@10 vs BM25)"]) == pytest.approx(p(near_base, base), rel=1e-6)


def test_no_marker_when_nothing_is_significant():
    base = [0.1 * (i % 5) for i in range(40)]
    same_ish = [v + (0.05 if i % 2 else -0.05) for i, v in enumerate(base)]
    md = to_markdown([result("BM25", base), result("SimLM", same_ish), result("Other", base)], ["nDCG@10"])
    for name in ("BM25", "SimLM", "Other"):
        assert markers(md, name) == "", name


def test_summary_averages_only_systems_measured_everywhere():
    from simlm_ir.eval.leaderboard import PublishedRow, summary_markdown

    def row(name, value):
        return SystemResult(name, Evaluation({"nDCG@10": value, "RR@10": 1 - value}, {}))

    per_dataset = {"beir/scifact/test": [row("BM25", 0.6), row("SimLM", 0.7)],
                   "debian-known-item/test": [row("BM25", 0.25), row("SimLM", 0.45), row("ColBERT", 0.5)]}
    published = {"beir/scifact/test": [PublishedRow("SimLM (paper)", {"nDCG@10": 0.714}),
                                       PublishedRow("Other (paper)", {"RR@10": 0.3})]}
    md = summary_markdown(per_dataset, "nDCG@10", "toy", published)
    lines = md.splitlines()
    assert lines[0] == "### toy"
    assert "| System | scifact | debian-known-item/test | Average |" in lines
    assert "| BM25 | 0.6000 | 0.2500 | 0.4250 |" in lines
    assert "| SimLM | 0.7000 | 0.4500 | 0.5750 |" in lines
    assert "| ColBERT | – | 0.5000 | – |" in lines  # not averaged over an easier subset
    measured, _, pub = md.partition("(reported in papers, not measured here)")
    assert "0.714" not in measured and "| SimLM (paper) | 0.714 | – | – |" in pub
    assert "Other (paper)" not in md  # no published value for this measure
    rr = summary_markdown(per_dataset, "RR@10")
    assert rr.splitlines()[0] == "### RR@10 per collection" and "| BM25 | 0.4000 | 0.7500 | 0.5750 |" in rr


def test_summary_markdown_exactly():
    """The whole summary table, written out by hand: default measure nDCG@10, beir/ ids shortened,
    published systems averaged like measured ones (3 digits)."""
    from simlm_ir.eval.leaderboard import PublishedRow, summary_markdown

    def row(name, value):
        return SystemResult(name, Evaluation({"nDCG@10": value}, {}))

    per_dataset = {"beir/scifact/test": [row("BM25", 0.6)], "beir/nfcorpus": [row("BM25", 0.3)],
                   "beir": [row("BM25", 0.5)]}
    published = {"beir/scifact/test": [PublishedRow("SimLM (paper)", {"nDCG@10": 0.7})],
                 "beir/nfcorpus": [PublishedRow("SimLM (paper)", {"nDCG@10": 0.35})],
                 "beir": [PublishedRow("SimLM (paper)", {"nDCG@10": 0.6})]}
    assert summary_markdown(per_dataset, published=published) == "\n".join([
        "### nDCG@10 per collection",
        "",
        "| System | scifact | nfcorpus | beir | Average |",
        "|---|---|---|---|---|",
        "| BM25 | 0.6000 | 0.3000 | 0.5000 | 0.4667 |",
        "",
        "#### Published (reported in papers, not measured here)",
        "",
        "| System (published) | scifact | nfcorpus | beir | Average |",
        "|---|---|---|---|---|",
        "| SimLM (paper) | 0.700 | 0.350 | 0.600 | 0.550 |",
    ]) + "\n"


def test_csv_rows_by_hand():
    """leaderboard.csv: plain numbers (6 digits), p-values per baseline present, latency 3 and index
    time 2 digits, empty cells for what was not measured, and the number of queries."""
    from scipy.stats import ttest_rel

    base, other = [0.2, 0.4, 0.1, 0.3], [0.5, 0.6, 0.2, 0.7]
    rows = [result("BM25", base, index_bytes=3 * 1024 ** 2, latency_ms=1.23456, encode_s=12.345, note="k1=0.9"),
            result("Dense", other)]
    text = to_csv(rows, ["nDCG@10"])
    p = ttest_rel(other, base).pvalue
    assert text.splitlines() == [
        "system,note,nDCG@10,p(nDCG@10 vs BM25),index_bytes,latency_ms,index_time_s,queries",
        "BM25,k1=0.9,0.250000,,3145728,1.235,12.35,4",
        f"Dense,,0.500000,{p:.6f},,,,4",
    ]


def test_index_sizes_in_binary_units():
    from simlm_ir.eval.leaderboard import _fmt_size

    assert [_fmt_size(n) for n in (None, 0, 1023, 1024, 1536, 1024 ** 2, 5 * 1024 ** 3, 3 * 1024 ** 4)] == \
        ["–", "0 B", "1023 B", "1.0 KB", "1.5 KB", "1.0 MB", "5.0 GB", "3072.0 GB"]


def test_markdown_table_exactly():
    """A small leaderboard written out by hand: bold best per column, '–' for what is missing,
    sizes/latency/index time formatted, the marker legend, then the published table apart."""
    from simlm_ir.eval.leaderboard import PublishedRow

    bm25 = SystemResult("BM25", Evaluation({"nDCG@10": 0.25, "RR@10": 0.5},
                                           {"nDCG@10": {"q1": 0.2, "q2": 0.3, "q3": 0.25}}),
                        index_bytes=2048, latency_ms=1.5, encode_s=3.26)
    dense = SystemResult("Dense", Evaluation({"nDCG@10": 0.3}, {"nDCG@10": {"q1": 0.1, "q2": 0.6, "q3": 0.2}}),
                         note="tiny")
    md = to_markdown([bm25, dense], ["nDCG@10", "RR@10"], "toy",
                     published=[PublishedRow("Paper", {"nDCG@10": 0.5}, "Someone 2024")])
    assert md == "\n".join([
        "### toy",
        "",
        "| System | nDCG@10 | RR@10 | Index size | Latency (ms/q) | Index time (s) |",
        "|---|---|---|---|---|---|",
        "| BM25 | 0.2500 | **0.5000** | 2.0 KB | 1.5 | 3.3 |",
        "| Dense (tiny) | **0.3000** | – | – | – | – |",
        "",
        "† p < 0.05 vs BM25 (paired t-test). Best value per column in bold.",
        "",
        "#### Published (reported in papers, not measured here)",
        "",
        "| System (published) | nDCG@10 | Source |",
        "|---|---|---|",
        "| Paper | 0.500 | Someone 2024 |",
    ]) + "\n"
