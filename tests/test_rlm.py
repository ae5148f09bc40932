"""The SimLM pre-training model: sampling generator, [CLS] bottleneck, full-position loss, save/load."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from simlm_ir.errors import CheckpointError
from simlm_ir.modeling import (
    MLMGenerator,
    SimLMConfig,
    SimLMForPretraining,
    UnigramGenerator,
    WholeWordMasker,
    load_encoder,
    load_tokenizer,
)
from simlm_ir.modeling.checkpoints import minilm_dir

TINY = "hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128"
PASSAGES = [
    ("Python", "Python is a high-level programming language whose design philosophy emphasises code "
               "readability, with significant indentation and a comprehensive standard library."),
    ("Photosynthesis", "Photosynthesis is the process by which green plants convert light energy into chemical "
                       "energy, releasing oxygen as a by-product of splitting water."),
    ("-", "The Pacific Ocean is the largest and deepest of the world's five oceanic divisions, stretching from "
          "the Arctic in the north to the Southern Ocean in the south."),
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(None)


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer([t for t, _ in PASSAGES], text_pair=[p for _, p in PASSAGES], padding=True,
                     return_tensors="pt")


def tiny_model(tokenizer, seed=0, generator=None):
    torch.manual_seed(seed)
    model = SimLMForPretraining.from_encoder("scratch", tokenizer=tokenizer, config_overrides=TINY)
    model.generator = generator or UnigramGenerator(torch.ones(len(tokenizer)), tokenizer.all_special_ids)
    return model


def masks(tokenizer, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return WholeWordMasker(tokenizer).encoder_decoder_masks(batch["input_ids"], 0.3, 0.5, g, batch["attention_mask"])


def run(model, batch, m, seed=0):
    return model(batch["input_ids"], batch["attention_mask"], m.encoder, m.decoder, batch["token_type_ids"],
                 rng=torch.Generator().manual_seed(seed))


def biased_generator(tokenizer, logits_by_token: dict[str, float]) -> MLMGenerator:
    """A masked LM whose output distribution is known exactly: logits = the head's bias."""
    from transformers import BertConfig, BertForMaskedLM

    gen = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=1, intermediate_size=64))
    with torch.no_grad():
        gen.cls.predictions.decoder.weight.zero_()
        bias = torch.full((len(tokenizer),), -30.0)
        for token, logit in logits_by_token.items():
            bias[tokenizer.convert_tokens_to_ids(token)] = logit
        gen.cls.predictions.bias.copy_(bias)
        gen.cls.predictions.decoder.bias.copy_(bias)
    return MLMGenerator(gen, tokenizer.mask_token_id, tokenizer.all_special_ids, {"kind": "test"})


def test_generator_samples_from_its_distribution_not_argmax(tokenizer, batch):
    # p(apple) = 3/4, p(banana) = 1/4; [SEP] has the top logit but special tokens are never produced.
    gen = biased_generator(tokenizer, {"apple": 2.0, "banana": 2.0 - math.log(3), "[SEP]": 9.0})
    mask = torch.ones_like(batch["input_ids"], dtype=torch.bool)
    mask[:, 0] = False
    out = gen.fill(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], mask,
                   torch.Generator().manual_seed(0))
    filled = out[mask]
    apple, banana = tokenizer.convert_tokens_to_ids(["apple", "banana"])
    assert set(filled.tolist()) == {apple, banana}
    assert (filled == banana).float().mean().item() == pytest.approx(0.25, abs=0.1)
    assert torch.equal(out[~mask], batch["input_ids"][~mask])
    again = gen.fill(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], mask,
                     torch.Generator().manual_seed(0))
    assert torch.equal(out, again), "same RNG seed, same samples"


