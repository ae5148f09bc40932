r"""SimLM query and passage encoders: the exact SimLM input format, [CLS] pooling, L2 norm.

:class:`SimLMEncoder` is the plain-torch core used by our index builder and searcher (importing it
does not start Pyserini's JVM). :class:`SimLMQueryEncoder` and :class:`SimLMDocumentEncoder` are the
Pyserini ``QueryEncoder`` / ``DocumentEncoder`` subclasses over it; they are built on first access,
so ``from simlm_ir.encode.simlm import SimLMQueryEncoder`` imports ``pyserini.encode`` only then.

Choosing our classes from Pyserini's command lines (its ``--encoder-class`` choices are fixed):
any ``--encoder`` value containing ``simlm`` picks them by Pyserini's substring rule, and a
``simlm:`` prefix forces them for any checkpoint, e.g. ``--encoder simlm:/path/to/ckpt`` or
``--encoder simlm:minilm``; our constructors strip the prefix. ``simlm`` is registered *before*
Pyserini's own keywords (``dpr``, ``ance``, ``auto``...), so a path such as
``/data/performance/simlm-ckpt`` still gets our classes. Example (``--dimension`` must be the model's
hidden size: 768 for SimLM base, 384 for MiniLM; ``--fields title text`` in *both* sections feeds
titles)::

    python -m pyserini.encode input --corpus corpus.jsonl --fields title text \
        output --embeddings indexes/simlm --to-faiss \
        encoder --encoder simlm:/path/to/ckpt --fields title text --dimension 768 --device cuda:0
    python -m pyserini.search.faiss --index indexes/simlm --topics topics.tsv \
        --encoder simlm:/path/to/ckpt --output run.trec --batch-size 64 --threads 4
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Sequence

import numpy as np
import torch

from simlm_ir.checkpoints import check_bert_like, resolve_checkpoint
from simlm_ir.corpus import NO_TITLE
from simlm_ir.errors import CheckpointError

QUERY_MAX_LENGTH = 32
PASSAGE_MAX_LENGTH = 144
SIMLM_PREFIX = "simlm:"
# pyserini.encode's --max-length default; it is not SimLM's passage length, so it is not honoured.
PYSERINI_DEFAULT_MAX_LENGTH = 256
CPU_BATCH_TOKENS = 1024  # padded tokens per forward pass on CPU (measured ~1.2-1.3x faster than 64 x 144)
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def strip_simlm_prefix(name: str | os.PathLike) -> str:
    """``simlm:/path`` -> ``/path``; anything else unchanged."""
    name = str(name)
    return name[len(SIMLM_PREFIX):] if name.startswith(SIMLM_PREFIX) else name


def _resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device {device!r} requested but CUDA is not available; using cpu", stacklevel=3)
        return torch.device("cpu")
    return dev


class SimLMEncoder:
    """One shared BERT-like encoder for queries and passages, as SimLM uses it.

    Queries: plain text, at most ``query_max_length`` tokens. Passages:
    ``tokenizer(title, text_pair=text)`` with token_type_ids 0/1 and ``-`` as a missing title, at
    most ``passage_max_length`` tokens. Vector = last-layer [CLS], L2-normalised, float32.

    Inputs are tokenized without padding, sorted by length and run in batches padded only to the
    longest member, so little compute goes to padding; on CPU a batch also holds at most
    ``max_batch_tokens`` padded tokens (None: no limit). ``dtype`` ("float16"/"bfloat16") applies on
    GPU; ``quantize_int8`` applies dynamic int8 quantisation of the Linear layers on CPU.
    """

    def __init__(self, checkpoint: str | os.PathLike = "simlm", *, tokenizer: str | None = None,
                 device: str | None = None, dtype: str | None = None, batch_size: int = 64,
                 query_max_length: int = QUERY_MAX_LENGTH,
                 passage_max_length: int = PASSAGE_MAX_LENGTH,
                 threads: int | None = None, quantize_int8: bool = False,
                 max_batch_tokens: int | None = -1):
        from transformers import AutoModel, AutoTokenizer

        self.name = strip_simlm_prefix(checkpoint)
        self.path = resolve_checkpoint(self.name)
        check_bert_like(self.path)
        if threads:
            torch.set_num_threads(threads)
        self.device = _resolve_device(device)
        self.batch_size = batch_size
        # CPUs run faster on small batches (cache-sized); GPUs want full batches. -1 = pick by device.
        self.max_batch_tokens = (CPU_BATCH_TOKENS if self.device.type == "cpu" else None) \
            if max_batch_tokens == -1 else max_batch_tokens
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or self.path)
            model = AutoModel.from_pretrained(self.path)
        except OSError as exc:
            raise CheckpointError(f"{self.name}: cannot load checkpoint ({exc})") from None
        model_type = getattr(model.config, "model_type", "")
        if model_type not in ("bert", "electra", "roberta", "xlm-roberta"):
            raise CheckpointError(f"{self.name}: checkpoint is a {model_type!r} model; SimLM needs a "
                                  "BERT-like encoder (model_type 'bert' or 'electra')")
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # SimLM pools the last-layer [CLS]; the pooler is dead weight
        # Segment ids 0/1 are part of SimLM's passage format; RoBERTa-style models have one segment.
        self.use_segments = getattr(model.config, "type_vocab_size", 2) >= 2
        self.dim = int(model.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id or 0

        self.dtype = torch.float32
        self.model = model.to(self.device).eval()
        self.set_dtype(dtype)
        self.quantized = False
        if quantize_int8:
            if self.device.type != "cpu":
                raise ValueError("int8 dynamic quantisation is a CPU option; use dtype='float16' on GPU")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear},
                                                               dtype=torch.qint8)
            self.quantized = True
            self.model = model

    def set_dtype(self, dtype: str | None) -> None:
        """Run in ``float16``/``bfloat16`` on GPU (ignored on CPU, where it is slower)."""
        if dtype in (None, "float32"):
            return
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}")
        if self.device.type != "cuda":
            warnings.warn(f"dtype {dtype} is only used on GPU; encoding in float32 on cpu", stacklevel=2)
            return
        self.dtype = _DTYPES[dtype]
        self.model = self.model.to(dtype=self.dtype)

    def __repr__(self) -> str:
        return (f"SimLMEncoder({self.name!r}, dim={self.dim}, device={self.device}, "
                f"dtype={str(self.dtype).removeprefix('torch.')}, int8={self.quantized})")

    # -- tokenisation -----------------------------------------------------------------------
    def tokenize_queries(self, queries: Sequence[str]) -> dict:
        return self.tokenizer(list(queries), max_length=self.query_max_length, truncation=True,
                              padding=False, return_attention_mask=False)

    def tokenize_passages(self, texts: Sequence[str], titles: Sequence[str | None] | None = None,
                          max_length: int | None = None) -> dict:
        if titles is None:
            titles = [NO_TITLE] * len(texts)
        elif len(titles) != len(texts):
            raise ValueError(f"{len(titles)} titles for {len(texts)} passages")
        titles = [t if t and t.strip() else NO_TITLE for t in titles]
        texts = [t if t is not None else "" for t in texts]
        return self.tokenizer(titles, text_pair=texts, max_length=max_length or self.passage_max_length,
                              truncation="longest_first", padding=False, return_attention_mask=False,
                              return_token_type_ids=True)

    # -- encoding ---------------------------------------------------------------------------
    def encode_queries(self, queries: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """L2-normalised [CLS] vectors of plain-text queries, shape (n, dim), float32."""
        if len(queries) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        enc = self.tokenize_queries(queries)
        return self._encode_ids(enc["input_ids"], None, batch_size)

    def encode_passages(self, texts: Sequence[str], titles: Sequence[str | None] | None = None,
                        batch_size: int | None = None, max_length: int | None = None) -> np.ndarray:
        """L2-normalised [CLS] vectors of (title, text) passage pairs, shape (n, dim), float32."""
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        enc = self.tokenize_passages(texts, titles, max_length)
        return self._encode_ids(enc["input_ids"], enc["token_type_ids"] if self.use_segments else None,
                                batch_size)

    def _micro_batches(self, lengths: np.ndarray, batch_size: int):
        """Index groups over length-sorted inputs: at most ``batch_size`` rows and, when set,
        ``max_batch_tokens`` padded tokens (short inputs go in bigger batches, long in smaller)."""
        order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows up at once
        budget = self.max_batch_tokens
        start = 0
        while start < len(order):
            width = int(lengths[order[start]])
            rows = batch_size if not budget else max(1, min(batch_size, budget // max(width, 1)))
            yield order[start:start + rows], width
            start += rows

    def pad(self, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]] | None = None
            ) -> dict[str, torch.Tensor]:
        """Right-pad a batch of token id lists to its longest member, as model inputs on our device."""
        width = max(len(x) for x in input_ids)
        ids = np.full((len(input_ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(input_ids), width), dtype=np.int64)
        types = np.zeros((len(input_ids), width), dtype=np.int64)
        for row, x in enumerate(input_ids):
            ids[row, :len(x)] = x
            mask[row, :len(x)] = 1
            if token_type_ids is not None and self.use_segments:
                types[row, :len(x)] = token_type_ids[row]
        return {"input_ids": torch.from_numpy(ids).to(self.device),
                "attention_mask": torch.from_numpy(mask).to(self.device),
                "token_type_ids": torch.from_numpy(types).to(self.device)}

    def cls_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L2-normalised last-layer [CLS] of a padded batch (differentiable: used for training)."""
        hidden = self.model(**batch).last_hidden_state
        return torch.nn.functional.normalize(hidden[:, 0].float(), p=2, dim=-1)

    def _encode_ids(self, input_ids: list[list[int]], token_type_ids: list[list[int]] | None,
                    batch_size: int | None) -> np.ndarray:
        n = len(input_ids)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=n)
        with torch.inference_mode():
            for idx, _ in self._micro_batches(lengths, batch_size or self.batch_size):
                batch = self.pad([input_ids[i] for i in idx],
                                 None if token_type_ids is None else [token_type_ids[i] for i in idx])
                out[idx] = self.cls_vectors(batch).cpu().numpy()
        return out


