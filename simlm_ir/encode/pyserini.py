r"""SimLM as Pyserini encoders: ``SimLMQueryEncoder`` / ``SimLMDocumentEncoder`` (Pyserini's
``QueryEncoder`` / ``DocumentEncoder`` subclasses over :class:`~simlm_ir.encode.encoder.SimLMEncoder`)
and their registration in Pyserini's encoder class maps.

The classes are built on first access (PEP 562 module ``__getattr__``), so
``from simlm_ir.encode import SimLMQueryEncoder`` imports ``pyserini.encode`` only then.

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

Registration: Pyserini has no plugin mechanism; ``pyserini.encode`` / ``pyserini.search.faiss`` pick an
encoder class by *substring* of the ``--encoder`` value over the keys of its two encoder class maps,
first match wins. ``"simlm"`` is put *first* in both (called from the start-up hook right after
``pyserini.encode`` is imported), so ``--encoder simlm``, ``simlm:PATH`` and any checkpoint path
containing ``simlm`` use our classes even when the path also contains ``ance``, ``auto``, ``dpr``...
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
import torch

from simlm_ir.encode.encoder import PASSAGE_MAX_LENGTH, QUERY_MAX_LENGTH, SimLMEncoder
from simlm_ir.errors import CheckpointError

# pyserini.encode's --max-length default; it is not SimLM's passage length, so it is not honoured.
PYSERINI_DEFAULT_MAX_LENGTH = 256

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
    register(pe)


def __getattr__(name: str):
    if name in _PYSERINI_NAMES:
        _build_pyserini_classes()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PYSERINI_NAMES))


def _put_first(mapping: dict, key: str, value) -> None:
    # the dict objects are shared with pyserini's __main__ modules: reorder them in place
    rest = [(k, v) for k, v in mapping.items() if k != key]
    mapping.clear()
    mapping[key] = value
    mapping.update(rest)


def register(encode_module) -> None:
    """Put ``simlm`` first in ``pyserini.encode``'s document and query encoder class maps."""
    _put_first(encode_module.document_encoder_class_map, "simlm", __getattr__("SimLMDocumentEncoder"))
    _put_first(encode_module.query_encoder_class_map, "simlm", __getattr__("SimLMQueryEncoder"))
