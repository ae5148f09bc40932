"""Evaluation with ir-measures: aggregate and per-query values, kept for significance tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import ir_measures

from simlm_ir.data.trec import Qrels, Run, ranked

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100", "R@1000")


@dataclass
class Evaluation:
    """Aggregate values per measure name, and per-query values (qid -> value) per measure name."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)


def parse_measures(names: Sequence[str]):
    try:
        return [ir_measures.parse_measure(n) for n in names]
    except (ValueError, NameError, SyntaxError) as exc:
        raise ValueError(f"unknown measure in {list(names)}: {exc}; "
                         "use ir-measures names such as nDCG@10, RR@10, R@1000") from None


def evaluate(run: Run, qrels: Qrels, measures: Sequence[str] = DEFAULT_MEASURES) -> Evaluation:
    """Evaluate ``run`` against ``qrels`` over the queries in ``qrels``.

    A judged query missing from the run scores 0 for every measure (``trec_eval -c``) rather than
    being dropped, so systems are always compared over the same query set.
    """
    parsed = parse_measures(measures)
    names = {m: str(m) for m in parsed}
    judged = set(qrels)
    per_query = {names[m]: {q: 0.0 for q in judged} for m in parsed}
    run = {q: docs for q, docs in run.items() if q in judged}
    for metric in ir_measures.iter_calc(parsed, qrels, run):
        if metric.query_id in judged:
            per_query[str(metric.measure)][metric.query_id] = float(metric.value)
    aggregate = {name: (sum(v.values()) / len(v) if v else 0.0) for name, v in per_query.items()}
    return Evaluation(aggregate, per_query)


def neighbour_recall(run: Run, reference: Run, k: int = 10) -> float:
    """How much of an exact search's top ``k`` an approximate one finds in its own top ``k``, averaged
    over the reference's queries (ANN benchmarks' "k-recall@k"): the cost of compressing an index,
    apart from relevance judgements. A query the approximate run lacks counts 0."""
    values = []
    for qid, docs in reference.items():
        want = {d for d, _ in ranked(docs)[:k]}
        if want:
            got = {d for d, _ in ranked(run.get(qid, {}))[:k]}
            values.append(len(want & got) / len(want))
    return sum(values) / len(values) if values else 0.0
