"""The last layer computed for [CLS] only gives what the full forward gives at [CLS]."""

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    ElectraConfig,
    ElectraForSequenceClassification,
    ElectraModel,
    GPT2Config,
    GPT2Model,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaModel,
)

from simlm_ir.modeling.cls_only import CLSOnlyLayer, cls_only_last_layer, supports_cls_only

SMALL = dict(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
             max_position_embeddings=80)


def padded_batch(lengths, vocab=100, seed=0):
    """Token ids of several lengths padded to the longest, with their attention mask."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(5, vocab, (n,), generator=gen)
        mask[row, :n] = 1
    return ids, mask


@pytest.mark.parametrize("make", [
    lambda: BertModel(BertConfig(**SMALL, initializer_range=0.3), add_pooling_layer=False),
    lambda: ElectraModel(ElectraConfig(**SMALL, embedding_size=48, initializer_range=0.3)),
    lambda: RobertaModel(RobertaConfig(**SMALL, initializer_range=0.3, pad_token_id=1), add_pooling_layer=False),
], ids=["bert", "electra", "roberta"])
def test_cls_vector_equals_the_full_forward(make):
    torch.manual_seed(0)
    model = make().eval()
    ids, mask = padded_batch([17, 40, 5, 33])
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        with cls_only_last_layer(model):
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert out.shape == (4, 1, 48)
    assert torch.allclose(out[:, 0], full, atol=1e-5, rtol=1e-5)
    assert (out[:, 0] - full).abs().max() < 1e-3 * full.abs().max()


def test_padding_is_still_masked_for_cls():
    """[CLS] of a short row must not see the padding: the same row alone (no padding) gives it too."""
    torch.manual_seed(1)
    model = BertModel(BertConfig(**SMALL, initializer_range=0.3), add_pooling_layer=False).eval()
    ids, mask = padded_batch([6, 30])
    with torch.inference_mode(), cls_only_last_layer(model):
        batched = model(input_ids=ids, attention_mask=mask).last_hidden_state[0, 0]
        alone = model(input_ids=ids[:1, :6], attention_mask=mask[:1, :6]).last_hidden_state[0, 0]
    assert torch.allclose(batched, alone, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: BertForSequenceClassification(BertConfig(**SMALL, num_labels=1, initializer_range=0.5)),
    lambda: ElectraForSequenceClassification(ElectraConfig(**SMALL, embedding_size=48, num_labels=1,
                                                           initializer_range=0.5)),
    lambda: RobertaForSequenceClassification(RobertaConfig(**SMALL, num_labels=1, initializer_range=0.5,
                                                           pad_token_id=1)),
], ids=["bert", "electra", "roberta"])
def test_cross_encoder_logits_equal_the_full_forward(make):
    torch.manual_seed(2)
    model = make().eval()
    ids, mask = padded_batch([12, 25, 9], seed=3)
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).logits
        with cls_only_last_layer(model):
            fast = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(fast, full, atol=1e-5)
    assert full.std() > 0.01  # the logits differ between pairs, so equality means something


def test_the_layer_is_restored_after_the_block_and_after_an_error():
    model = BertModel(BertConfig(**SMALL), add_pooling_layer=False).eval()
    last = model.encoder.layer[-1]
    with pytest.raises(RuntimeError):
        with cls_only_last_layer(model):
            assert isinstance(model.encoder.layer[-1], CLSOnlyLayer)
            raise RuntimeError("boom")
    assert model.encoder.layer[-1] is last


def test_no_swap_in_training_mode_when_disabled_or_for_other_families():
    bert = BertModel(BertConfig(**SMALL), add_pooling_layer=False)
    last = bert.encoder.layer[-1]
    bert.train()
    with cls_only_last_layer(bert):
        assert bert.encoder.layer[-1] is last  # training: every position's gradient may matter
    bert.eval()
    with cls_only_last_layer(bert, enabled=False):
        assert bert.encoder.layer[-1] is last
    gpt2 = GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).eval()
    assert not supports_cls_only(gpt2)
    with cls_only_last_layer(gpt2):
        pass


def test_simlm_encoder_vectors_and_rankings_unchanged(tmp_path):
    """The SimLM encoder with and without the [CLS]-only last layer: same vectors (to float rounding)
    and the same top-5 passages for every query."""
    import numpy as np
    import tiny as tiny_data

    from simlm_ir.encode.encoder import SimLMEncoder

    enc = SimLMEncoder(str(tiny_data.save_tiny_bert(tmp_path / "bert", dropout=0.0)))
    texts, titles = list(tiny_data.DOCS.values()), list(tiny_data.DOCS)
    queries = list(tiny_data.QUERIES.values())
    fast_p, fast_q = enc.encode_passages(texts, titles), enc.encode_queries(queries)
    enc.cls_only = False
    full_p, full_q = enc.encode_passages(texts, titles), enc.encode_queries(queries)
    assert np.abs(fast_p - full_p).max() < 1e-5 and np.abs(fast_q - full_q).max() < 1e-5
    assert (np.argsort(-(fast_q @ fast_p.T), axis=1)[:, :5] == np.argsort(-(full_q @ full_p.T), axis=1)[:, :5]).all()


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_both_mask_forms_give_the_full_forward(attention):
    """eager attention hands layers an additive float mask, sdpa a bool one (or None)."""
    torch.manual_seed(4)
    model = BertModel(BertConfig(**SMALL, initializer_range=0.3), add_pooling_layer=False).eval()
    model.set_attn_implementation(attention)
    ids, mask = padded_batch([9, 31, 20], seed=5)
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        with cls_only_last_layer(model):
            assert isinstance(model.encoder.layer[-1], CLSOnlyLayer)
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    assert torch.allclose(out, full, atol=1e-5)


def test_other_attention_implementations_keep_the_full_layer():
    """flex_attention passes a BlockMask and flash_attention_2 a 2-D mask, which the [CLS] layer's
    SDPA call would not read right: those models keep their own last layer."""
    model = BertModel(BertConfig(**SMALL), add_pooling_layer=False).eval()
    model.config._attn_implementation = "flex_attention"
    assert not supports_cls_only(model)


def test_reranker_scores_with_and_without_the_cls_only_layer(tmp_path):
    """CrossEncoder.score, switched off and on, on real pairs of several lengths: same logits, same
    order; and the SimLM encoder keeps the full layer when int8-quantised (activation scales are
    per tensor, so one row would change the numbers)."""
    import numpy as np
    import tiny as tiny_data
    from transformers import AutoTokenizer

    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.modeling.checkpoints import minilm_dir
    from simlm_ir.modeling.reranker import CrossEncoder

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=256, num_labels=1, initializer_range=0.5)).save_pretrained(tmp_path / "ce")
    tok.save_pretrained(tmp_path / "ce")
    ce = CrossEncoder(str(tmp_path / "ce"))
    queries = [q for q in tiny_data.QUERIES.values() for _ in range(3)]
    docs = list(tiny_data.DOCS.items()) * 2
    titles, texts = [d for d, _ in docs[:len(queries)]], [t for _, t in docs[:len(queries)]]
    fast = ce.score(queries, titles, texts)
    ce.cls_only = False
    full = ce.score(queries, titles, texts)
    assert np.abs(fast - full).max() < 1e-5 and full.std() > 0.01
    assert (np.argsort(-fast) == np.argsort(-full)).all()
    enc = SimLMEncoder(str(tiny_data.save_tiny_bert(tmp_path / "bert", dropout=0.0)), quantize_int8=True)
    assert enc.cls_only is False