def test_unigram_generator_follows_counts(tokenizer):
    counts = torch.zeros(len(tokenizer))
    the, cat = tokenizer.convert_tokens_to_ids(["the", "cat"])
    counts[the], counts[cat], counts[tokenizer.cls_token_id] = 9, 1, 1000
    gen = UnigramGenerator(counts, tokenizer.all_special_ids)
    ids = torch.full((4, 200), the)
    out = gen.fill(ids, torch.ones_like(ids), None, torch.ones_like(ids, dtype=torch.bool),
                   torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {the, cat}
    assert (out == cat).float().mean().item() == pytest.approx(0.1, abs=0.04)


def test_decoder_is_a_copy_of_the_last_encoder_layers(tokenizer):
    model = tiny_model(tokenizer)
    assert len(model.decoder) == 2
    for dec, enc in zip(model.decoder, model.encoder.bert.encoder.layer[-2:]):
        for (name, p), q in zip(dec.named_parameters(), enc.parameters()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), name
    # No head of its own: the decoder predicts through the encoder's (tied) MLM head.
    assert all(p.shape[0] != len(tokenizer) for p in model.decoder.parameters())


def test_loss_is_enc_plus_dec_over_every_non_special_position(tokenizer, batch):
    model = tiny_model(tokenizer).eval()
    m = masks(tokenizer, batch)
    out = run(model, batch, m)
    assert out.loss.item() == pytest.approx(out.encoder_loss.item() + out.decoder_loss.item(), rel=1e-6)
    # The encoder copy really is corrupted at the masked positions, the decoder copy more so.
    assert (out.encoder_input_ids != batch["input_ids"]).sum() > 0
    assert (out.decoder_input_ids != batch["input_ids"]).sum() > (out.encoder_input_ids != batch["input_ids"]).sum()
    # Recompute L_enc by hand over all non-special positions (unmasked ones included).
    logits = model.encoder(input_ids=out.encoder_input_ids, attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"]).logits
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids)) | (batch["attention_mask"] == 0)
    assert int((~special).sum()) > int(m.encoder.sum()) * 2
    expected = F.cross_entropy(logits[~special], batch["input_ids"][~special])
    assert out.encoder_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cls_is_the_only_path_from_encoder_to_decoder(tokenizer, batch):
    model = tiny_model(tokenizer).train()
    out = run(model, batch, masks(tokenizer, batch))
    hidden = out.encoder_last_hidden_state
    hidden.retain_grad()
    out.decoder_loss.backward()
    assert torch.count_nonzero(hidden.grad[:, 1:]) == 0
    assert hidden.grad[:, 0].abs().sum() > 0


def test_save_load_round_trip(tokenizer, batch, tmp_path):
    from transformers import BertModel

    gen = UnigramGenerator(torch.ones(len(tokenizer)), tokenizer.all_special_ids)
    model = tiny_model(tokenizer, generator=gen).eval()
    with torch.no_grad():  # make the decoder differ from its initial copy so the round trip tests it
        model.decoder[0].output.dense.bias.add_(0.5)
    m = masks(tokenizer, batch)
    before = run(model, batch, m, seed=3)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "simlm_pretrain.json").read_text())["decoder_layers"] == 2

    loaded = SimLMForPretraining.from_pretrained(tmp_path, generator=gen).eval()
    after = run(loaded, batch, m, seed=3)
    assert torch.equal(before.encoder_input_ids, after.encoder_input_ids)
    assert after.encoder_loss.item() == pytest.approx(before.encoder_loss.item(), abs=1e-6)
    assert after.decoder_loss.item() == pytest.approx(before.decoder_loss.item(), abs=1e-6)

    # The encoder is a plain BERT checkpoint for everything downstream.
    bert, info = BertModel.from_pretrained(str(tmp_path), add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"]
    with torch.no_grad():
        ours = model.encoder.bert(**batch).last_hidden_state
        theirs = bert.eval()(**batch).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert (tmp_path / "tokenizer_config.json").exists()


def test_minilm_without_mlm_head_gets_a_tied_head(tokenizer):
    encoder, tok = load_encoder(minilm_dir())
    assert encoder.config.hidden_size == 384
    assert encoder.cls.predictions.decoder.weight is encoder.bert.embeddings.word_embeddings.weight
    model = SimLMForPretraining(encoder, tok, SimLMConfig(decoder_layers=2))
    assert len(model.decoder) == 2


@pytest.mark.parametrize("model_type", ["gpt2", "roberta"])
def test_non_bert_checkpoint_is_a_checkpoint_error(tmp_path, model_type):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(CheckpointError, match=model_type):
        load_encoder(tmp_path)


def test_from_pretrained_needs_a_simlm_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="simlm_pretrain.json"):
        SimLMForPretraining.from_pretrained(tmp_path)


