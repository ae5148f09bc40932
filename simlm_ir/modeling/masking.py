"""Whole-word masking for SimLM's two corrupted copies of a passage.

The encoder copy masks whole words at 30%; the decoder copy masks 50% in total: the encoder's mask
plus an extra independent mask at p = (0.5 - 0.3) / (1 - 0.3), so every position corrupted for the
encoder is corrupted for the decoder too. A word is a WordPiece token plus its ``##`` continuations;
special tokens (and padding) are never masked.
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
             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Select each whole word independently with probability ``rate``; returns a bool mask."""
        words = self.word_ids(input_ids, attention_mask)
        batch, length = input_ids.shape
        # One uniform draw per (row, word); every token of a word reads its word's draw.
        # Drawn on the generator's device (CPU in the data pipeline) so masks do not depend on the GPU.
        device = generator.device if generator is not None else input_ids.device
        draws = torch.rand(batch, length, generator=generator, device=device).to(input_ids.device)
        picked = draws < rate
        return torch.gather(picked, 1, words.clamp(min=0)) & (words >= 0)

    def encoder_decoder_masks(self, input_ids: torch.Tensor, encoder_rate: float = 0.3, decoder_rate: float = 0.5,
                              generator: torch.Generator | None = None,
                              attention_mask: torch.Tensor | None = None) -> MaskPair:
        """The encoder mask at ``encoder_rate`` and the decoder mask (a superset) at ``decoder_rate``."""
        extra = extra_mask_rate(encoder_rate, decoder_rate)
        encoder = self.mask(input_ids, encoder_rate, generator, attention_mask)
        decoder = encoder | self.mask(input_ids, extra, generator, attention_mask)
        return MaskPair(encoder=encoder, decoder=decoder)
