"""benchmarks/bench_scale.py: its growth fit, paragraph splitting and real-text corpus pool."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_recovers_a_power_law(bench):
    ns = [1_000, 10_000, 100_000]
    k, c = bench.fit_power(ns, [3.0 * n ** 1.5 for n in ns])
    assert k == pytest.approx(1.5) and c == pytest.approx(3.0)
    text, fitted = bench.fits([{"n": n, **{key: 2.0 * n for key in bench.FITTED}} for n in ns], 8_841_823)
    assert fitted["flat_bytes"]["k"] == pytest.approx(1.0)
    assert fitted["flat_bytes"]["extrapolated"] == pytest.approx(2.0 * 8_841_823)
    assert "**extrapolated** to 8,841,823 passages" in text


def test_debian_paragraphs_and_the_deduplicated_pool(bench, tmp_path):
    text = ("APT is the package manager of Debian systems.\n\nIt resolves dependencies, downloads and installs "
            "packages.\n .\nShort line.")
    assert bench._paragraphs(text, 5) == ["APT is the package manager of Debian systems.",
                                          "It resolves dependencies, downloads and installs packages."]
    docs = tmp_path / "docs.jsonl"
    rows = [("p0", text), ("p1", text), ("p2", "A tool that copies files between hosts over SSH quickly."),
            ("p2", "The same package name again, with a description of its own.")]  # as the source has
    docs.write_text("".join(json.dumps({"doc_id": i, "text": t}) + "\n" for i, t in rows))
    pool, sources = bench.real_text_pool(docs, need=4, seed=0)
    assert len(pool) == 4 and len({p.text for p in pool}) == 4  # the repeated description counts once
    assert len({p.id for p in pool}) == 4  # ids stay unique when the source repeats one
    assert sum(sources.values()) == 4 and any("Debian" in s for s in sources)
    again, _ = bench.real_text_pool(docs, need=4, seed=0)
    assert [p.id for p in again] == [p.id for p in pool]  # deterministic order


def test_report_fits_the_encoder_run_at_every_size_and_labels_extrapolations(bench):
    def row(n, encoder, per_passage_s):
        r = {key: float(n) for key in bench.FITTED}
        r.update({"n": n, "encoder": encoder, "encoder_label": encoder, "encode_s": per_passage_s * n,
                  "passages_per_s": 1 / per_passage_s, "peak_rss_total_mb": 700.0, "hnsw_recall100_vs_flat": 0.99,
                  "device": "cpu", "torch_threads": 2})
        return r

    rows = [row(1000, "full", 0.006), row(10000, "full", 0.006),
            row(1000, "cut", 0.002), row(10000, "cut", 0.002), row(100000, "cut", 0.002)]
    result = {"rows": rows, "extrapolate_to": 1_000_000, "encoder": "full", "small_encoder": "cut",
              "tokens_per_passage": 42.0, "search_threads": 1, "queries": 508, "total_s": 1.0}
    text, fitted, notes = bench.render(result)
    assert fitted["encode_s"]["k"] == pytest.approx(1.0)  # fitted over the 3 "cut" rows
    assert "Growth fitted over the cut rows (1,000, 10,000, 100,000 passages)" in text
    assert "full is 3.00x slower than the cut encoder" in notes[1] and "1.7 h" in notes[1]  # 0.006 s x 1M
    assert all(line.startswith("- extrapolation:") for line in text.splitlines()[-len(notes):])