def constant_generator(tokenizer, token: str = "zebra") -> UnigramGenerator:
    """A generator that always writes ``token`` (absent from the test passages), so each corrupted
    copy shows exactly which positions were replaced."""
    counts = torch.zeros(len(tokenizer))
    counts[tokenizer.convert_tokens_to_ids(token)] = 1
    return UnigramGenerator(counts, tokenizer.all_special_ids)


def decoder_loss_by_hand(model, batch, cls_vectors, decoder_ids, positions):
    """Second implementation of the decoder's loss, row by row on unpadded rows (no attention mask):
    embeddings written out from the weight matrices (token type 0), the encoder's [CLS] at position 0,
    the decoder layers, the encoder's MLM head, cross-entropy to the original token at ``positions``."""
    emb = model.encoder.bert.embeddings
    total, count = 0.0, 0
    with torch.no_grad():
        for row in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][row].sum())
            ids = decoder_ids[row, :n]
            x = emb.LayerNorm(emb.word_embeddings.weight[ids] + emb.position_embeddings.weight[:n]
                              + emb.token_type_embeddings.weight[0])
            h = torch.cat([cls_vectors[row][None], x[1:]])[None]
            for layer in model.decoder:
                h = layer(h)
                h = h[0] if isinstance(h, tuple) else h
            logits = model.encoder.cls(h[0])
            pos = positions[row, :n]
            total += float(F.cross_entropy(logits[pos], batch["input_ids"][row, :n][pos], reduction="sum"))
            count += int(pos.sum())
    return total / count


def sharp_model(tokenizer, objective="rlm"):
    """A tiny model with wide initial weights: its predictions are far from uniform, so a loss over
    the wrong positions or from the wrong input differs clearly from the right one."""
    torch.manual_seed(0)
    model = SimLMForPretraining.from_encoder("scratch", SimLMConfig(objective=objective), tokenizer=tokenizer,
                                             config_overrides=TINY + ",initializer_range=0.2")
    model.generator = constant_generator(tokenizer)
    return model.eval()


def test_each_copy_is_corrupted_exactly_at_its_own_mask(tokenizer, batch):
    gen = constant_generator(tokenizer)
    zebra = tokenizer.convert_tokens_to_ids("zebra")
    assert not (batch["input_ids"] == zebra).any()
    model = tiny_model(tokenizer, generator=gen).eval()
    m = masks(tokenizer, batch)
    out = run(model, batch, m)
    assert m.encoder.any() and (m.decoder & ~m.encoder).any()
    assert torch.equal(out.encoder_input_ids == zebra, m.encoder)
    assert torch.equal(out.decoder_input_ids == zebra, m.decoder)
    assert torch.equal(out.decoder_input_ids[~m.decoder], batch["input_ids"][~m.decoder])


def test_decoder_loss_by_hand_over_every_non_special_position_of_its_own_copy(tokenizer, batch):
    model = sharp_model(tokenizer)
    m = masks(tokenizer, batch)
    out = run(model, batch, m)
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids)) | (batch["attention_mask"] == 0)
    cls = out.encoder_last_hidden_state[:, 0].detach()
    want = decoder_loss_by_hand(model, batch, cls, out.decoder_input_ids, ~special)
    assert out.decoder_loss.item() == pytest.approx(want, rel=1e-5)
    # the check can tell the decoder's copy from the encoder's, and all positions from masked ones
    assert want != pytest.approx(decoder_loss_by_hand(model, batch, cls, out.encoder_input_ids, ~special), rel=1e-3)
    assert want != pytest.approx(decoder_loss_by_hand(model, batch, cls, out.decoder_input_ids, m.decoder), rel=1e-3)