# -- Pyserini classes ---------------------------------------------------------------------------
# Built lazily (PEP 562 module __getattr__): importing pyserini.encode costs ~10 s and starts a JVM,
# which our own indexing and search never need. When pyserini.encode is imported first, the start-up
# hook asks for these classes right after it finishes, and they are built then.

_PYSERINI_NAMES = ("SimLMQueryEncoder", "SimLMDocumentEncoder")


def _build_pyserini_classes() -> None:
    import pyserini.encode as pe  # may re-enter this function through the start-up hook

    if "SimLMQueryEncoder" in globals():
        return  # built by the re-entrant call

    class SimLMQueryEncoder(pe.QueryEncoder):
        """Pyserini query encoder for SimLM checkpoints (plain text, max 32 tokens, [CLS], L2).

        Takes the arguments ``pyserini.search.faiss`` passes (``encoder_dir, tokenizer_name,
        device, prefix, fp16`` and, for some ``--encoder`` values, ``pooling, l2_norm,
        multimodal``...); pooling and normalisation are fixed by SimLM, so those are ignored.
        """

        def __init__(self, encoder_dir: str | None = None, tokenizer_name: str | None = None,
                     encoded_query_dir: str | None = None, device: str | None = "cpu",
                     prefix: str | None = None, fp16: bool = False, bf16: bool = False,
                     max_length: int = QUERY_MAX_LENGTH, batch_size: int = 64,
                     threads: int | None = None, quantize_int8: bool = False, **_ignored):
            super().__init__(encoded_query_dir)
            self.prefix = prefix
            self.encoder = None
            if encoder_dir:
                self.encoder = SimLMEncoder(
                    encoder_dir, tokenizer=tokenizer_name, device=device,
                    dtype="float16" if fp16 else "bfloat16" if bf16 else None, batch_size=batch_size,
                    query_max_length=max_length, threads=threads, quantize_int8=quantize_int8)
                self.has_model = True
            if not self.has_model and not self.has_encoded_query:
                raise CheckpointError("SimLMQueryEncoder needs a checkpoint (encoder_dir) or encoded queries")

        @property
        def dim(self) -> int:
            return self.encoder.dim

        def _with_prefix(self, queries):
            return [f"{self.prefix} {q}" for q in queries] if self.prefix else list(queries)

        def encode(self, query: str, **_ignored) -> np.ndarray:
            """One query -> 1-D float32 vector (what ``FaissSearcher.search`` expects)."""
            if self.encoder is None:
                return super().encode(query)
            return self.encoder.encode_queries(self._with_prefix([query]))[0]

        def encode_batch(self, queries: Sequence[str], **_ignored) -> np.ndarray:
            """Many queries -> (n, dim) float32; used by ``FaissSearcher.batch_search``."""
            if self.encoder is None:
                return np.stack([super().encode(q) for q in queries])
            return self.encoder.encode_queries(self._with_prefix(queries))

    class SimLMDocumentEncoder(pe.DocumentEncoder):
        """Pyserini document encoder for SimLM checkpoints.

        Unlike Pyserini's ``AutoDocumentEncoder`` it keeps token_type_ids (0 title, 1 passage), uses
        ``-`` for a missing title, and always encodes (title, text) as a pair at SimLM's passage
        length (144): ``pyserini.encode``'s ``--max-length`` defaults to 256, which would silently
        change the input, so only a value passed to the constructor changes it; ``add_sep`` is
        ignored. Pass ``--fields title text`` to the ``encoder`` section to feed titles.
        """

        def __init__(self, model_name: str = "simlm", tokenizer_name: str | None = None,
                     device: str | None = "cpu", fp16: bool = False, bf16: bool = False,
                     max_length: int = PASSAGE_MAX_LENGTH, batch_size: int = 64,
                     threads: int | None = None, quantize_int8: bool = False, **_ignored):
            self.encoder = SimLMEncoder(
                model_name, tokenizer=tokenizer_name, device=device,
                dtype="float16" if fp16 else "bfloat16" if bf16 else None, batch_size=batch_size,
                passage_max_length=max_length, threads=threads, quantize_int8=quantize_int8)
            self.has_model = True
            self._warned_length = False

        @property
        def dim(self) -> int:
            return self.encoder.dim

        def encode(self, texts: Sequence[str], titles: Sequence[str | None] | None = None,
                   fp16: bool = False, max_length: int | None = None, add_sep: bool = False,
                   **_ignored) -> np.ndarray:
            if (max_length not in (None, PYSERINI_DEFAULT_MAX_LENGTH, self.encoder.passage_max_length)
                    and not self._warned_length):
                print(f"simlm_ir: SimLM passages use max length {self.encoder.passage_max_length}; "
                      f"ignoring max_length={max_length}", file=sys.stderr)
                self._warned_length = True
            if fp16 and self.encoder.dtype == torch.float32 and self.encoder.device.type == "cuda":
                self.encoder.set_dtype("float16")  # pyserini.encode passes --fp16 per call only
            return self.encoder.encode_passages(texts, titles)

    g = globals()
    g["SimLMQueryEncoder"] = SimLMQueryEncoder
    g["SimLMDocumentEncoder"] = SimLMDocumentEncoder
    for cls in (SimLMQueryEncoder, SimLMDocumentEncoder):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    # Registration is normally done by the start-up hook; do it here too in case the hook is absent.
    from simlm_ir.encode import pyserini_registry

    pyserini_registry.register(pe)


def __getattr__(name: str):
    if name in _PYSERINI_NAMES:
        _build_pyserini_classes()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PYSERINI_NAMES))
