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
