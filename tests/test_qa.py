"""DPR-style QA topics and answer-match judgements (Pyserini's has_answers)."""

import pytest

from simlm_ir.data.corpus import Passage
from simlm_ir.errors import InputFormatError
from simlm_ir.eval.qa import NO_ANSWER_DOC, answer_qrels, answer_text, read_dpr_qas


def test_dpr_qa_file_and_its_errors(tmp_path):
    f = tmp_path / "nq-test.qa.csv"
    f.write_text("who wrote hamlet\t['William Shakespeare', 'Shakespeare']\nbig\t\"['a \"\"b\"\"']\"\n")
    questions, answers = read_dpr_qas(f)
    assert questions == {"0": "who wrote hamlet", "1": "big"}
    assert answers == {"0": ["William Shakespeare", "Shakespeare"], "1": ['a "b"']}
    f.write_text("ok\t['x']\nbroken line without answers\n")
    with pytest.raises(InputFormatError, match=r"nq-test.qa.csv:2: expected 'question<TAB>\[answers\]'"):
        read_dpr_qas(f)


def test_answer_match_judgements():
    texts = {"p1": "Hamlet is a tragedy written by William Shakespeare.", "p2": "Macbeth is a play.",
             "p3": answer_text(Passage("p3", "-", "Shakespearean\nno answer in the body"))}
    runs = [{"0": {"p2": 2.0, "p1": 1.0}, "1": {"p3": 1.0}}, {"0": {"p3": 5.0}}]
    qrels = answer_qrels(runs, {"0": ["Shakespeare"], "1": ["Shakespearean"], "2": ["x"]}, texts)
    assert qrels == {"0": {"p1": 1}, "1": {NO_ANSWER_DOC: 0}, "2": {NO_ANSWER_DOC: 0}}
