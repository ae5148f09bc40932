"""ColBERT: MaxSim by hand, ColBERTv2 input format, exact index search, colbert-ai checkpoint layout,
tiny training smoke run, and the benchmark system."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import tiny as tiny_data
import torch

from simlm_ir.data.corpus import Passage
from simlm_ir.index.colbert import build_colbert_index
from simlm_ir.modeling.colbert import METADATA_FILE, ColBERT, ColBERTConfig, maxsim
from simlm_ir.search.colbert import ColBERTIndex, ColBERTSystem

DOCS = dict(list(tiny_data.DOCS.items())[:6])
QUERIES = {q: tiny_data.QUERIES[q] for q in ("q1", "q2", "q3")}
QRELS = {q: tiny_data.QRELS[q] for q in QUERIES}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_colbert")
    tiny_data.save_tiny_bert(d / "bert")
    tiny_data.write_training_data(d, DOCS, QUERIES, QRELS, depth=4)
    return d


@pytest.fixture(scope="module")
def model(tiny):
    return ColBERT.from_pretrained(str(tiny / "bert"), ColBERTConfig(dim=16))


def test_maxsim_by_hand():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one query, two token vectors
    d = torch.tensor([[[0.6, 0.8], [1.0, 0.0]],
                      [[0.0, 1.0], [0.6, 0.8]]])
    keep = torch.tensor([[True, True], [True, False]])
    # doc 0: max(.6, 1) + max(.8, 0) = 1.8; doc 1 (second vector masked): 0 + 1 = 1.0 (1.6 unmasked)
    assert maxsim(q, d, keep)[0].tolist() == pytest.approx([1.8, 1.0])
    assert maxsim(q, d, torch.ones(2, 2, dtype=torch.bool))[0].tolist() == pytest.approx([1.8, 1.6])


def test_colbertv2_input_format(model):
    tok = model.tokenizer
    q = model.tokenize_queries(["package manager"])
    tokens = tok.convert_ids_to_tokens(q["input_ids"][0])
    assert tokens[:5] == ["[CLS]", "[unused0]", "package", "manager", "[SEP]"]
    assert tokens[5:] == ["[MASK]"] * 27 and len(tokens) == 32  # query augmentation
    assert q["attention_mask"][0].tolist() == [1] * 5 + [0] * 27  # masks not attended to (ColBERTv2)
    d = model.tokenize_docs(["APT, the manager.", "vim"])
    tokens = tok.convert_ids_to_tokens(d["input_ids"][0])
    assert tokens == ["[CLS]", "[unused1]", "apt", ",", "the", "manager", ".", "[SEP]"]
    assert d["keep"][0].tolist() == [True, True, True, False, True, True, False, True]  # punctuation out
    short = tok.convert_ids_to_tokens(d["input_ids"][1])
    assert "[PAD]" in short and d["keep"][1].tolist() == [t != "[PAD]" for t in short]  # padding out
    vecs = model.query_vectors(q)
    assert vecs.shape == (1, 32, 16) and torch.allclose(vecs.norm(dim=-1), torch.ones(1, 32), atol=1e-5)


def test_length_sorted_micro_batches_give_the_same_vectors(model):
    batch = model.tokenize_docs(list(DOCS.values()) + ["x"])
    with torch.no_grad():
        assert torch.allclose(model.doc_vectors(batch), model.doc_vectors(batch, micro_batch=2), atol=1e-5)


def test_index_search_is_exact_maxsim(model, tmp_path):
    passages = [Passage(i, "-", t) for i, t in DOCS.items()]
    meta = build_colbert_index(passages, model, tmp_path / "idx", chunk_docs=4)
    index = ColBERTIndex(tmp_path / "idx")
    kept = int(model.tokenize_docs([p.contents for p in passages])["keep"].sum())
    assert meta["tokens"] == kept and meta["docs"] == len(DOCS)
    assert (tmp_path / "idx" / "vectors.f16").stat().st_size == kept * 16 * 2  # fp16 token vectors
    assert index.size_bytes > kept * 16 * 2
    with torch.no_grad():
        expected = model.score(["text editor"], [p.contents for p in passages])[0].numpy()
    hits = index.search(model.encode_query("text editor"), k=3)
    order = np.argsort(-expected)[:3]
    assert [h[0] for h in hits] == [passages[i].id for i in order]
    assert [h[1] for h in hits] == pytest.approx(expected[order].tolist(), abs=2e-2)  # fp16 vectors


def test_checkpoint_round_trip_in_colbert_ai_layout(model, tmp_path):
    from safetensors.torch import load_file

    model.save_pretrained(tmp_path / "ckpt")
    keys = load_file(str(tmp_path / "ckpt" / "model.safetensors")).keys()
    assert "linear.weight" in keys and all(k.startswith(("bert.", "linear.")) for k in keys)
    assert json.loads((tmp_path / "ckpt" / METADATA_FILE).read_text())["query_token_id"] == "[unused0]"
    loaded = ColBERT.from_pretrained(str(tmp_path / "ckpt"))
    assert loaded.trained_projection and loaded.config.dim == 16
    assert np.allclose(loaded.encode_query("vim"), model.encode_query("vim"), atol=1e-6)


def test_loads_a_colbertv2_style_checkpoint(model, tmp_path):
    """colbert-ai writes pytorch_model.bin (bert.* + linear.weight) and an artifact.metadata with
    many more keys; its settings (here dim 16, doc_maxlen 12) must be honoured."""
    ckpt = tmp_path / "colbertv2"
    model.save_pretrained(ckpt)
    from safetensors.torch import load_file

    torch.save(load_file(str(ckpt / "model.safetensors")), ckpt / "pytorch_model.bin")
    (ckpt / "model.safetensors").unlink()
    (ckpt / METADATA_FILE).write_text(json.dumps({
        "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": 32, "doc_maxlen": 12,
        "dim": 16, "similarity": "cosine", "mask_punctuation": True, "attend_to_mask_tokens": False,
        "nbits": 2, "kmeans_niters": 4, "checkpoint": "colbert-ir/colbertv2.0", "rank": 0}))
    loaded = ColBERT.from_pretrained(str(ckpt))
    assert loaded.config.doc_maxlen == 12 and loaded.trained_projection
    assert loaded.tokenize_docs([DOCS["vim"]])["input_ids"].shape[1] == 12
    assert np.allclose(loaded.encode_query("vim"), model.encode_query("vim"), atol=1e-6)


def test_training_smoke_run(tiny, tmp_path):
    from simlm_ir.train.colbert import main

    out = tmp_path / "run"
    argv = ["--train-file", str(tiny / "train.jsonl"), "--output", str(out), "--init", str(tiny / "bert"),
            "--corpus", str(tiny / "corpus.jsonl"), "--batch-size", "2", "--group-size", "2", "--max-steps", "3",
            "--dim", "16", "--lr", "1e-3", "--log-every", "1", "--save-steps", "2", "--micro-batch", "2"]
    assert main(argv) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    trained = ColBERT.from_pretrained(str(out))
    fresh = ColBERT.from_pretrained(str(tiny / "bert"), ColBERTConfig(dim=16), seed=42)
    assert trained.trained_projection and not torch.allclose(trained.linear.weight, fresh.linear.weight)
    # resume from checkpoint-2 reproduces step 3
    assert main(argv + ["--resume"]) == 0
    again = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert again[-1]["loss"] == pytest.approx(log[-1]["loss"], rel=1e-4)


@dataclass
class TinyCollection:
    dataset_id: str = "tiny"

    def passages(self):
        return iter(Passage(i, "-", t) for i, t in DOCS.items())


def test_colbert_system_reuses_its_index(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    system = ColBERTSystem(str(tmp_path / "ckpt"))
    info = system.prepare(TinyCollection(), tmp_path / "work")
    assert info.size_bytes == system.index.size_bytes and "fp16 token vectors" in system.note
    result = system.search(QUERIES, k=4)
    assert list(result.run) == list(QUERIES) and all(len(docs) == 4 for docs in result.run.values())
    assert len(result.latencies_ms) == 3  # fewer queries than the latency sample: each one timed
    again = ColBERTSystem(str(tmp_path / "ckpt")).prepare(TinyCollection(), tmp_path / "work")
    assert again.build_seconds == info.build_seconds  # cached index, not rebuilt


def test_batch_maxsim_equals_one_query_at_a_time_and_the_plain_definition(model, tmp_path):
    from simlm_ir.index.colbert import read_colbert_index

    passages = [Passage(i, "-", t) for i, t in DOCS.items()]
    build_colbert_index(passages, model, tmp_path / "idx", chunk_docs=4)
    index = ColBERTIndex(tmp_path / "idx")
    alone = ColBERTIndex(tmp_path / "idx", block_tokens=1)  # every document a block of its own
    assert len(alone.blocks) == len(DOCS)
    # blocks of documents of different lengths padded together
    mixed = ColBERTIndex(tmp_path / "idx", block_tokens=3 * int(max(index.doclens)))
    assert any(len(set(index.doclens[docs.numpy()])) > 1 for docs, _ in mixed.blocks)
    texts = ["text editor", "compression library", "web server for static files"]
    qs = np.stack([model.encode_query(t) for t in texts])
    vectors, doclens, _, _ = read_colbert_index(tmp_path / "idx")
    starts = np.concatenate([[0], np.cumsum(doclens)])
    plain = np.array([[(vectors[a:b].astype(np.float32) @ q.T).max(axis=0).sum() for a, b in zip(starts, starts[1:])]
                      for q in qs])  # MaxSim as defined: per document, its best token for each query token
    one = np.stack([index.scores(q) for q in qs])
    many = index.scores_many(qs)
    assert many.shape == (3, len(DOCS))
    for got in (one, many, alone.scores_many(qs), mixed.scores_many(qs)):
        np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)


def test_exact_system_searches_in_batches_and_times_a_sample(model, tmp_path, monkeypatch):
    import simlm_ir.search.colbert as colbert_search

    model.save_pretrained(tmp_path / "ckpt")
    monkeypatch.setattr(colbert_search, "QUERY_BATCH", 2)  # batches of 2 and a last one of 1
    system = ColBERTSystem(str(tmp_path / "ckpt"), latency_queries=2)
    system.prepare(TinyCollection(), tmp_path / "work")
    result = system.search(QUERIES, k=3)
    assert len(result.latencies_ms) == 2
    for qid, text in QUERIES.items():  # the batch run is the one-query search's
        expected = system.index.search(system.model.encode_query(text), 3)
        assert list(result.run[qid]) == [d for d, _ in expected]
        assert list(result.run[qid].values()) == pytest.approx([s for _, s in expected], abs=1e-4)


def test_the_shipped_colbert_has_a_trained_projection_and_says_how_it_was_trained():
    from simlm_ir.modeling.checkpoints import DEFAULT_COLBERT_DIR, exported_model_line, resolve_checkpoint

    assert resolve_checkpoint("colbert") == str(DEFAULT_COLBERT_DIR)
    shipped = ColBERT.from_pretrained("colbert")
    assert shipped.trained_projection and shipped.config.dim == 128
    assert "ColBERT" in exported_model_line("colbert")
    # fp16 on disk, float32 in memory: the projection is the trained one, not a fresh initialisation
    fresh = ColBERT.from_pretrained("minilm")
    assert not torch.allclose(shipped.linear.weight.float(), fresh.linear.weight.float())
