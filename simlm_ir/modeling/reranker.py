"""The cross-encoder re-ranker (SimLM's teacher): one logit for a (query, "title: passage") pair.

Input as SimLM's re-ranker: ``tokenizer(query, text_pair=f"{title}: {passage}", max_length=192)``.
Loads any sequence-classification checkpoint with one label (``intfloat/simlm-msmarco-reranker``
included) or starts a fresh 1-logit head on a BERT-like encoder (e.g. MiniLM).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from simlm_ir.data.trec import Run, ranked
from simlm_ir.errors import CheckpointError
from simlm_ir.modeling.checkpoints import check_bert_like, resolve_checkpoint
from simlm_ir.modeling.cls_only import cls_only_last_layer
from simlm_ir.util.device import resolve_device
from simlm_ir.util.progress import progress

RERANK_MAX_LENGTH = 192
CPU_BATCH_TOKENS = 2048  # padded tokens per forward pass on CPU


class CrossEncoder:
    def __init__(self, checkpoint: str | os.PathLike, device: str | None = None, max_length: int = RERANK_MAX_LENGTH,
                 batch_size: int = 64):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers import logging as hf_logging

        self.path = resolve_checkpoint(checkpoint)
        check_bert_like(self.path)
        self.device = resolve_device(device)
        self.max_length, self.batch_size = max_length, batch_size
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a fresh head on an encoder is expected, not a warning
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForSequenceClassification.from_pretrained(self.path, num_labels=1).to(self.device)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{checkpoint}: cannot load as a cross-encoder ({exc})") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        self.model.eval()
        self.cls_only = True  # score with the last layer computed for [CLS] alone (modeling.cls_only)

    def tokenize(self, queries: Sequence[str], titles: Sequence[str], texts: Sequence[str]) -> dict[str, torch.Tensor]:
        pairs = [f"{t}: {p}" for t, p in zip(titles, texts)]
        enc = self.tokenizer(list(queries), text_pair=pairs, max_length=self.max_length, truncation="only_second",
                             padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def logits(self, queries, titles, texts, buckets: int = 1) -> torch.Tensor:
        """One logit per pair, with gradient (training). ``buckets`` > 1 runs the pairs as that many
        length-sorted chunks, each padded to its own longest member: the same logits (padding is
        masked) for less compute when lengths vary; returned in input order."""
        if buckets <= 1 or len(queries) < 2 * buckets:
            return self.model(**self.tokenize(queries, titles, texts)).logits.squeeze(-1)
        ids, types = self._pair_ids(queries, titles, texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        parts = [self.model(**self._pad(ids, types, chunk)).logits.squeeze(-1)
                 for chunk in np.array_split(np.asarray(order), buckets)]
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.as_tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[inverse.to(parts[0].device)]

    def _pair_ids(self, queries, titles, texts) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids (and segment ids) of each pair, unpadded."""
        enc = self.tokenizer(list(queries), text_pair=[f"{t}: {p}" for t, p in zip(titles, texts)],
                             max_length=self.max_length, truncation="only_second", padding=False,
                             return_attention_mask=False)
        return enc["input_ids"], enc.get("token_type_ids")

    def _pad(self, ids, types, idx) -> dict[str, torch.Tensor]:
        """The pairs ``idx`` as one batch padded to its longest member, on the model's device."""
        width = max(len(ids[i]) for i in idx)
        pad = self.tokenizer.pad_token_id or 0
        batch = {"input_ids": torch.full((len(idx), width), pad, dtype=torch.long),
                 "attention_mask": torch.zeros((len(idx), width), dtype=torch.long)}
        if types is not None:
            batch["token_type_ids"] = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            batch["input_ids"][row, :len(ids[i])] = torch.tensor(ids[i])
            batch["attention_mask"][row, :len(ids[i])] = 1
            if types is not None:
                batch["token_type_ids"][row, :len(ids[i])] = torch.tensor(types[i])
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def score(self, queries: Sequence[str], titles: Sequence[str], texts: Sequence[str],
              on_batch: Callable[[int], object] | None = None) -> np.ndarray:
        """Logits of each (query, passage) pair.

        Pairs are tokenized once, sorted by length and run in batches padded only to their longest
        member; on CPU a batch also holds at most ``CPU_BATCH_TOKENS`` padded tokens (cache-sized
        batches run faster there). ``on_batch(n)`` is called after each forward pass (progress bars).
        """
        n = len(queries)
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        ids, types = self._pair_ids(queries, titles, texts)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")
        budget = CPU_BATCH_TOKENS if self.device.type == "cpu" else None
        start = 0
        with cls_only_last_layer(self.model, self.cls_only):  # the logit reads the last layer's [CLS] only
            while start < n:
                width = int(lengths[order[start]])
                rows = self.batch_size if not budget else max(1, min(self.batch_size, budget // width))
                idx = order[start:start + rows]
                out[idx] = self.model(**self._pad(ids, types, idx)).logits.squeeze(-1).float().cpu().numpy()
                if on_batch is not None:
                    on_batch(len(idx))
                start += rows
        return out

    def rerank(self, run: Run, queries: Mapping[str, str], docs: Mapping[str, tuple[str, str]],
               depth: int = 100) -> tuple[Run, list[float]]:
        """Re-score the top ``depth`` of each query; returns the new run and per-query latency (ms)."""
        new: Run = {}
        latencies = []
        for qid, hits in progress(run.items(), desc="re-rank", unit="q"):
            top = [d for d, _ in ranked(hits)[:depth]]
            start = time.perf_counter()
            scores = self.score([queries[qid]] * len(top), [docs[d][0] for d in top], [docs[d][1] for d in top])
            latencies.append((time.perf_counter() - start) * 1000)
            new[qid] = dict(zip(top, map(float, scores)))
        return new, latencies

    def save_pretrained(self, path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
