"""Off-the-shelf sentence encoders (mean pooling, L2 norm, plain text): the MiniLM baseline.

:class:`MeanPoolingEncoder` is our fast path (plain torch: length-sorted batches padded only to their
longest member, no autograd), built to give the vectors Pyserini's ``AutoDocumentEncoder`` /
``AutoQueryEncoder`` give with ``pooling="mean", l2_norm=True`` (a test holds it to that). Pyserini's
own classes behind the same interface stay available as :class:`PyseriniMeanPoolingEncoder`; they run
each batch unsorted and with autograd on, which made the MiniLM row of ``make run`` cost ~5 minutes
on 2 cores.
"""

from __future__ import annotations

import numpy as np
import torch

from simlm_ir.data.corpus import NO_TITLE
from simlm_ir.encode.encoder import SimLMEncoder
from simlm_ir.modeling.checkpoints import resolve_checkpoint

PASSAGE_MAX_LENGTH = 256  # what our MiniLM row has always passed to Pyserini's AutoDocumentEncoder


def _plain_text(texts, titles) -> list[str]:
    """Pyserini's plain-text input: ``f"{title} {text}"`` when there is a title."""
    titles = titles if titles is not None else [None] * len(texts)
    return [t if not title or title == NO_TITLE else f"{title} {t}" for t, title in zip(texts, titles)]


class MeanPoolingEncoder(SimLMEncoder):
    """Mean of the last layer over real tokens, L2-normalised; queries and passages as plain text
    (no segment ids), passages cut at ``max_length`` tokens, queries at the tokenizer's limit."""

    def __init__(self, checkpoint: str, max_length: int = PASSAGE_MAX_LENGTH, **kwargs):
        super().__init__(checkpoint, passage_max_length=max_length, **kwargs)
        self.use_segments = False  # Pyserini's Auto encoders send no token_type_ids
        limit = min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings)
        self.query_max_length = limit

    def tokenize_passages(self, texts, titles=None, max_length=None) -> dict:
        return self.tokenizer(_plain_text(texts, titles), max_length=max_length or self.passage_max_length,
                              truncation=True, padding=False, return_attention_mask=False,
                              return_token_type_ids=False)

    def cls_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean-pooled (not [CLS]) L2-normalised vectors of a padded batch."""
        inputs = {k: v for k, v in batch.items() if k != "token_type_ids"}
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=-1)


class PyseriniMeanPoolingEncoder:
    """The same encoder through Pyserini's ``AutoDocumentEncoder`` / ``AutoQueryEncoder``
    (``pooling="mean", l2_norm=True``), with the interface our FAISS index builder uses."""

    def __init__(self, checkpoint: str, max_length: int = PASSAGE_MAX_LENGTH):
        from pyserini.encode import AutoDocumentEncoder, AutoQueryEncoder

        self.path = self.name = resolve_checkpoint(checkpoint)
        self.passage_max_length = max_length
        self.doc = AutoDocumentEncoder(self.path, device="cpu", pooling="mean", l2_norm=True)
        self.query = AutoQueryEncoder(self.path, device="cpu", pooling="mean", l2_norm=True)
        self.dim = int(self.doc.model.config.hidden_size)

    def encode_passages(self, texts, titles=None, batch_size=None):
        contents = _plain_text(texts, titles)
        bs = batch_size or 64
        return np.concatenate([self.doc.encode(contents[i:i + bs], max_length=self.passage_max_length)
                               for i in range(0, len(contents), bs)]).astype(np.float32)

    def encode_queries(self, queries):
        return np.stack([self.query.encode(q) for q in queries]).astype(np.float32)
