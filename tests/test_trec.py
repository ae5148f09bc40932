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
