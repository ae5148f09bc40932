"""Teacher scores: the distillation pool is each query's positives + top-N mined + random negatives, all scored."""

import pytest
import tiny as tiny_data

from simlm_ir.train.data import read_train_file

DOCS = tiny_data.DOCS
QUERIES = {q: tiny_data.QUERIES[q] for q in ("q1", "q2", "q3")}
QRELS = {q: tiny_data.QRELS[q] for q in QUERIES}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    tiny_data.save_tiny_bert(d / "bert")
    tiny_data.write_training_data(d, DOCS, QUERIES, QRELS, depth=6, tiebreak=0)
    return d


def test_pool_is_positives_top_n_mined_and_random_negatives_all_scored(tiny, tmp_path):
    from simlm_ir.modeling.reranker import CrossEncoder
    from simlm_ir.train.teacher_scores import score_train_file

    ce = CrossEncoder(str(tiny / "bert"), device="cpu")
    mined = {ex.query_id: ex for ex in read_train_file(tiny / "train.jsonl")}
    n = score_train_file(ce, tiny / "train.jsonl", tmp_path / "teacher.jsonl", corpus=str(tiny / "corpus.jsonl"),
                         negatives=3, random_negatives=2, seed=7)
    assert n == 3
    for ex in read_train_file(tmp_path / "teacher.jsonl", DOCS):
        src = mined[ex.query_id]
        assert ex.negatives[:3] == src.negatives[:3]  # the top 3 mined, in rank order
        extra = ex.negatives[3:]
        assert len(extra) == 2 and not set(extra) & (set(ex.positives) | set(src.negatives[:3]))
        assert set(ex.teacher_scores) == set(ex.positives) | set(ex.negatives)
        # the stored score is the cross-encoder's logit for that pair
        d = extra[0]
        assert ex.teacher_scores[d] == pytest.approx(float(ce.score([ex.query], ["-"], [DOCS[d]])[0]), abs=1e-3)

    # same seed, same random negatives; a pool wider than the mined list takes all of it
    again = tmp_path / "again.jsonl"
    score_train_file(ce, tiny / "train.jsonl", again, corpus=str(tiny / "corpus.jsonl"), negatives=3,
                     random_negatives=2, seed=7)
    first = [e.negatives for e in read_train_file(tmp_path / "teacher.jsonl")]
    assert [e.negatives for e in read_train_file(again)] == first
    score_train_file(ce, tiny / "train.jsonl", again, corpus=str(tiny / "corpus.jsonl"), negatives=200,
                     random_negatives=0)
    assert {e.query_id: e.negatives for e in read_train_file(again)} == {q: e.negatives for q, e in mined.items()}
