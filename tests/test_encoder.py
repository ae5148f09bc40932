"""SimLM encoders: exact input format, [CLS] pooling, L2 norm, and the Pyserini classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simlm_ir.encode.encoder import SimLMEncoder, strip_simlm_prefix
from simlm_ir.errors import CheckpointError
from simlm_ir.modeling.checkpoints import minilm_dir

TITLES = ["Photosynthesis", None, "Great Barrier Reef", "", "Python (programming language)"]
TEXTS = [
    "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide to "
    "make glucose and release oxygen.",
    "The French Revolution began in 1789 with the storming of the Bastille.",
    "The Great Barrier Reef off the coast of Queensland is the largest coral reef system in the world, "
    "made of nearly 3,000 individual reefs and 900 islands stretching over 2,300 kilometres. " * 4,
    "Mount Everest is Earth's highest mountain above sea level.",
    "Python is a high-level programming language whose design emphasises code readability.",
]
QUERIES = ["how do plants make oxygen",
           "when did the french revolution start",
           "what is the largest coral reef on earth and how many islands does it have, and where exactly "
           "is it located, and how long is it, measured from its northern to its southern end"]


@pytest.fixture(scope="module")
def model_dir():
    return str(minilm_dir())


@pytest.fixture(scope="module")
def encoder(model_dir):
    return SimLMEncoder(model_dir, device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def reference(model_dir):
    """SimLM's format built by hand: BertTokenizer pair input + BertModel, one input at a time."""
    from transformers import BertModel, BertTokenizer

    tok = BertTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir).eval()

    def cls(inputs):
        with torch.no_grad():
            v = model(**inputs).last_hidden_state[0, 0]
        return (v / v.norm()).numpy()

    def passages(zero_segments=False):
        out = []
        for title, text in zip(TITLES, TEXTS):
            x = tok(title or "-", text_pair=text, max_length=144, truncation=True, return_tensors="pt")
            if zero_segments:
                x["token_type_ids"] = torch.zeros_like(x["token_type_ids"])
            out.append(cls(x))
        return np.stack(out)

    def queries():
        return np.stack([cls(tok(q, max_length=32, truncation=True, return_tensors="pt")) for q in QUERIES])

    return {"passages": passages(), "passages_zero_segments": passages(True), "queries": queries(),
            "tokenizer": tok}


def test_passage_vectors_match_hand_built_reference(encoder, reference):
    got = encoder.encode_passages(TEXTS, TITLES)  # batches of 2, sorted by length, padded
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference["passages"], atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_passage_input_format(encoder, reference):
    enc = encoder.tokenize_passages(TEXTS, TITLES)
    tok = reference["tokenizer"]
    # no title -> "-" as the title; segment ids 0 for [CLS] title [SEP], 1 for passage [SEP]
    ids, types = enc["input_ids"][1], enc["token_type_ids"][1]
    assert tok.convert_ids_to_tokens(ids[:3]) == ["[CLS]", "-", "[SEP]"]
    assert types[:3] == [0, 0, 0] and set(types[3:]) == {1}
    assert max(len(x) for x in enc["input_ids"]) == 144  # the long reef passage is truncated


def test_query_vectors_match_reference(encoder, reference):
    got = encoder.encode_queries(QUERIES)
    np.testing.assert_allclose(got, reference["queries"], atol=2e-5)
    assert len(encoder.tokenize_queries(QUERIES)["input_ids"][2]) == 32


def test_batching_does_not_change_vectors(encoder):
    one_by_one = np.stack([encoder.encode_passages([t], [ti], batch_size=1)[0] for t, ti in zip(TEXTS, TITLES)])
    np.testing.assert_allclose(encoder.encode_passages(TEXTS, TITLES, batch_size=64), one_by_one, atol=2e-5)
    budget = encoder.max_batch_tokens
    try:
        encoder.max_batch_tokens = 100  # token budget below one long passage: still one row per batch
        assert [len(i) for i, _ in encoder._micro_batches(np.array([150, 20, 30, 40]), 64)] == [1, 2, 1]
        np.testing.assert_allclose(encoder.encode_passages(TEXTS, TITLES, batch_size=64), one_by_one, atol=2e-5)
    finally:
        encoder.max_batch_tokens = budget
    assert encoder.encode_passages([], []).shape == (0, 384)


