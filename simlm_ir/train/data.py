"""Fine-tuning data: training files of (query, positives, mined negatives[, teacher scores]).

A training file is JSONL, one query per line (as Tevatron's)::

    {"query_id": "q1", "query": "text", "positives": ["d1"], "negatives": ["d7", "d3", ...],
     "teacher_scores": {"d1": 7.1, "d7": 1.2, ...}}      # teacher_scores only for distillation

Negatives are ranked (best first) and never contain a positive. Groups for a training step are
1 positive followed by ``n`` negatives sampled from the top of that list. In a distillation file
(written by ``python -m simlm_ir.train.teacher_scores``) the negatives are the teacher-scored pool,
and each epoch takes the next ``n`` of a shuffled copy of it (:func:`kd_group`), as the authors' code
cycles through its pool: every epoch sees new negatives, all of them scored.

Pre-training reads the whole corpus tokenized once into compact arrays (:class:`TokenizedCorpus`).

Also the data order every trainer shares (:class:`DataOrder`, :func:`derive_seed`): which examples
a step reads depends only on the seed and the step, so interrupted runs resume bit for bit.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from simlm_ir.data.corpus import iter_json_objects
from simlm_ir.data.datasets import iter_passages
from simlm_ir.data.trec import Run, ranked
from simlm_ir.errors import InputFormatError, SimLMIRError
from simlm_ir.util.io import atomic_write


@dataclass
class TrainExample:
    query_id: str
    query: str
    positives: list[str]
    negatives: list[str]
    teacher_scores: dict[str, float] = field(default_factory=dict)


def negatives_from_run(run: Run, qrels: Mapping[str, Mapping[str, int]], depth: int) -> dict[str, list[str]]:
    """Top-``depth`` documents of each query in ``run`` that are not judged relevant."""
    out = {}
    for qid, docs in run.items():
        positives = {d for d, r in qrels.get(qid, {}).items() if r > 0}
        out[qid] = [d for d, _ in ranked(docs)[:depth] if d not in positives]
    return out


def build_examples(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                   negatives: Mapping[str, Sequence[str]]) -> list[TrainExample]:
    """One example per query that has at least one relevant document."""
    examples = []
    for qid, text in queries.items():
        positives = sorted(d for d, r in qrels.get(qid, {}).items() if r > 0)
        if positives:
            examples.append(TrainExample(qid, text, positives, list(negatives.get(qid, []))))
    return examples


def write_train_file(examples: Iterable[TrainExample], path) -> Path:
    with atomic_write(path) as fh:
        for ex in examples:
            obj = {"query_id": ex.query_id, "query": ex.query, "positives": ex.positives, "negatives": ex.negatives}
            if ex.teacher_scores:
                obj["teacher_scores"] = ex.teacher_scores
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return Path(path)


def read_train_file(path, doc_ids: Iterable[str] | None = None) -> list[TrainExample]:
    """Read and validate a training file; unknown document ids are reported with file and line."""
    known = set(doc_ids) if doc_ids is not None else None
    examples = []
    for lineno, obj in iter_json_objects(path, 'a JSON object {"query_id", "query", "positives", "negatives"}'):
        missing = [k for k in ("query_id", "query", "positives", "negatives") if k not in obj]
        if missing:
            raise InputFormatError(path, lineno, f"missing field(s) {missing}")
        if not str(obj["query"]).strip():
            raise InputFormatError(path, lineno, f"query {obj['query_id']!r} is empty")
        if not obj["positives"]:
            raise InputFormatError(path, lineno, f"query {obj['query_id']!r} has no positive")
        if known is not None:
            unknown = [d for d in obj["positives"] + obj["negatives"] if d not in known]
            if unknown:
                raise InputFormatError(path, lineno, f"document id(s) not in the corpus: {unknown[:3]}")
        examples.append(TrainExample(str(obj["query_id"]), obj["query"], list(obj["positives"]),
                                     list(obj["negatives"]),
                                     {k: float(v) for k, v in obj.get("teacher_scores", {}).items()}))
    if not examples:
        raise InputFormatError(path, None, "no training examples")
    return examples


def sample_group(ex: TrainExample, n_negatives: int, rng: random.Random, all_doc_ids: Sequence[str],
                 top: int | None = None) -> list[str]:
    """1 positive then ``n_negatives`` negatives, drawn from the top ``top`` mined ones.

    With teacher scores, negatives are drawn only among scored documents. When too few mined
    negatives exist, random corpus documents (never a positive) fill the group.
    """
    pos = rng.choice(ex.positives)
    pool = ex.negatives[:top] if top else ex.negatives
    if ex.teacher_scores:
        pool = [d for d in pool if d in ex.teacher_scores]
    negs = rng.sample(pool, n_negatives) if len(pool) >= n_negatives else list(pool)
    positives = set(ex.positives)
    while len(negs) < n_negatives:
        d = all_doc_ids[rng.randrange(len(all_doc_ids))]
        if d not in positives and d not in negs:
            negs.append(d)
    return [pos, *negs]


def kd_pool(ex: TrainExample) -> list[str]:
    """The negatives of a distillation example the teacher has scored, in file order."""
    return [d for d in ex.negatives if d in ex.teacher_scores]


def kd_group(ex: TrainExample, index: int, n_negatives: int, epoch: int, seed: int) -> list[str]:
    """Distillation group of example ``index`` in ``epoch``: 1 positive + ``n_negatives`` scored ones.

    The scored pool is shuffled once per (seed, example); epoch ``e`` reads its next ``n_negatives``
    items, wrapping around (the authors' ``offset * negative_size`` slicing), so successive epochs
    see disjoint negatives until the pool is used up, and a pool smaller than the group repeats
    items rather than bringing in documents the teacher never scored. Positives rotate the same way.
    Pure function of its arguments: a resumed run draws the same groups.
    """
    pool = kd_pool(ex)
    if not pool:
        raise SimLMIRError(f"query {ex.query_id!r} has no teacher-scored negative; rerun "
                           "python -m simlm_ir.train.teacher_scores with --negatives/--random-negatives > 0")
    order = np.random.default_rng(derive_seed(seed, 4, index)).permutation(len(pool))
    start = epoch * n_negatives
    negs = [pool[order[(start + i) % len(pool)]] for i in range(n_negatives)]
    positives = [d for d in ex.positives if d in ex.teacher_scores] or ex.positives
    return [positives[epoch % len(positives)], *negs]


def teacher_matrix(examples: Sequence[TrainExample], groups: Sequence[Sequence[str]]) -> list[list[float]]:
    """The teacher's raw logits for each group, in group order (what the KD loss compares against).

    Every document of a group must carry a teacher score: :func:`kd_group` draws only scored ones,
    and an unscored document here is a bug, not a value to guess.
    """
    out = []
    for ex, group in zip(examples, groups):
        missing = [d for d in group if d not in ex.teacher_scores]
        if missing:
            raise SimLMIRError(f"query {ex.query_id!r}: no teacher score for {missing[:3]}")
        out.append([ex.teacher_scores[d] for d in group])
    return out


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from (seed, purpose, step, ...): independent streams with no shared state."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)[0] >> 1)


class DataOrder:
    """Example indices for any (micro-batch, rank): epoch-wise permutations seeded by (seed, epoch).

    Like DistributedSampler, ranks read disjoint, interleaved slices of one global order, so the data
    a step sees depends only on the seed and the step, never on how the run was interrupted.
    """

    def __init__(self, n: int, seed: int, batch_size: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.batch_size, self.rank, self.world = n, seed, batch_size, rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng(derive_seed(self.seed, 1, epoch)).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, micro_batch: int) -> list[int]:
        return [i for i, _ in self.indices_with_epochs(micro_batch)]

    def indices_with_epochs(self, micro_batch: int) -> list[tuple[int, int]]:
        """(example index, epoch it is read in) for this micro-batch: the epoch picks KD negatives."""
        start = (micro_batch * self.world + self.rank) * self.batch_size
        return [(int(self._perm(g // self.n)[g % self.n]), g // self.n)
                for g in range(start, start + self.batch_size)]


# -- pre-training: the tokenized corpus ------------------------------------------------------------


@dataclass
class TokenizedCorpus:
    """All passages tokenized once, stored flat (ids, token types) with per-passage offsets.

    Compact on purpose, because pre-training holds the whole tokenized corpus in memory: 2 bytes per
    token id (uint16 when the vocabulary fits, as BERT's 30,522 does; else int32) + 1 byte per token
    type + 8 bytes per passage. MS MARCO's 8.8M passages at SimLM's 144-token cap (~75 tokens on
    average) take ~2 GB (twice that for a moment while the chunks are joined); larger corpora need more
    RAM or a subset.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.type_ids[a:b]

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.type_ids.nbytes + self.offsets.nbytes


def tokenize_corpus(corpus, tokenizer, max_length: int) -> TokenizedCorpus:
    """Tokenize every passage of ``corpus``; InputFormatError (file:line) for bad files or no passages."""
    tokenized = tokenize_passages(iter_passages(corpus), tokenizer, max_length)
    if not len(tokenized):
        raise InputFormatError(corpus, None, "corpus holds no passages")
    return tokenized


def tokenize_passages(passages, tokenizer, max_length: int, chunk: int = 2000) -> TokenizedCorpus:
    """Tokenize passages as SimLM encodes them: ``tokenizer(title, text_pair=text)``, truncated.

    Streams ``passages`` and keeps only the compact arrays (one per ``chunk`` passages, joined at the end).
    """
    id_dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32
    ids, types, lengths = [], [], []

    def flush(batch):
        enc = tokenizer([p.title for p in batch], text_pair=[p.text for p in batch], max_length=max_length,
                        truncation=True, return_token_type_ids=True, return_attention_mask=False)
        lens = np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(batch))
        total = int(lens.sum())
        ids.append(np.fromiter(itertools.chain.from_iterable(enc["input_ids"]), dtype=id_dtype, count=total))
        types.append(np.fromiter(itertools.chain.from_iterable(enc["token_type_ids"]), dtype=np.uint8, count=total))
        lengths.append(lens)

    batch = []
    for passage in passages:
        batch.append(passage)
        if len(batch) == chunk:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not lengths:
        return TokenizedCorpus(np.zeros(0, id_dtype), np.zeros(0, np.uint8), np.zeros(1, np.int64))
    all_lengths = np.concatenate(lengths)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    return TokenizedCorpus(np.concatenate(ids), np.concatenate(types), offsets)


def collate(corpus: TokenizedCorpus, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of passages to its longest member."""
    examples = [corpus.example(i) for i in indices]
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(examples), length), dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, (ids, tt) in enumerate(examples):
        input_ids[row, :len(ids)] = torch.from_numpy(ids.astype(np.int64))
        token_type_ids[row, :len(ids)] = torch.from_numpy(tt.astype(np.int64))
        attention_mask[row, :len(ids)] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
