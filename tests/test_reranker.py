"""The cross-encoder re-ranker: its scores are the checkpoint's own logits on SimLM's input format."""

import pytest
import tiny as tiny_data
import torch


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory):
    """A tiny 1-logit BERT cross-encoder (random, seeded; wide initialisation so its logits spread)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from simlm_ir.modeling.checkpoints import minilm_dir

    path = tmp_path_factory.mktemp("reranker")
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=256, num_labels=1, initializer_range=0.5))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_scores_are_the_checkpoints_logits_on_query_and_title_colon_passage(reranker_dir):
    """Second implementation: the checkpoint loaded on its own, each pair tokenized alone (no padding)
    as SimLM's re-ranker input ``tokenizer(query, text_pair=f"{title}: {passage}")``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from simlm_ir.modeling.reranker import CrossEncoder

    docs = list(tiny_data.DOCS.items())[:6]
    queries = ["text editor", "package manager for Debian", "compress files", "text editor",
               "copy files over the network", "web download"]
    titles = [name if i % 2 else "-" for i, (name, _) in enumerate(docs)]
    texts = [text for _, text in docs]

    ce = CrossEncoder(str(reranker_dir), device="cpu", batch_size=4)  # two batches, longest first
    got = ce.score(queries, titles, texts)

    tok = AutoTokenizer.from_pretrained(reranker_dir)
    model = AutoModelForSequenceClassification.from_pretrained(reranker_dir).eval()
    want = []
    with torch.no_grad():
        for q, t, p in zip(queries, titles, texts):
            enc = tok(q, text_pair=f"{t}: {p}", max_length=192, truncation="only_second", return_tensors="pt")
            want.append(float(model(**enc).logits[0, 0]))
    assert max(want) - min(want) > 0.5, "logits must spread for a scale error to show"
    assert got.tolist() == pytest.approx(want, abs=1e-4)


def test_rerank_orders_the_top_by_score_and_keeps_depth(reranker_dir):
    from simlm_ir.modeling.reranker import CrossEncoder

    ce = CrossEncoder(str(reranker_dir), device="cpu")
    docs = {d: ("-", t) for d, t in list(tiny_data.DOCS.items())[:5]}
    run = {"q": {d: float(10 - i) for i, d in enumerate(docs)}}
    new, latencies = ce.rerank(run, {"q": "text editor"}, docs, depth=3)
    top3 = list(docs)[:3]
    assert set(new["q"]) == set(top3) and len(latencies) == 1
    want = ce.score(["text editor"] * 3, ["-"] * 3, [docs[d][1] for d in top3])
    assert [new["q"][d] for d in top3] == pytest.approx(want.tolist(), abs=1e-6)


def test_length_buckets_give_the_same_logits_in_input_order(reranker_dir):
    """Training's length-sorted chunks (each padded to its own longest) change only the padding: the
    logits match one padded batch, row for row, and gradients still flow."""
    from simlm_ir.modeling.reranker import CrossEncoder

    docs = list(tiny_data.DOCS.items())[:8]
    queries = [f"query {i} " * (1 + i % 3) for i in range(len(docs))]
    titles = [name for name, _ in docs]
    texts = [text * (1 + i % 4) for i, (_, text) in enumerate(docs)]  # lengths that vary
    ce = CrossEncoder(str(reranker_dir), device="cpu")
    ce.model.eval()
    one = ce.logits(queries, titles, texts)
    chunked = ce.logits(queries, titles, texts, buckets=3)
    assert one.shape == chunked.shape == (len(docs),)
    assert float(one.detach().std()) > 0.1, "logits must differ for a row-order error to show"
    assert chunked.detach().tolist() == pytest.approx(one.detach().tolist(), abs=1e-5)
    assert chunked.requires_grad
