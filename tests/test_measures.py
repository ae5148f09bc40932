import math

import pytest

from simlm_ir.eval.measures import evaluate, parse_measures


def test_hand_checked_values():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}}
    run = {"q1": {"d9": 3.0, "d1": 2.0}, "q2": {"d2": 5.0, "d3": 4.0}}
    ev = evaluate(run, qrels, ["RR@10", "nDCG@10", "R@1"])
    assert ev.per_query["RR@10"] == {"q1": 0.5, "q2": 1.0}
    assert ev.aggregate["RR@10"] == pytest.approx(0.75)
    assert ev.per_query["nDCG@10"]["q1"] == pytest.approx(1 / math.log2(3))
    assert ev.per_query["nDCG@10"]["q2"] == pytest.approx(1.0)
    assert ev.per_query["R@1"] == {"q1": 0.0, "q2": 0.5}


def test_query_missing_from_run_counts_as_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    ev = evaluate({"q1": {"d1": 1.0}}, qrels, ["RR@10"])
    assert ev.aggregate["RR@10"] == pytest.approx(0.5)


def test_unknown_measure_is_a_clear_error():
    with pytest.raises(ValueError, match="ir-measures names"):
        parse_measures(["nDCG@ten"])


def test_neighbour_recall_against_an_exact_run():
    from simlm_ir.eval.measures import neighbour_recall

    exact = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 1.0, "y": 0.5}}
    approx = {"q1": {"a": 9.0, "c": 8.0, "z": 7.0, "b": 0.1}}  # q1 top 2: a, c (b fell to 4th); q2 missing
    assert neighbour_recall(approx, exact, k=2) == (1 / 2 + 0) / 2  # q1 finds a of {a, b}; q2 counts 0
    assert neighbour_recall(approx, exact, k=3) == (2 / 3 + 0) / 2  # top 3: a, c, z -> a, c of {a, b, c}
    assert neighbour_recall(exact, exact, k=10) == 1.0
