import pytest

from simlm_ir.data.trec import read_trec_run, write_trec_run
from simlm_ir.errors import InputFormatError


def test_round_trip_ranks_by_score_then_docid(tmp_path):
    run = {"q2": {"b": 1.0, "a": 1.0, "c": 3.0}, "q1": {"x": 0.5}}
    path = write_trec_run(run, tmp_path / "r.trec", tag="sys")
    lines = path.read_text().splitlines()
    assert lines[0] == "q2 Q0 c 1 3.000000 sys"
    assert lines[1].split()[2] == "a" and lines[2].split()[2] == "b"
    assert read_trec_run(path) == run


def test_depth_cuts_each_query(tmp_path):
    path = write_trec_run({"q": {str(i): float(i) for i in range(10)}}, tmp_path / "r.trec", "t", depth=3)
    assert len(path.read_text().splitlines()) == 3


def test_malformed_run_line(tmp_path):
    p = tmp_path / "r.trec"
    p.write_text("q Q0 d 1 1.0 t\nq Q0 d2 2 oops t\n")
    with pytest.raises(InputFormatError, match=r"r.trec:2: score 'oops'"):
        read_trec_run(p)


def test_failed_write_leaves_nothing(tmp_path):
    class Boom(dict):
        def items(self):
            raise RuntimeError("crash mid-write")
    with pytest.raises(RuntimeError):
        write_trec_run(Boom(q={"d": 1.0}), tmp_path / "r.trec", "t")
    assert list(tmp_path.iterdir()) == []


def test_qrels_and_topics_in_trec_or_beir_form(tmp_path):
    from simlm_ir.data.trec import read_qrels, read_topics

    (tmp_path / "q.txt").write_text("q1 0 d1 2\nq1 0 d2 0\nq2 Q0 d3 1\n")
    (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td3\t1.0\n")
    expected = {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    assert read_qrels(tmp_path / "q.txt") == read_qrels(tmp_path / "q.tsv") == expected
    (tmp_path / "t.tsv").write_text("q1\tfirst query\nq2\tsecond\n")
    (tmp_path / "t.jsonl").write_text('{"_id": "q1", "text": "first query", "metadata": {}}\n'
                                      '{"_id": "q2", "text": "second"}\n')
    assert read_topics(tmp_path / "t.tsv") == read_topics(tmp_path / "t.jsonl") == {"q1": "first query", "q2": "second"}


@pytest.mark.parametrize("name,content,where,problem", [
    ("q.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n", 3, "expected 3 tab-separated columns"),
    ("q.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t0.5\n", 2, "relevance '0.5' is not an integer"),
    ("t.jsonl", '{"_id": "q1", "text": "ok"}\n{"_id": "q2"}\n', 2, "query 'q2' has no 'text'"),
    ("t.jsonl", '{"_id": "q1", "text": "ok"}\n{"_id": "q1", "text": "again"}\n', 2, "duplicate query id 'q1'"),
])
def test_beir_files_errors_name_file_and_line(tmp_path, name, content, where, problem):
    from simlm_ir.data.trec import read_qrels, read_topics

    (tmp_path / name).write_text(content)
    with pytest.raises(InputFormatError, match=f"{name}:{where}: {problem}"):
        (read_topics if name.startswith("t") else read_qrels)(tmp_path / name)
