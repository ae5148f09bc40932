"""Fine-tuning on a tiny BERT: mining, train -> save -> load -> encode, resume, re-ranker and KD."""

import json

import pytest
import tiny as tiny_data
import torch

from simlm_ir.errors import InputFormatError
from simlm_ir.train.data import TrainExample, negatives_from_run, read_train_file, write_train_file

DOCS = dict(list(tiny_data.DOCS.items())[:8])
QUERIES = {q: tiny_data.QUERIES[q] for q in ("q1", "q2", "q3", "q4")}
QRELS = {q: tiny_data.QRELS[q] for q in QUERIES}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tiny_data.save_tiny_bert(d / "bert")
    tiny_data.write_training_data(d, DOCS, QUERIES, QRELS, depth=6, tiebreak=0)
    return d


def test_mining_excludes_positives_and_keeps_rank_order():
    run = {"q1": {"apt": 9.0, "dpkg": 8.0, "vim": 1.0, "curl": 5.0}}
    negs = negatives_from_run(run, {"q1": {"apt": 1, "vim": 0}}, depth=3)
    # top 3 = apt, dpkg, curl; apt is a positive, vim judged 0 stays out of top 3
    assert negs == {"q1": ["dpkg", "curl"]}


def test_train_file_errors_name_the_line(tmp_path):
    f = tmp_path / "t.jsonl"
    write_train_file([TrainExample("q1", "debian", ["apt"], ["vim"])], f)
    with open(f, "a") as fh:
        fh.write(json.dumps({"query_id": "q2", "query": "x", "positives": ["nope"], "negatives": []}) + "\n")
    with pytest.raises(InputFormatError, match=r"t.jsonl:2: document id\(s\) not in the corpus"):
        read_train_file(f, DOCS)


def _cfg(tiny, out, **kw):
    from simlm_ir.train.finetune import FinetuneConfig

    base = dict(train_file=str(tiny / "train.jsonl"), output=str(out), init=str(tiny / "bert"),
                corpus=str(tiny / "corpus.jsonl"), group_size=3, batch_size=2, lr=1e-3, max_steps=6,
                warmup_steps=1, save_steps=3, log_every=1, device="cpu", progress=False)
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.mark.slow
def test_finetune_save_load_encode_and_resume(tiny, tmp_path):
    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.train.finetune import finetune

    full = finetune(_cfg(tiny, tmp_path / "full"))
    assert [r["step"] for r in full] == [1, 2, 3, 4, 5, 6]
    assert full[-1]["loss"] < full[0]["loss"]
    enc = SimLMEncoder(str(tmp_path / "full"), device="cpu")
    v = enc.encode_queries(["text editor"])
    assert v.shape == (1, 32) and abs(float((v ** 2).sum()) - 1) < 1e-5
    # the saved model is the trained one, not the initial one
    assert not torch.allclose(SimLMEncoder(str(tiny / "bert"), device="cpu").model.embeddings.word_embeddings.weight,
                              enc.model.embeddings.word_embeddings.weight)

    # interrupted at step 3, then resumed: the same losses as the uninterrupted run
    finetune(_cfg(tiny, tmp_path / "part", max_steps=6, save_steps=3))
    resumed = finetune(_cfg(tiny, tmp_path / "part", resume=True))
    assert [r["step"] for r in resumed] == [4, 5, 6]
    for a, b in zip(resumed, full[3:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


@pytest.mark.slow
def test_reranker_teacher_scores_and_distillation(tiny, tmp_path):
    from simlm_ir.modeling.reranker import CrossEncoder
    from simlm_ir.train.finetune import finetune
    from simlm_ir.train.rerank import RerankConfig, train_reranker
    from simlm_ir.train.teacher_scores import score_train_file

    rec = train_reranker(RerankConfig(train_file=str(tiny / "train.jsonl"), output=str(tmp_path / "rr"),
                                      init=str(tiny / "bert"), corpus=str(tiny / "corpus.jsonl"), group_size=4,
                                      rerank_forward_factor=2, batch_size=2, lr=1e-3, max_steps=4, warmup_steps=1,
                                      device="cpu"))
    assert rec and rec[-1]["step"] == 4
    ce = CrossEncoder(str(tmp_path / "rr"), device="cpu")
    assert ce.score(["text editor"], ["-"], [DOCS["vim"]]).shape == (1,)
    n = score_train_file(ce, tiny / "train.jsonl", tmp_path / "teacher.jsonl", corpus=str(tiny / "corpus.jsonl"),
                         negatives=2)
    examples = read_train_file(tmp_path / "teacher.jsonl")
    assert n == 4 and all(len(ex.teacher_scores) == 3 for ex in examples)
    kd = finetune(_cfg(tiny, tmp_path / "kd", kd_teacher=str(tmp_path / "teacher.jsonl"), max_steps=2))
    assert len(kd) == 2 and all(r["loss"] > 0 for r in kd)