def test_pyserini_auto_encoder_differs_because_it_drops_token_types(model_dir, encoder, reference):
    from pyserini.encode import AutoDocumentEncoder

    auto = AutoDocumentEncoder(model_dir, device="cpu", pooling="cls", l2_norm=True)
    theirs = auto.encode(texts=TEXTS, titles=[t or "-" for t in TITLES], max_length=144, add_sep=True)
    ours = encoder.encode_passages(TEXTS, TITLES)
    cos = (theirs * ours).sum(axis=1)
    assert (cos < 0.999).all(), cos  # every passage vector differs ...
    # ... exactly by the segment ids: the reference with token_type_ids zeroed reproduces Pyserini's
    np.testing.assert_allclose(theirs, reference["passages_zero_segments"], atol=2e-5)


def test_pyserini_classes_are_registered_and_built_as_pyserini_builds_them(model_dir, encoder):
    import pyserini.encode as pe
    from pyserini.encode.__main__ import init_encoder
    from pyserini.search.faiss.__main__ import init_query_encoder

    from simlm_ir.encode import SimLMDocumentEncoder, SimLMQueryEncoder

    assert pe.document_encoder_class_map["simlm"] is SimLMDocumentEncoder
    assert pe.query_encoder_class_map["simlm"] is SimLMQueryEncoder
    assert issubclass(SimLMQueryEncoder, pe.QueryEncoder) and issubclass(SimLMDocumentEncoder, pe.DocumentEncoder)

    spec = "simlm:" + model_dir
    doc_enc = init_encoder(spec, None, device="cpu", pooling="cls", l2_norm=False, prefix=None,
                           multimodal=False, explicit_truncate=False)
    assert isinstance(doc_enc, SimLMDocumentEncoder)
    # pyserini.encode passes its own --max-length default (256) and add_sep; SimLM keeps 144 + pairs
    got = doc_enc.encode(texts=TEXTS, titles=TITLES, fp16=False, max_length=256, add_sep=False)
    np.testing.assert_allclose(got, encoder.encode_passages(TEXTS, TITLES), atol=2e-5)
    no_titles = doc_enc.encode(texts=TEXTS[:2])
    np.testing.assert_allclose(no_titles, encoder.encode_passages(TEXTS[:2], ["-", "-"]), atol=2e-5)

    q_enc = init_query_encoder(spec, None, None, "topics.tsv", None, "cpu", 256, "cls", False, None)
    assert isinstance(q_enc, SimLMQueryEncoder)
    one = q_enc.encode(QUERIES[0])
    assert one.shape == (384,)
    batch = q_enc.encode_batch(QUERIES)
    np.testing.assert_allclose(batch[0], one, atol=2e-5)
    np.testing.assert_allclose(batch, encoder.encode_queries(QUERIES), atol=2e-5)


def test_simlm_prefix_and_checkpoint_errors(tmp_path):
    assert strip_simlm_prefix("simlm:/a/b") == "/a/b"
    assert strip_simlm_prefix("/models/simlm-base") == "/models/simlm-base"
    t5 = tmp_path / "t5-small"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 64}))
    with pytest.raises(CheckpointError, match="t5"):
        SimLMEncoder("simlm:" + str(t5))
    with pytest.raises(CheckpointError, match="no config.json"):
        SimLMEncoder(str(tmp_path))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        SimLMEncoder(str(tmp_path / "missing" / "dir"))


def test_int8_quantisation_stays_close(model_dir, encoder):
    q8 = SimLMEncoder(model_dir, device="cpu", quantize_int8=True)
    assert q8.quantized
    cos = (q8.encode_passages(TEXTS, TITLES) * encoder.encode_passages(TEXTS, TITLES)).sum(axis=1)
    assert (cos > 0.95).all(), cos


def test_length_buckets_give_the_one_batch_vectors_in_input_order(encoder):
    enc = encoder.tokenize_passages(TEXTS * 2, TITLES * 2)
    one = encoder.train_vectors(enc["input_ids"], enc["token_type_ids"], buckets=1)
    bucketed = encoder.train_vectors(enc["input_ids"], enc["token_type_ids"], buckets=3)
    assert bucketed.requires_grad == one.requires_grad
    # same rows in the same order: padding is masked, so only float noise may differ
    assert torch.allclose(one, bucketed, atol=1e-5)
    assert not torch.allclose(bucketed[0], bucketed[2], atol=1e-3)  # a row mix-up would show here
