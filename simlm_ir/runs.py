"""TREC run files: the 6-column format every IR tool reads (``qid Q0 docid rank score tag``)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from simlm_ir.errors import InputFormatError
from simlm_ir.io_utils import atomic_write

# qid -> {docid: score}
Run = dict[str, dict[str, float]]


def ranked(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """Documents by descending score, ties broken by docid so files are reproducible."""
    return sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))


def write_trec_run(run: Run, path, tag: str, depth: int | None = None) -> Path:
    """Write ``run`` atomically as a TREC run file; queries keep their input order."""
    path = Path(path)
    with atomic_write(path) as fh:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(ranked(docs)[:depth], 1):
                fh.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    return path


def read_trec_run(path) -> Run:
    """Read a TREC run file; malformed lines are reported with file and line."""
    run: Run = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise InputFormatError(path, lineno, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
            qid, _, docid, _, score, _ = parts
            try:
                run.setdefault(qid, {})[docid] = float(score)
            except ValueError:
                raise InputFormatError(path, lineno, f"score {score!r} is not a number") from None
    return run
