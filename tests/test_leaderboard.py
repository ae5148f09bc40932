import csv

from simlm_ir.evaluation import Evaluation
from simlm_ir.leaderboard import SystemResult, paired_p_value, to_markdown, write_leaderboard


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
