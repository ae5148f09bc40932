"""Re-ranker training: forward-factor selection (the model's top, positive kept), R-Drop, resume."""

import pytest
import tiny as tiny_data
import torch

DOCS = tiny_data.DOCS
QUERIES = {q: tiny_data.QUERIES[q] for q in ("q1", "q2", "q3", "q4")}
QRELS = {q: tiny_data.QRELS[q] for q in QUERIES}
DOC_PAIRS = {d: ("-", t) for d, t in DOCS.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("rerank")
    tiny_data.save_tiny_bert(d / "bert")
    tiny_data.save_tiny_bert(d / "bert-nodrop", dropout=0.0)
    tiny_data.write_training_data(d, DOCS, QUERIES, QRELS, depth=7, tiebreak=0)
    return d


def test_select_for_backward_keeps_the_positive_first_then_the_top():
    from simlm_ir.train.rerank import select_for_backward

    logits = torch.tensor([[-5.0, 3.0, 1.0, 4.0, 0.0, 2.0],   # positive scored lowest
                           [9.0, 1.0, 8.0, 0.0, 7.0, 6.0]])  # positive scored highest
    assert select_for_backward(logits, 3).tolist() == [[0, 3, 1], [0, 2, 4]]


def test_forward_select_picks_the_models_top_with_dropout_off(tiny):
    from simlm_ir.modeling.reranker import CrossEncoder
    from simlm_ir.train.data import read_train_file
    from simlm_ir.train.rerank import forward_select

    ce = CrossEncoder(str(tiny / "bert"), device="cpu")
    with torch.no_grad():  # a fresh head scores everything within 1e-4: spread the scores so ranks are stable
        ce.model.classifier.weight.mul_(1000.0)
    examples = read_train_file(tiny / "train.jsonl")
    groups = [[ex.positives[0], *ex.negatives[:5]] for ex in examples]
    queries = [ex.query for ex in examples]
    ce.model.train()
    picked = forward_select(ce, queries, groups, DOC_PAIRS, 4)
    assert ce.model.training  # the training mode comes back
    assert forward_select(ce, queries, groups, DOC_PAIRS, 4) == picked  # no dropout in the selection pass
    ce.model.eval()
    for q, g, sel in zip(queries, groups, picked):
        negs = g[1:]
        scores = ce.score([q] * len(negs), ["-"] * len(negs), [DOCS[d] for d in negs])
        top3 = [d for _, d in sorted(zip(scores.tolist(), negs), reverse=True)[:3]]
        assert sel == [g[0], *top3]


def test_rdrop_term_is_zero_without_dropout_and_positive_with_it(tiny):
    from simlm_ir.modeling.reranker import CrossEncoder
    from simlm_ir.train.rerank import rerank_loss

    groups = [["apt", "dpkg", "vim", "curl"], ["vim", "emacs", "gzip", "xz"]]
    queries = [QUERIES["q1"], QUERIES["q2"]]
    for name, expect_positive in (("bert-nodrop", False), ("bert", True)):
        ce = CrossEncoder(str(tiny / name), device="cpu")
        ce.model.train()
        torch.manual_seed(0)
        loss, rdrop = rerank_loss(ce, queries, groups, DOC_PAIRS, rdrop_weight=1.0)
        assert (rdrop.item() > 1e-9) == expect_positive, name
        assert loss.item() > rdrop.item()  # the cross-entropy is in there too
        if not expect_positive:
            assert rdrop.item() == 0.0


def _cfg(tiny, out, **kw):
    from simlm_ir.train.rerank import RerankConfig

    base = dict(train_file=str(tiny / "train.jsonl"), output=str(out), init=str(tiny / "bert"),
                corpus=str(tiny / "corpus.jsonl"), group_size=8, rerank_forward_factor=2, batch_size=2, lr=1e-3,
                max_steps=4, warmup_steps=1, save_steps=2, device="cpu")
    base.update(kw)
    return RerankConfig(**base)


@pytest.mark.slow
def test_reranker_with_forward_factor_and_rdrop_resumes_bit_identically(tiny, tmp_path):
    from safetensors.torch import load_file

    from simlm_ir.errors import SimLMIRError
    from simlm_ir.train.rerank import train_reranker

    full = train_reranker(_cfg(tiny, tmp_path / "full"))
    assert [r["step"] for r in full] == [4] and full[0]["loss"] > 0
    train_reranker(_cfg(tiny, tmp_path / "part"))
    resumed = train_reranker(_cfg(tiny, tmp_path / "part", resume=True))  # steps 3-4 again, from checkpoint-2
    assert [r["step"] for r in resumed] == [4]
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = load_file(str(tiny / "bert" / "model.safetensors"))
    assert not torch.equal(a["bert.embeddings.word_embeddings.weight"], init["embeddings.word_embeddings.weight"])
    with pytest.raises(SimLMIRError, match="multiple of --rerank-forward-factor"):
        train_reranker(_cfg(tiny, tmp_path / "bad", group_size=6, rerank_forward_factor=4))
