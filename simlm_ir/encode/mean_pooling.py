"""Off-the-shelf sentence encoders (mean pooling, L2 norm) through Pyserini's Auto encoders, with
the interface our FAISS index builder and searcher use (the MiniLM baseline)."""

from __future__ import annotations

import numpy as np

from simlm_ir.modeling.checkpoints import resolve_checkpoint


class MeanPoolingEncoder:
    """A sentence-transformers style encoder (mean pooling, L2 norm, plain text) via Pyserini's
    Auto encoders, exposing the interface our FAISS index builder uses."""

    def __init__(self, checkpoint: str, max_length: int = 256):
        from pyserini.encode import AutoDocumentEncoder, AutoQueryEncoder

        self.path = self.name = resolve_checkpoint(checkpoint)
        self.passage_max_length = max_length
        self.doc = AutoDocumentEncoder(self.path, device="cpu", pooling="mean", l2_norm=True)
        self.query = AutoQueryEncoder(self.path, device="cpu", pooling="mean", l2_norm=True)
        self.dim = int(self.doc.model.config.hidden_size)

    def encode_passages(self, texts, titles=None, batch_size=None):
        titles = titles or [None] * len(texts)
        contents = [t if not title or title == "-" else f"{title} {t}" for t, title in zip(texts, titles)]
        bs = batch_size or 64
        return np.concatenate([self.doc.encode(contents[i:i + bs], max_length=self.passage_max_length)
                               for i in range(0, len(contents), bs)]).astype(np.float32)

    def encode_queries(self, queries):
        return np.stack([self.query.encode(q) for q in queries]).astype(np.float32)
