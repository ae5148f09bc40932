"""Inference that only needs the last layer's [CLS]: that layer computed for [CLS] alone.

A SimLM vector is the last-layer [CLS], and a BERT cross-encoder's logit comes from the pooler over
the last-layer [CLS]. The other positions of the last layer feed nothing: in that layer [CLS]
still attends to every token's key and value (computed from the layer's input, which every token
needs), but the query projection, the attention output, the feed-forward block and the layer norms
are needed for one position instead of all. Per token a layer costs 12 h^2 multiply-adds (4 h^2
for the four projections, 8 h^2 for the feed-forward), and the last layer keeps 2 h^2 of them
(keys and values), so a 6-layer encoder does ~14% less arithmetic; measured on the embedded
collection's passages, see ``docs/benchmark.md``.

:func:`cls_only_last_layer` swaps the model's last layer for :class:`CLSOnlyLayer` for the length of
a ``with`` block (inference only): the same submodules and weights of the transformers layer are
called, and the model then returns a last hidden state of length 1, the [CLS] row. The result equals
the full forward's [CLS] up to float rounding (a 1-row product is summed in another order than the
same row inside a larger one): ``tests/test_cls_only.py`` checks both the vectors and the rankings.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

# Families whose encoder output is read at [CLS] by our encoders and by their sequence-classification
# heads (BERT's pooler, ELECTRA's and RoBERTa's classifier all take position 0).
MODEL_TYPES = ("bert", "electra", "roberta", "xlm-roberta")
# Attention implementations whose layer masks torch's SDPA takes as they are: a (batch, 1, query, key)
# bool or additive mask, or None. flex_attention passes a BlockMask and flash_attention_2 a 2-D mask.
ATTENTION = ("sdpa", "eager")


class CLSOnlyLayer(nn.Module):
    """A BERT-family layer (BERT, ELECTRA, RoBERTa: ``attention.self``, ``attention.output``,
    ``intermediate``, ``output``) evaluated for position 0 only; returns (batch, 1, hidden)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        attention = self.layer.attention
        heads = attention.self
        batch, length, _ = hidden_states.shape
        size = heads.attention_head_size
        cls = hidden_states[:, :1]
        query = heads.query(cls).view(batch, 1, -1, size).transpose(1, 2)
        key = heads.key(hidden_states).view(batch, length, -1, size).transpose(1, 2)
        value = heads.value(hidden_states).view(batch, length, -1, size).transpose(1, 2)
        mask = attention_mask
        if mask is not None and mask.dim() == 4 and mask.shape[2] > 1:
            mask = mask[:, :, :1]  # the [CLS] row of a (batch, 1, query, key) mask
        context = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                                             scale=heads.scaling)
        context = context.transpose(1, 2).reshape(batch, 1, -1)
        attended = attention.output(context, cls)
        return self.layer.output(self.layer.intermediate(attended), attended)


def _layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, model.base_model_prefix, model) if hasattr(model, "base_model_prefix") else model
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise TypeError(f"{type(model).__name__} has no encoder.layer list (not a BERT-family model)")
    return layers


def supports_cls_only(model: nn.Module) -> bool:
    """Whether :func:`cls_only_last_layer` applies: an encoder of :data:`MODEL_TYPES` with
    :data:`ATTENTION` (not a decoder, no cross-attention) whose last layer has the submodules
    :class:`CLSOnlyLayer` calls."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in MODEL_TYPES \
            or getattr(config, "_attn_implementation", "eager") not in ATTENTION \
            or getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    try:
        last = _layers(model)[-1]
    except TypeError:
        return False
    heads = getattr(getattr(last, "attention", None), "self", None)
    return all(hasattr(heads, n) for n in ("query", "key", "value", "attention_head_size", "scaling")) \
        and all(hasattr(last, n) for n in ("intermediate", "output")) and hasattr(last.attention, "output")


@contextlib.contextmanager
def cls_only_last_layer(model: nn.Module, enabled: bool = True):
    """Within the block, ``model``'s last layer computes position 0 only (see the module docstring);
    the original layer is put back afterwards, also on error. A no-op when not ``enabled``, in
    training mode (every position's gradient may matter), or for a model :func:`supports_cls_only`
    rejects. Not thread-safe: the swap is visible to every user of ``model`` during the block. Inside
    it, ``output_hidden_states`` lists one state fewer (transformers records them by layer class)."""
    if not enabled or model.training or not supports_cls_only(model):
        yield
        return
    layers = _layers(model)
    original = layers[-1]
    layers[-1] = CLSOnlyLayer(original)
    try:
        yield
    finally:
        layers[-1] = original
