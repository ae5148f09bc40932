"""RLM generators: frozen samplers that fill the masked positions of a corrupted copy with sampled
tokens (a masked-LM checkpoint such as ELECTRA's generator, or a unigram ablation)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from simlm_ir.errors import CheckpointError
from simlm_ir.modeling.checkpoints import quiet_transformers, resolve_checkpoint


class Generator(nn.Module):
    """A frozen sampler of replacement tokens for masked positions."""

    def __init__(self, special_ids: list[int]):
        super().__init__()
        # Replacements never introduce [CLS]/[SEP]/[PAD]/...: they would change the passage's structure.
        self.register_buffer("special_ids", torch.tensor(sorted(set(special_ids)), dtype=torch.long),
                             persistent=False)

    def describe(self) -> dict:
        """What this generator is, for the run config."""
        raise NotImplementedError

    def fill(self, input_ids, attention_mask, token_type_ids, mask, rng: torch.Generator | None = None,
             uniforms: torch.Tensor | None = None):
        """``input_ids`` with every ``mask``-ed position replaced by a sampled token.

        ``uniforms`` (same shape as ``input_ids``, values in [0, 1)): one draw per position, turned
        into a token by inverse-CDF sampling. A position's token then depends only on its own draw
        and distribution, not on which other rows share the batch, which is what makes a
        multi-process run sample what one process would. Without it, ``rng`` drives multinomial.
        """
        raise NotImplementedError

    def train(self, mode: bool = True):
        # Always frozen: dropout off, so a sample depends only on the input and the RNG.
        return super().train(False)


def _sample(logits: torch.Tensor, rng: torch.Generator | None, u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row, drawn from softmax(logits) — sampling, not argmax (``u``: inverse CDF)."""
    probs = torch.softmax(logits.float(), dim=-1)
    if u is not None:
        return _inverse_cdf(probs, u)
    return torch.multinomial(probs, 1, generator=rng).squeeze(-1)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Token per draw: the first whose cumulative probability exceeds the draw (zero-probability
    tokens, e.g. the special ones, are never chosen: their bins are empty). ``probs``: (n, V), one
    distribution per draw, or (V,) shared by all ``n`` draws."""
    cdf = torch.cumsum(probs, dim=-1)
    u = u.to(cdf.device, cdf.dtype).clamp(min=1e-12)
    if cdf.dim() == 1:
        idx = torch.searchsorted(cdf, u * cdf[-1])
    else:
        idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1)
    return idx.clamp(max=cdf.shape[-1] - 1)


class MLMGenerator(Generator):
    """A masked-LM checkpoint (ELECTRA generator in the paper) run on [MASK]-ed input."""

    def __init__(self, model: nn.Module, mask_token_id: int, special_ids: list[int], source: dict):
        super().__init__(special_ids)
        self.model = model
        self.mask_token_id = mask_token_id
        self.source = source
        self.model.requires_grad_(False)
        self.model.eval()

    @classmethod
    def from_pretrained(cls, name_or_path, tokenizer, source: dict | None = None) -> "MLMGenerator":
        from transformers import AutoModelForMaskedLM

        fallback = ("without a generator checkpoint use --generator mlm-warmup (train a small one first) "
                    "or --generator unigram (ablation)")
        try:
            path = resolve_checkpoint(name_or_path)
        except CheckpointError as exc:
            raise CheckpointError(f"generator: {exc}; {fallback}") from None
        try:
            with quiet_transformers():
                model = AutoModelForMaskedLM.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot load the generator as a masked LM ({exc}); {fallback}") from None
        if model.config.vocab_size < len(tokenizer):
            raise CheckpointError(f"{path}: generator vocabulary ({model.config.vocab_size}) does not cover the "
                                  f"encoder tokenizer's {len(tokenizer)} tokens")
        gen_vocab = _local_vocab(path)
        if gen_vocab is not None and gen_vocab != tokenizer.get_vocab():
            raise CheckpointError(f"{path}: generator tokenizer differs from the encoder's; "
                                  "they must share a vocabulary")
        return cls(model, tokenizer.mask_token_id, tokenizer.all_special_ids,
                   source or {"kind": "checkpoint", "path": str(path)})

    def describe(self) -> dict:
        return dict(self.source)

    def _head(self):
        """The MLM head as a function of hidden states, for the architectures we know (else None)."""
        m = self.model
        if hasattr(m, "cls") and hasattr(m, "bert"):  # BERT
            return m.cls
        if hasattr(m, "generator_predictions") and hasattr(m, "generator_lm_head"):  # ELECTRA (the paper's)
            return lambda h: m.generator_lm_head(m.generator_predictions(h))
        return None

    @torch.no_grad()
    def fill(self, input_ids, attention_mask, token_type_ids, mask, rng=None, uniforms=None):
        masked = input_ids.masked_fill(mask, self.mask_token_id)
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        head = self._head()
        if head is not None:
            # Vocabulary logits only at the masked positions: B x L x V floats per copy is most of the cost.
            base = getattr(self.model, self.model.base_model_prefix)
            hidden = base(input_ids=masked, attention_mask=attention_mask, **kwargs).last_hidden_state
            logits = head(hidden[mask])
        else:
            logits = self.model(input_ids=masked, attention_mask=attention_mask, **kwargs).logits[mask]
        logits[:, self.special_ids] = float("-inf")
        out = input_ids.clone()
        out[mask] = _sample(logits, rng, None if uniforms is None else uniforms[mask])
        return out


def _local_vocab(path) -> dict | None:
    p = Path(path)
    if not p.is_dir() or not any((p / f).exists() for f in ("vocab.txt", "tokenizer.json")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(p).get_vocab()
    except (OSError, ValueError):
        return None


class MaskFiller(Generator):
    """For the MLM-style ablations: masked positions become ``[MASK]`` (no sampled replacements)."""

    def __init__(self, mask_token_id: int, special_ids: list[int]):
        super().__init__(special_ids)
        self.mask_token_id = mask_token_id

    def describe(self) -> dict:
        return {"kind": "mask", "note": "masked positions replaced by [MASK] (MLM-style objectives)"}

    @torch.no_grad()
    def fill(self, input_ids, attention_mask, token_type_ids, mask, rng=None, uniforms=None):
        return input_ids.masked_fill(mask, self.mask_token_id)


class UnigramGenerator(Generator):
    """Ablation: replacements drawn from the corpus unigram distribution, ignoring context."""

    def __init__(self, counts: torch.Tensor, special_ids: list[int]):
        super().__init__(special_ids)
        probs = counts.double().clone()
        probs[self.special_ids] = 0
        if probs.sum() <= 0:
            raise ValueError("unigram generator needs at least one non-special token count")
        self.register_buffer("probs", (probs / probs.sum()).float())

    def describe(self) -> dict:
        return {"kind": "unigram", "ablation": True,
                "note": "replacements sampled from the corpus unigram distribution (no generator model)"}

    @torch.no_grad()
    def fill(self, input_ids, attention_mask, token_type_ids, mask, rng=None, uniforms=None):
        n = int(mask.sum())
        out = input_ids.clone()
        if n and uniforms is not None:
            out[mask] = _inverse_cdf(self.probs, uniforms[mask])
        elif n:
            out[mask] = torch.multinomial(self.probs, n, replacement=True, generator=rng)
        return out
