"""benchmarks/run_beir.py on a user's files and on a BEIR-layout directory (simlm_ir.bench.job), end to end."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from tests.tiny import save_tiny_bert

ROOT = Path(__file__).resolve().parent.parent

PASSAGES = {
    "d0": ("Manhattan Project", "The Manhattan Project produced the first nuclear weapons during World War II."),
    "d1": ("", "Photosynthesis converts light energy into chemical energy in plants."),
    "d2": ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France."),
    "d3": ("", "Python is a programming language that emphasises readability."),
    "d4": ("", "The Great Barrier Reef is the largest coral reef system in the world."),
}
# q4's judged passage shares no term with it, so BM25 misses it: RR@10 = 3/4 by construction
TEST = {"q1": ("what did the manhattan project produce", "d0"), "q2": ("how do plants convert light into energy", "d1"),
        "q3": ("where is the eiffel tower", "d2"), "q4": ("which tower is tallest in paris", "d4")}
DEV = {"q5": ("coral reef system", "d4"), "q6": ("a readable programming language", "d3")}


def run_beir():
    spec = importlib.util.spec_from_file_location("run_beir", ROOT / "benchmarks" / "run_beir.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def cells(md: str, row: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {row}"))
    return [c.strip().strip("*").rstrip("†‡ ") for c in line.strip("|").split("|")]


def header(md: str) -> list[str]:
    return cells(md, "System")


def value(md: str, row: str, measure: str) -> float:
    return float(cells(md, row)[header(md).index(measure)])


@pytest.fixture()
def files(tmp_path):
    """A gzipped JSONL corpus with titles, TSV topics and TREC qrels (test and dev), as a user has them."""
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i, (title, text) in PASSAGES.items():
            fh.write(json.dumps({"id": i, "title": title, "text": text}) + "\n")
    for split, topics in (("test", TEST), ("dev", DEV)):
        (tmp_path / f"topics.{split}.tsv").write_text("".join(f"{q}\t{t}\n" for q, (t, _) in topics.items()))
        (tmp_path / f"qrels.{split}.txt").write_text("".join(f"{q} 0 {d} 1\n" for q, (_, d) in topics.items()))
    return tmp_path


def test_user_files_end_to_end(files, tmp_path, capsys):
    ckpt = save_tiny_bert(tmp_path / "tiny")
    runs = tmp_path / "runs"
    rc = run_beir()(["--corpus", str(files / "corpus.jsonl.gz"), "--topics", str(files / "topics.test.tsv"),
                     "--qrels", str(files / "qrels.test.txt"), "--name", "mine", "--systems", "bm25", "simlm",
                     "hybrid", "--dense", f"tiny={ckpt}", "--tune-on", str(files / "topics.dev.tsv"),
                     str(files / "qrels.dev.txt"), "--measures", "RR@10", "R@100",
                     "--runs-dir", str(runs), "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    md = (runs / "mine" / "leaderboard.md").read_text()
    assert value(md, "BM25", "RR@10") == pytest.approx(0.75)
    for row in ("SimLM", "tiny", "SimLM + BM25 (hybrid)"):
        cells(md, row)  # every system has its row
    assert "tuned on mine tuning topics" in md
    run = [line.split() for line in (runs / "mine" / "tiny.trec").read_text().splitlines()]
    assert {r[0] for r in run} == set(TEST) and {r[2] for r in run} <= set(PASSAGES)
    assert "mine: 4 judged queries" in capsys.readouterr().out


def test_beir_directory(tmp_path):
    d = tmp_path / "tinybeir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n"
                                            for i, (t, x) in PASSAGES.items()))
    # queries.jsonl holds every split's queries; only the test split's are searched
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t, "metadata": {}}) + "\n"
                                             for q, (t, _) in {**TEST, **DEV}.items()))
    for split, topics in (("test", TEST), ("dev", DEV)):
        (d / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\t{doc}\t1\n" for q, (_, doc) in topics.items()))
    runs = tmp_path / "runs"
    rc = run_beir()(["--datasets", str(d), "--systems", "bm25", "--measures", "RR@10",
                     "--runs-dir", str(runs), "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    md = (runs / "tinybeir-test" / "leaderboard.md").read_text()
    assert value(md, "BM25", "RR@10") == pytest.approx(0.75)
    searched = {line.split()[0] for line in (runs / "tinybeir-test" / "bm25.trec").read_text().splitlines()}
    assert searched == set(TEST)


@pytest.mark.parametrize("which,content,where,problem", [
    ("corpus.jsonl.gz", '{"id": "d0", "contents": "fine"}\n{"id": "d1", "contents": "fine"}\n{"id": "d2", "contents"\n',
     3, "not valid JSON"),
    ("topics.test.tsv", "q1\twhat did the manhattan project produce\nq2 no tab here\n", 2, "expected 'qid<TAB>query"),
    ("qrels.test.txt", "q1 0 d0 1\nq2 0 d1\n", 2, "expected 4 columns"),
    ("qrels.test.txt", "q1 0 d0 1\nq2 0 d1 high\n", 2, "is not an integer"),
])
def test_bad_file_is_one_line_naming_file_and_line(files, tmp_path, capsys, which, content, where, problem):
    path = files / which
    if which.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(content)
    else:
        path.write_text(content)
    rc = run_beir()(["--corpus", str(files / "corpus.jsonl.gz"), "--topics", str(files / "topics.test.tsv"),
                     "--qrels", str(files / "qrels.test.txt"), "--systems", "bm25",
                     "--runs-dir", str(tmp_path / "runs"), "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"error: {path}:{where}: ") and problem in err[0]
    assert not (tmp_path / "runs" / "corpus" / "leaderboard.md").exists()


def test_qrels_of_another_corpus_is_an_error(files, tmp_path, capsys):
    (files / "qrels.test.txt").write_text("q1 0 X1 1\nq2 0 X2 1\n")
    rc = run_beir()(["--corpus", str(files / "corpus.jsonl.gz"), "--topics", str(files / "topics.test.tsv"),
                     "--qrels", str(files / "qrels.test.txt"), "--systems", "bm25",
                     "--runs-dir", str(tmp_path / "runs"), "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert rc == 2 and "none of the 2 judged documents is in the corpus" in err


def test_corpus_without_topics_is_refused(files, tmp_path, capsys):
    rc = run_beir()(["--corpus", str(files / "corpus.jsonl.gz"), "--runs-dir", str(tmp_path / "runs")])
    assert rc == 2 and "--corpus needs --topics and --qrels" in capsys.readouterr().err
