"""ColBERT token indexes: every passage's fp16 token vectors, doc lengths and ids, written atomically.

The reported index size is the uncompressed fp16 token vectors (+ doc lengths and ids), i.e.
ColBERTv2 *before* its 1-2 bit residual compression. :class:`simlm_ir.search.colbert.ColBERTIndex`
searches it exactly; :func:`simlm_ir.index.plaid.build_plaid_index` compresses it into a PLAID index.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import numpy as np

from simlm_ir.errors import InputFormatError
from simlm_ir.modeling.colbert import ColBERT, model_key
from simlm_ir.util.io import atomic_directory
from simlm_ir.util.progress import progress

INDEX_META = "colbert_index.json"
VECTORS_FILE = "vectors.f16"  # raw little-endian float16, row-major (tokens x dim)
DOCLENS_FILE = "doclens.npy"
DOCID_FILE = "docid"
INDEX_FORMAT = 1


def build_colbert_index(passages: Iterable, model: ColBERT, index_dir, chunk_docs: int = 1024,
                        progress_total: int | None = None, desc: str = "ColBERT encoding") -> dict:
    """Encode every passage's token vectors into ``index_dir`` (atomically); returns the metadata.

    Documents are ``title\\ntext`` (``Passage.contents``), as the BM25 "flat" index sees them.
    """
    start = time.perf_counter()
    index_dir = Path(index_dir)
    n_docs = n_tokens = 0
    with atomic_directory(index_dir) as tmp:
        doclens: list[np.ndarray] = []
        with open(tmp / VECTORS_FILE, "wb") as vec_fh, open(tmp / DOCID_FILE, "w", encoding="utf-8") as id_fh:
            bar = progress(total=progress_total, desc=desc, unit="doc")
            chunk: list = []

            def flush():
                nonlocal n_docs, n_tokens
                flat, lens = model.encode_docs([p.contents for p in chunk])
                vec_fh.write(flat.astype("<f2", copy=False).tobytes())
                doclens.append(lens)
                for p in chunk:
                    if "\n" in p.id or "\t" in p.id:
                        raise InputFormatError("corpus", None, f"document id {p.id!r} contains a tab or newline")
                    id_fh.write(p.id + "\n")
                n_docs += len(chunk)
                n_tokens += int(lens.sum())
                bar.update(len(chunk))
                chunk.clear()

            for p in passages:
                chunk.append(p)
                if len(chunk) >= chunk_docs:
                    flush()
            if chunk:
                flush()
            bar.close()
        np.save(tmp / DOCLENS_FILE, np.concatenate(doclens) if doclens else np.zeros(0, dtype=np.int64))
        meta = {"format": INDEX_FORMAT, "docs": n_docs, "tokens": n_tokens, "dim": model.config.dim,
                "dtype": "float16", "checkpoint": getattr(model, "name", ""), "config": asdict(model.config),
                "model_key": model_key(model), "build_seconds": time.perf_counter() - start}
        (tmp / INDEX_META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def read_colbert_index(index_dir) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """The token vectors (tokens, dim) float16 (memory-mapped), doc lengths, doc ids and metadata of an
    index built by :func:`build_colbert_index`, checked to agree with each other."""
    index_dir = Path(index_dir)
    meta_file = index_dir / INDEX_META
    if not meta_file.exists():
        raise InputFormatError(index_dir, None, f"not a ColBERT index (no {INDEX_META})")
    meta = json.loads(meta_file.read_text())
    docids = (index_dir / DOCID_FILE).read_text(encoding="utf-8").splitlines()
    doclens = np.load(index_dir / DOCLENS_FILE)
    dim = int(meta["dim"])
    raw = np.memmap(index_dir / VECTORS_FILE, dtype="<f2", mode="r")
    if raw.size != int(doclens.sum()) * dim or len(docids) != len(doclens):
        raise InputFormatError(index_dir, None, "index files disagree (vectors, doclens, docid); rebuild it")
    return raw.reshape(-1, dim), doclens, docids, meta