@pytest.mark.parametrize("objective", ["enc-dec-mlm", "mlm"])
def test_mlm_style_objectives_score_only_the_masked_positions(tokenizer, batch, objective):
    """The ablation baselines: loss at masked positions only (RLM's is at every position)."""
    model = sharp_model(tokenizer, objective)
    m = masks(tokenizer, batch)
    out = run(model, batch, m)
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids)) | (batch["attention_mask"] == 0)
    logits = model.encoder(input_ids=out.encoder_input_ids, attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"]).logits
    at = m.encoder & ~special
    want_enc = F.cross_entropy(logits[at], batch["input_ids"][at]).item()
    assert out.encoder_loss.item() == pytest.approx(want_enc, rel=1e-5)
    if objective == "mlm":
        assert out.decoder_loss.item() == 0.0 and out.loss.item() == pytest.approx(out.encoder_loss.item())
    else:
        cls = out.encoder_last_hidden_state[:, 0].detach()
        want = decoder_loss_by_hand(model, batch, cls, out.decoder_input_ids, m.decoder & ~special)
        assert out.decoder_loss.item() == pytest.approx(want, rel=1e-5)
        assert want != pytest.approx(decoder_loss_by_hand(model, batch, cls, out.decoder_input_ids, ~special), rel=1e-3)


def test_reload_keeps_non_default_settings_and_refuses_an_incomplete_decoder(tokenizer, tmp_path):
    """What a resumed run reloads must be the run it saved: every SimLMConfig field, and all of the
    decoder (a missing tensor is an error, not a silently fresh layer)."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    cfg = SimLMConfig(encoder_mask_rate=0.15, decoder_mask_rate=0.15, decoder_layers=1, objective="enc-dec-mlm")
    model = SimLMForPretraining.from_encoder("scratch", cfg, tokenizer=tokenizer, config_overrides=TINY)
    path = tmp_path / "nested" / "run"  # parents are created
    model.save_pretrained(path)
    loaded = SimLMForPretraining.from_pretrained(path)
    assert loaded.config == cfg and len(loaded.decoder) == 1
    for (name, a), b in zip(model.decoder.state_dict().items(), loaded.decoder.state_dict().values()):
        assert torch.equal(a, b), name
    weights = load_file(str(path / "decoder.safetensors"))
    save_file({k: v for k, v in list(weights.items())[1:]}, str(path / "decoder.safetensors"))
    with pytest.raises((RuntimeError, CheckpointError), match="(?i)missing"):
        SimLMForPretraining.from_pretrained(path)


def test_train_mode_reaches_encoder_and_decoder_but_never_the_generator(tokenizer):
    model = tiny_model(tokenizer, generator=biased_generator(tokenizer, {"apple": 1.0}))
    model.train()
    assert model.training and model.encoder.training and all(layer.training for layer in model.decoder)
    assert not model.generator.training and not model.generator.model.training
    model.eval()
    assert not model.encoder.training and not any(layer.training for layer in model.decoder)


def test_per_position_draws_replace_the_rng(tokenizer, batch):
    """With ``uniforms`` (what pre-training passes, so samples do not depend on the batch split) the
    copies are a function of the draws alone: another rng seed changes nothing, other draws do."""
    model = tiny_model(tokenizer).eval()
    m = masks(tokenizer, batch)
    g = torch.Generator().manual_seed(1)
    u = (torch.rand(batch["input_ids"].shape, generator=g), torch.rand(batch["input_ids"].shape, generator=g))
    args = (batch["input_ids"], batch["attention_mask"], m.encoder, m.decoder, batch["token_type_ids"])
    a = model(*args, rng=torch.Generator().manual_seed(0), uniforms=u)
    b = model(*args, rng=torch.Generator().manual_seed(99), uniforms=u)
    c = model(*args, rng=torch.Generator().manual_seed(0), uniforms=(u[1], u[0]))
    assert torch.equal(a.encoder_input_ids, b.encoder_input_ids)
    assert torch.equal(a.decoder_input_ids, b.decoder_input_ids)
    assert not torch.equal(a.encoder_input_ids, c.encoder_input_ids)
    assert not torch.equal(a.decoder_input_ids, c.decoder_input_ids)
