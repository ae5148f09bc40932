"""benchmarks/run_msmarco.py, run_nq.py and run_beir.py on tiny collections in the real file layouts
(placed under the session's IR_DATASETS_HOME, where ir_datasets looks), BM25 only."""

import gzip
import importlib.util
import json
import os
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PASSAGES = [
    "The Manhattan Project produced the first nuclear weapons during World War II.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Python is a programming language that emphasises readability.",
    "The Great Barrier Reef is the largest coral reef system in the world.",
]
# 1004's judged passage shares no term with it: BM25 misses it, so RR@10 = R@50 = 3/4
QUERIES = {"1001": "what did the manhattan project produce", "1002": "how do plants convert light into energy",
           "1003": "where is the eiffel tower", "1004": "which tower is tallest in paris"}
QRELS = {"1001": "0", "1002": "1", "1003": "2", "1004": "4"}


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def home():
    """Tiny MS MARCO (dev/small only), BEIR fiqa and DPR/NQ files in ir_datasets' layouts."""
    home = Path(os.environ["IR_DATASETS_HOME"])
    ms = home / "msmarco-passage"
    (ms / "dev" / "small").mkdir(parents=True, exist_ok=True)
    (ms / "collection.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in enumerate(PASSAGES)))
    (ms / "irds_version.txt").write_text("v2")  # without it ir_datasets deletes collection.tsv
    (ms / "dev" / "small" / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    (ms / "dev" / "small" / "qrels").write_text("".join(f"{q}\t0\t{d}\t1\n" for q, d in QRELS.items()))

    fiqa = home / "beir" / "fiqa"
    fiqa.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(fiqa / "source.zip", "w") as z:
        z.writestr("fiqa/corpus.jsonl", "".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
                                                for i, t in enumerate(PASSAGES)))
        z.writestr("fiqa/queries.jsonl", "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
        z.writestr("fiqa/qrels/test.tsv", "query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\td{d}\t1\n" for q, d in QRELS.items()))

    dpr = home / "dpr-w100"
    dpr.mkdir(parents=True, exist_ok=True)
    with gzip.open(dpr / "docs.tsv.gz", "wt") as fh:  # DPR's psgs_w100.tsv.gz: id, text, title
        fh.write("id\ttext\ttitle\n")
        fh.write("1\tAaron is a prophet, high priest, and the brother of Moses.\tAaron\n")
        fh.write("2\tThe Eiffel Tower was completed in 1889 for the World's Fair.\tEiffel Tower\n")
        fh.write("3\tIt is Earth's highest mountain above sea level.\tMount Everest\n")
        fh.write("4\tThe Amazon River in South America is the largest river by discharge.\tAmazon River\n")
    # DPR's nq-test.qa.csv: question<TAB>python list of answers; ids are line numbers from 0
    (dpr / "nq-test.qa.csv").write_text(
        "who was the brother of moses\t['Aaron']\n"
        "when was the eiffel tower completed\t['1889']\n"
        "which mountain is earth's highest\t['Everest']\n"  # only in the title: not counted (as Pyserini)
        "what is the longest river in africa\t['Nile']\n")  # in no passage
    return home


def cells(md: str, row: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {row}"))
    return [c.strip().strip("*") for c in line.strip("|").split("|")]


def test_msmarco_script_measures_present_splits_and_skips_missing(home, tmp_path, capsys):
    main = script("run_msmarco").main
    rc = main(["--datasets", "msmarco-passage/dev/small", "msmarco-passage/trec-dl-2020/judged", "--systems", "bm25",
               "--runs-dir", str(tmp_path / "runs"), "--work-dir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert rc == 0
    skip = [x for x in out.splitlines() if x.startswith("skipping msmarco-passage/trec-dl-2020/judged")]
    assert len(skip) == 1 and "msmarco-passage" in skip[0] and "place" in skip[0]  # one line naming the files
    board = tmp_path / "runs" / "msmarco-passage-dev-small"
    md = (board / "leaderboard.md").read_text()
    measured, _, published = md.partition("(reported in papers, not measured here)")
    assert cells(measured, "BM25")[1:4] == ["0.7500", "0.7500", "0.7500"]  # RR@10, R@50, R@1000 by hand
    assert "0.185" not in measured and cells(published, "BM25")[1:4] == ["0.185", "0.585", "0.857"]
    assert "| SimLM (distilled) | 0.411 | 0.878 | 0.987 |" in published
    assert (board / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    assert (board / "bm25.trec").read_text().startswith("1001 Q0 0 1 ")
    assert not (tmp_path / "runs" / "msmarco-passage-trec-dl-2020-judged").exists()


def test_msmarco_script_takes_a_titled_corpus(home, tmp_path, capsys):
    # the same passage ids with titles (Tevatron's fields); 1004's passage is found by its title alone
    titles = ["Manhattan Project", "Photosynthesis", "Eiffel Tower", "Python", "Tallest tower in Paris"]
    with gzip.open(tmp_path / "titled.jsonl.gz", "wt") as fh:
        for i, (title, text) in enumerate(zip(titles, PASSAGES)):
            fh.write(json.dumps({"docid": str(i), "title": title, "text": text}) + "\n")
    main = script("run_msmarco").main
    rc = main(["--datasets", "msmarco-passage/dev/small", "--systems", "bm25", "--corpus",
               str(tmp_path / "titled.jsonl.gz"), "--runs-dir", str(tmp_path / "runs"),
               "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    md = (tmp_path / "runs" / "msmarco-passage-dev-small-titled" / "leaderboard.md").read_text()
    measured, _, published = md.partition("(reported in papers, not measured here)")
    assert cells(measured, "BM25")[1] == "1.0000"  # 0.75 without titles (the test above)
    assert "| SimLM (distilled) | 0.411 | 0.878 | 0.987 |" in published
    assert not (tmp_path / "runs" / "msmarco-passage-dev-small").exists()


def test_nq_script_judges_by_answer_match(home, tmp_path, capsys):
    main = script("run_nq").main
    rc = main(["--systems", "bm25", "--runs-dir", str(tmp_path / "runs"), "--work-dir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert rc == 0, out
    md = (tmp_path / "runs" / "nq-test" / "leaderboard.md").read_text()
    measured, _, published = md.partition("(reported in papers, not measured here)")
    assert cells(measured, "BM25")[1:3] == ["0.5000", "0.5000"]  # Success@20, Success@100: 2 of 4 answered
    assert "| SimLM | 0.852 | 0.897 |" in published and "0.852" not in measured
    assert "answer-match" in out


def test_nq_script_missing_questions_is_one_line(home, tmp_path, capsys):
    main = script("run_nq").main
    assert main(["--topics", str(tmp_path / "nope.qa.csv"), "--systems", "bm25",
                 "--runs-dir", str(tmp_path / "runs"), "--work-dir", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.qa.csv" in err[0] and err[0].startswith("NQ not available")


def test_beir_script_summary_over_collections(home, tmp_path, capsys):
    main = script("run_beir").main
    rc = main(["--datasets", "beir/fiqa/test", "msmarco-passage/dev/small", "--systems", "bm25",
               "--measures", "nDCG@10", "RR@10", "--runs-dir", str(tmp_path / "runs"),
               "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    summary = (tmp_path / "runs" / "summary.md").read_text()
    measured, _, published = summary.partition("(reported in papers, not measured here)")
    header = cells(measured, "System")
    assert header == ["System", "fiqa", "msmarco-passage/dev/small", "Average"]
    row = cells(measured, "BM25")
    assert row[1] == row[2] and float(row[3]) == pytest.approx(float(row[1]))  # the same 4 queries twice
    assert cells(published, "BM25 flat") == ["BM25 flat", "0.236", "–", "–"]  # no average over a subset
    assert "0.236" in (tmp_path / "runs" / "beir-fiqa-test" / "leaderboard.md").read_text()
    assert "nDCG@10 per collection" in capsys.readouterr().out
