"""Re-ranking across queries in one batched pass, with a content-keyed score cache (simlm_ir.search.rerank)."""

import numpy as np
import pytest

from tests.tiny import DOCS, QUERIES, save_tiny_bert


@pytest.fixture(scope="module")
def ce(tmp_path_factory):
    from simlm_ir.modeling.reranker import CrossEncoder

    return CrossEncoder(str(save_tiny_bert(tmp_path_factory.mktemp("ce"), dropout=0.0)), device="cpu")


def test_batched_scores_equal_pairs_scored_alone(ce):
    queries = [QUERIES[q] for q in QUERIES for _ in range(3)]
    ids = list(DOCS)
    texts = [DOCS[ids[i % len(ids)]] * (1 + i % 4) for i in range(len(queries))]  # lengths 1x-4x: long ones truncated
    titles = ["-" if i % 2 else ids[i % len(ids)] for i in range(len(queries))]
    seen = []
    together = ce.score(queries, titles, texts, on_batch=seen.append)
    alone = np.array([ce.score([q], [t], [x])[0] for q, t, x in zip(queries, titles, texts)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert sum(seen) == len(queries)


def test_cache_scores_each_pair_once_and_keys_by_content(ce, tmp_path):
    from simlm_ir.search.rerank import ScoreCache, rerank_run

    docs = {d: ("-", t) for d, t in DOCS.items()}
    run = {q: {d: float(-i) for i, d in enumerate(DOCS)} for q in QUERIES}
    cache = ScoreCache(tmp_path / "scores.sqlite")
    first, scored = rerank_run(ce, run, QUERIES, docs, depth=4, cache=cache)
    assert scored == len(QUERIES) * 4 and all(len(v) == 4 for v in first.values())
    again, scored = rerank_run(ce, run, QUERIES, docs, depth=4, cache=ScoreCache(tmp_path / "scores.sqlite"))
    assert scored == 0 and again == first
    docs["apt"] = ("-", "APT, rewritten: a different passage now.")  # a changed passage is a new key
    changed, scored = rerank_run(ce, run, QUERIES, docs, depth=4, cache=cache)
    assert scored == len(QUERIES)  # apt is in every query's top 4; the other 3 pairs per query are cached
    assert changed["q2"]["vim"] == first["q2"]["vim"] and changed["q2"]["apt"] != first["q2"]["apt"]
