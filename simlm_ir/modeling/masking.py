"""Whole-word masking for SimLM's two corrupted copies of a passage.

The encoder copy masks whole words covering 30% of a passage's tokens; the decoder copy 50% in total:
the encoder's mask plus an extra mask over the remaining tokens at p = (0.5 - 0.3) / (1 - 0.3), so
every position corrupted for the encoder is corrupted for the decoder too. A word is a WordPiece
token plus its ``##`` continuations; special tokens (and padding) are never masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def extra_mask_rate(encoder_rate: float, decoder_rate: float) -> float:
    """Rate of the independent extra mask whose union with the encoder mask has ``decoder_rate``."""
    if not 0.0 <= encoder_rate <= decoder_rate <= 1.0:
        raise ValueError(f"mask rates must satisfy 0 <= encoder ({encoder_rate}) <= decoder ({decoder_rate}) <= 1")
    if encoder_rate >= 1.0:
        return 0.0
    return (decoder_rate - encoder_rate) / (1.0 - encoder_rate)


@dataclass(frozen=True)
class MaskPair:
    """Boolean masks (True = corrupt this position) for the encoder and the decoder copy."""

    encoder: torch.Tensor
    decoder: torch.Tensor


class WholeWordMasker:
    """Draws whole-word masks for batches of token ids produced by a WordPiece tokenizer."""

    def __init__(self, tokenizer):
        vocab_size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
        tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
        # Lookup tables over the vocabulary, so marking a batch is one gather, not a Python loop.
        self.is_continuation = torch.tensor([bool(t) and t.startswith("##") for t in tokens], dtype=torch.bool)
        self.is_special = torch.zeros(vocab_size, dtype=torch.bool)
        self.is_special[sorted(set(tokenizer.all_special_ids))] = True

    def special_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """True where a position holds a special token or padding (never masked, never a label)."""
        special = self.is_special.to(input_ids.device)[input_ids]
        if attention_mask is not None:
            special = special | (attention_mask == 0)
        return special

    def word_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-position word index within its row (0, 1, ...), or -1 for special tokens and padding."""
        special = self.special_positions(input_ids, attention_mask)
        starts = ~self.is_continuation.to(input_ids.device)[input_ids] & ~special
        words = torch.cumsum(starts.long(), dim=1) - 1
        return words.masked_fill(special, -1)

    def mask(self, input_ids: torch.Tensor, rate: float, generator: torch.Generator | None = None,
             attention_mask: torch.Tensor | None = None, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Mask whole words covering round(L * ``rate``) of each row's L maskable tokens; a bool mask.

        As the reference collator does: words are visited in a random order and taken while they fit
        the budget (a word that would overshoot it is skipped), so a row gets exactly its share of
        masked tokens whenever the word lengths allow, not a Bernoulli number of them. Positions in
        ``exclude`` (whole words already masked elsewhere) are neither counted in L nor chosen.
        """
        words = self.word_ids(input_ids, attention_mask).cpu()
        allowed = words >= 0
        if exclude is not None:
            allowed &= ~exclude.cpu()
        out = torch.zeros(words.shape, dtype=torch.bool)
        for row in range(words.shape[0]):
            w, ok = words[row], allowed[row]
            n_words = int(w.max()) + 1
            if n_words <= 0 or not ok.any():
                continue
            sizes = torch.bincount(w[ok], minlength=n_words).tolist()
            budget = int(sum(sizes) * rate + 0.5)  # round half up, the same on every platform
            # Drawn on CPU from the caller's generator, so masks do not depend on the device.
            order = torch.randperm(n_words, generator=generator).tolist()
            chosen = torch.zeros(n_words, dtype=torch.bool)
            covered = 0
            for word in order:
                if covered >= budget:
                    break
                size = sizes[word]
                if size and covered + size <= budget:
                    chosen[word] = True
                    covered += size
            out[row] = chosen[w.clamp(min=0)] & ok
        return out.to(input_ids.device)

    def encoder_decoder_masks(self, input_ids: torch.Tensor, encoder_rate: float = 0.3, decoder_rate: float = 0.5,
                              generator: torch.Generator | None = None,
                              attention_mask: torch.Tensor | None = None) -> MaskPair:
        """The encoder mask at ``encoder_rate`` and the decoder mask (a superset) at ``decoder_rate``."""
        extra = extra_mask_rate(encoder_rate, decoder_rate)
        encoder = self.mask(input_ids, encoder_rate, generator, attention_mask)
        # The extra mask takes its share of the tokens the encoder left, so the union holds
        # round(L * encoder_rate) + round((L - that) * extra) ~= L * decoder_rate tokens.
        decoder = encoder | self.mask(input_ids, extra, generator, attention_mask, exclude=encoder)
        return MaskPair(encoder=encoder, decoder=decoder)
