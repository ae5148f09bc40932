"""Whole-word masking: rates on real text, decoder ⊇ encoder, specials untouched, words kept whole."""

import importlib
import inspect
import re

import pytest
import torch

from simlm_ir.modeling.checkpoints import minilm_dir
from simlm_ir.modeling.masking import WholeWordMasker, extra_mask_rate

STDLIB_MODULES = ["json", "argparse", "collections", "functools", "pathlib", "logging", "subprocess", "tempfile",
                  "textwrap", "csv", "heapq", "bisect", "random", "statistics", "decimal", "fractions", "shutil",
                  "datetime", "calendar", "difflib", "pickle", "sqlite3", "threading", "zipfile", "inspect"]


def stdlib_paragraphs(min_words: int = 15) -> list[str]:
    """Real English prose: paragraphs of the docstrings of stdlib modules and their public classes."""
    paras = []
    for name in STDLIB_MODULES:
        mod = importlib.import_module(name)
        objs = [mod] + [v for k, v in sorted(vars(mod).items()) if not k.startswith("_") and inspect.isclass(v)]
        for obj in objs:
            for para in re.split(r"\n\s*\n", inspect.getdoc(obj) or ""):
                para = " ".join(para.split())
                if len(para.split()) >= min_words and ">>>" not in para and para not in paras:
                    paras.append(para)
    return paras


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


@pytest.fixture(scope="module")
def batch(tokenizer):
    paras = stdlib_paragraphs()[:80]
    assert len(paras) >= 60
    return tokenizer(["-"] * len(paras), text_pair=paras, max_length=144, truncation=True, padding=True,
                     return_tensors="pt")


def test_extra_rate_gives_the_decoder_rate():
    p = extra_mask_rate(0.3, 0.5)
    assert p == pytest.approx(0.2 / 0.7)
    assert 0.3 + (1 - 0.3) * p == pytest.approx(0.5)
    assert extra_mask_rate(0.15, 0.15) == 0.0
    with pytest.raises(ValueError):
        extra_mask_rate(0.5, 0.3)


def test_rates_on_real_text_and_decoder_contains_encoder(tokenizer, batch):
    masker = WholeWordMasker(tokenizer)
    g = torch.Generator().manual_seed(0)
    masks = masker.encoder_decoder_masks(batch["input_ids"], 0.3, 0.5, g, batch["attention_mask"])
    maskable = ~masker.special_positions(batch["input_ids"], batch["attention_mask"])
    n = int(maskable.sum())
    assert n > 4000
    assert masks.encoder[maskable].float().mean().item() == pytest.approx(0.30, abs=0.03)
    assert masks.decoder[maskable].float().mean().item() == pytest.approx(0.50, abs=0.03)
    assert not (masks.encoder & ~masks.decoder).any(), "every encoder-masked position is decoder-masked"
    # The extra mask is independent of the encoder's: among encoder-unmasked positions it hits 2/7.
    rest = maskable & ~masks.encoder
    assert masks.decoder[rest].float().mean().item() == pytest.approx(0.2 / 0.7, abs=0.03)


def test_special_tokens_and_padding_never_masked(tokenizer, batch):
    masker = WholeWordMasker(tokenizer)
    g = torch.Generator().manual_seed(1)
    everything = masker.mask(batch["input_ids"], 1.0, g, batch["attention_mask"])
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
    padding = batch["attention_mask"] == 0
    assert padding.any() and special.any()
    assert not everything[special | padding].any()
    assert everything[~special & ~padding].all()


def test_whole_words_are_masked_together(tokenizer, batch):
    """Cross-check against the tokenizer's own word boundaries (word_ids), not our ## rule."""
    masker = WholeWordMasker(tokenizer)
    g = torch.Generator().manual_seed(2)
    mask = masker.mask(batch["input_ids"], 0.3, g, batch["attention_mask"])
    multi_piece_words = 0
    for row in range(mask.shape[0]):
        words: dict[tuple, list[bool]] = {}
        for pos, key in enumerate(zip(batch.sequence_ids(row), batch.word_ids(row))):
            if key[1] is not None:
                words.setdefault(key, []).append(bool(mask[row, pos]))
        assert all(len(set(v)) == 1 for v in words.values()), f"row {row}: a word was partly masked"
        multi_piece_words += sum(1 for v in words.values() if len(v) > 1 and v[0])
    assert multi_piece_words > 20, "the sample must contain masked multi-piece words for this to mean anything"


def test_masks_reproducible_from_seed(tokenizer, batch):
    masker = WholeWordMasker(tokenizer)
    a = masker.mask(batch["input_ids"], 0.3, torch.Generator().manual_seed(5), batch["attention_mask"])
    b = masker.mask(batch["input_ids"], 0.3, torch.Generator().manual_seed(5), batch["attention_mask"])
    c = masker.mask(batch["input_ids"], 0.3, torch.Generator().manual_seed(6), batch["attention_mask"])
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_row_gets_exactly_its_share_of_tokens(tokenizer, batch):
    """Exact-count masking (as the reference collator): per row, the encoder masks round(0.3 L) of
    its L maskable tokens and the decoder adds round(2/7 of what is left); L is counted here from the
    tokenizer's special ids and the attention mask, not from the masker."""
    masker = WholeWordMasker(tokenizer)
    masks = masker.encoder_decoder_masks(batch["input_ids"], 0.3, 0.5, torch.Generator().manual_seed(3),
                                         batch["attention_mask"])
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids)) | (batch["attention_mask"] == 0)
    total_enc = total_dec = total = 0
    for row in range(batch["input_ids"].shape[0]):
        L = int((~special[row]).sum())
        enc = int(L * 0.3 + 0.5)
        dec = enc + int((L - enc) * (0.2 / 0.7) + 0.5)
        assert int(masks.encoder[row].sum()) == enc, f"row {row}: L={L}"
        assert int(masks.decoder[row].sum()) == dec, f"row {row}: L={L}"
        total_enc, total_dec, total = total_enc + enc, total_dec + dec, total + L
    # over the batch the rates are within rounding of 30% and 50% (a 7% error would be 2 points off)
    assert abs(total_enc / total - 0.30) < 0.005 and abs(total_dec / total - 0.50) < 0.005


def test_both_masks_follow_the_callers_generator_and_rate_bounds(tokenizer, batch):
    masker = WholeWordMasker(tokenizer)

    def pair(seed):
        return masker.encoder_decoder_masks(batch["input_ids"], 0.3, 0.5, torch.Generator().manual_seed(seed),
                                            batch["attention_mask"])

    a, b, c = pair(5), pair(5), pair(6)
    assert torch.equal(a.encoder, b.encoder) and torch.equal(a.decoder, b.decoder)
    assert not torch.equal(a.encoder, c.encoder) and not torch.equal(a.decoder & ~a.encoder, c.decoder & ~c.encoder)
    assert extra_mask_rate(0.0, 0.5) == 0.5 and extra_mask_rate(0.3, 1.0) == 1.0


def test_rows_with_nothing_or_one_word_to_mask_do_not_stop_the_rest(tokenizer):
    masker = WholeWordMasker(tokenizer)
    enc = tokenizer(["", "debian", "the package manager installs software"], padding=True, return_tensors="pt")
    m = masker.mask(enc["input_ids"], 1.0, torch.Generator().manual_seed(0), enc["attention_mask"])
    maskable = ~masker.special_positions(enc["input_ids"], enc["attention_mask"])
    assert not maskable[0].any() and maskable[1].any() and enc.word_ids(1).count(0) == int(maskable[1].sum())
    assert torch.equal(m, maskable)  # rate 1: every maskable token of every row, the 1-word row included
