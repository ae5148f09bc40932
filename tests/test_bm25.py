"""BM25 through Pyserini on the embedded collection, checked against Pyserini's own trec_eval."""

import csv
import os
import re
import subprocess
import sys

import pytest

from simlm_ir.bench.runner import run_benchmark
from simlm_ir.bench.systems import BM25System
from simlm_ir.data.embedded import DEFAULT_DATASET, NAME


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    results, table = run_benchmark(DEFAULT_DATASET, [BM25System()], tmp / "runs", tmp / "work",
                                   measures=["nDCG@10", "RR@10", "R@100"], hits=100)
    return tmp, results, table


@pytest.mark.slow
def test_main_job_writes_runs_and_leaderboard(bench):
    tmp, results, table = bench
    out = tmp / "runs" / "debian-known-item-test"
    assert (out / "bm25.trec").exists() and (out / "leaderboard.md").exists()
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert rows[0]["system"] == "BM25" and int(rows[0]["index_bytes"]) > 300_000
    assert float(rows[0]["latency_ms"]) > 0
    assert "| BM25 |" in table
    ndcg = results[0].evaluation.aggregate["nDCG@10"]
    assert 0.5 < ndcg < 1.0  # lexical overlap makes this known-item task easy for BM25


@pytest.mark.slow
def test_ndcg_agrees_with_pyserini_trec_eval(bench, _isolated_irds_home):
    tmp, results, _ = bench
    run = tmp / "runs" / "debian-known-item-test" / "bm25.trec"
    qrels = _isolated_irds_home / NAME / "qrels.test.txt"
    out = subprocess.run([sys.executable, "-m", "pyserini.eval.trec_eval", "-m", "ndcg_cut.10", str(qrels), str(run)],
                         capture_output=True, text=True, check=True).stdout
    theirs = float(re.search(r"ndcg_cut_10\s+all\s+([0-9.]+)", out).group(1))
    assert results[0].evaluation.aggregate["nDCG@10"] == pytest.approx(theirs, abs=5e-5)


@pytest.mark.slow
def test_cached_index_is_reused_and_rebuilt_when_corpus_changes(tmp_path):
    from simlm_ir.data.corpus import Passage, corpus_fingerprint
    from simlm_ir.search.bm25 import build_lucene_index

    docs = [Passage("a", "-", "apt installs Debian packages"), Passage("b", "-", "pip installs Python packages")]
    fp, n = corpus_fingerprint(docs)
    first = build_lucene_index(docs, tmp_path / "idx", fingerprint=fp, num_docs=n)
    again = build_lucene_index(docs, tmp_path / "idx", fingerprint=fp, num_docs=n)
    assert first.built and not again.built and again.num_docs == 2
    docs.append(Passage("c", "-", "npm installs JavaScript packages"))
    fp2, n2 = corpus_fingerprint(docs)
    assert fp2 != fp
    assert build_lucene_index(docs, tmp_path / "idx", fingerprint=fp2, num_docs=n2).num_docs == 3


def test_pyserini_commands_work_without_exports(tmp_path):
    """The start-up hook (not the user) points pyserini at Java 21 and drops the vector-module option."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SIMLM_IR_KEEP_JAVA")}
    env["PATH"] = "/usr/bin:/bin"
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "docs.jsonl").write_text('{"id": "d1", "contents": "Anserini is built on Lucene"}\n')
    idx = subprocess.run([sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
                          "--input", str(corpus), "--index", str(tmp_path / "idx"), "--threads", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert idx.returncode == 0, idx.stderr[-2000:]
    (tmp_path / "topics.tsv").write_text("1\tlucene\n")
    search = subprocess.run([sys.executable, "-m", "pyserini.search.lucene", "--index", str(tmp_path / "idx"),
                             "--topics", str(tmp_path / "topics.tsv"), "--output", str(tmp_path / "run.txt"), "--bm25"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert search.returncode == 0, search.stderr[-2000:]
    assert (tmp_path / "run.txt").read_text().split()[2] == "d1"


@pytest.mark.slow
def test_a_second_benchmark_run_serves_bm25_from_the_run_cache(bench, monkeypatch):
    """The same collection, system and work dir again: the run comes from work/runs-cache (no batch
    search), the latency sample is timed afresh, and the leaderboard's figures are the same."""
    tmp, results, _ = bench
    assert list((tmp / "work" / "runs-cache").glob("*.json.gz"))

    def no_search(self, queries, k):
        raise AssertionError("searched again instead of reading the run cache")

    monkeypatch.setattr(BM25System, "batch_run", no_search)
    again, _ = run_benchmark(DEFAULT_DATASET, [BM25System()], tmp / "runs2", tmp / "work",
                             measures=["nDCG@10", "RR@10", "R@100"], hits=100)
    assert again[0].evaluation.aggregate == results[0].evaluation.aggregate
    assert again[0].latency_ms is not None and again[0].latency_ms > 0
    assert (tmp / "runs2" / "debian-known-item-test" / "bm25.trec").read_bytes() == \
        (tmp / "runs" / "debian-known-item-test" / "bm25.trec").read_bytes()
