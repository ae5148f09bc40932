"""The ablation objectives beside RLM: plain MLM, Enc-Dec MLM and Condenser on the same encoder."""

import pytest
import torch
import torch.nn.functional as F

from simlm_ir.modeling.generators import MaskFiller
from simlm_ir.modeling.masking import WholeWordMasker
from simlm_ir.modeling.rlm import SimLMConfig, SimLMForPretraining, load_tokenizer

TINY = "hidden_size=64,num_hidden_layers=4,num_attention_heads=2,intermediate_size=128"
TEXTS = ["APT is the command-line package manager of Debian; it downloads and installs packages from "
         "configured repositories and resolves their dependencies.",
         "GNU Wget retrieves files from the web over HTTP, HTTPS and FTP, non-interactively, and can "
         "resume interrupted downloads.",
         "htop is an interactive process viewer that shows CPU and memory use per process."]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(None)


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer(["-"] * len(TEXTS), text_pair=TEXTS, padding=True, return_tensors="pt")


def model_for(tokenizer, objective, seed=0):
    torch.manual_seed(seed)
    model = SimLMForPretraining.from_encoder("scratch", SimLMConfig(objective=objective), tokenizer=tokenizer,
                                             config_overrides=TINY)
    model.generator = MaskFiller(tokenizer.mask_token_id, tokenizer.all_special_ids)
    return model.eval()


def masks(tokenizer, batch, enc=0.3, dec=0.5):
    g = torch.Generator().manual_seed(3)
    return WholeWordMasker(tokenizer).encoder_decoder_masks(batch["input_ids"], enc, dec, g, batch["attention_mask"])


def test_mlm_is_encoder_only_cross_entropy_at_the_masked_positions(tokenizer, batch):
    model = model_for(tokenizer, "mlm")
    m = masks(tokenizer, batch, 0.15, 0.15)
    out = model(batch["input_ids"], batch["attention_mask"], m.encoder, m.decoder, batch["token_type_ids"])
    # By hand: BERT's own MLM forward on the [MASK]ed input, loss over the masked positions only.
    masked = batch["input_ids"].masked_fill(m.encoder, tokenizer.mask_token_id)
    logits = model.encoder(input_ids=masked, attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"]).logits
    expected = F.cross_entropy(logits[m.encoder], batch["input_ids"][m.encoder])
    assert out.encoder_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.decoder_loss.item() == 0.0
    assert torch.equal(out.encoder_input_ids, masked)


def test_enc_dec_mlm_feeds_masked_copies_and_scores_only_masked_positions(tokenizer, batch):
    model = model_for(tokenizer, "enc-dec-mlm")
    m = masks(tokenizer, batch)
    out = model(batch["input_ids"], batch["attention_mask"], m.encoder, m.decoder, batch["token_type_ids"])
    dec_in = batch["input_ids"].masked_fill(m.decoder, tokenizer.mask_token_id)
    assert torch.equal(out.decoder_input_ids, dec_in)
    hidden = model.decode(out.encoder_last_hidden_state[:, 0], dec_in, batch["attention_mask"])
    expected = F.cross_entropy(model.encoder.cls(hidden[m.decoder]), batch["input_ids"][m.decoder])
    assert out.decoder_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_condenser_head_reads_the_early_layer_and_the_late_cls(tokenizer, batch):
    model = model_for(tokenizer, "condenser")
    m = masks(tokenizer, batch, 0.15, 0.15)
    out = model(batch["input_ids"], batch["attention_mask"], m.encoder, m.decoder, batch["token_type_ids"])
    out.decoder_loss.backward()
    layers = model.encoder.bert.encoder.layer
    # The head's loss reaches layers up to the early one (its token states) and the last one (via [CLS]).
    assert layers[0].output.dense.weight.grad.abs().sum() > 0
    assert layers[3].output.dense.weight.grad.abs().sum() > 0
    assert torch.isfinite(out.loss)


def test_decoder_embeddings_get_no_segment_ids(tokenizer, batch):
    """As the reference RLM: the decoder's token embeddings use segment 0 even for passage tokens."""
    model = model_for(tokenizer, "enc-dec-mlm")
    ids = batch["input_ids"]
    cls = torch.zeros(ids.shape[0], model.encoder.config.hidden_size)
    with torch.no_grad():
        model.encoder.bert.embeddings.token_type_embeddings.weight[1].add_(5.0)
        a = model.decode(cls, ids, batch["attention_mask"])
        model.encoder.bert.embeddings.token_type_embeddings.weight[1].sub_(5.0)
        b = model.decode(cls, ids, batch["attention_mask"])
    assert torch.equal(a, b)
