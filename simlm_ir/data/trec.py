"""The field's text formats: TREC runs (``qid Q0 docid rank score tag``), TREC qrels
(``qid 0 docid relevance``) and Pyserini/Anserini TSV topics (``qid<TAB>query``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

from simlm_ir.errors import InputFormatError
from simlm_ir.util.io import atomic_write

# qid -> {docid: score}
Run = dict[str, dict[str, float]]
# qid -> {docid: relevance}
Qrels = dict[str, dict[str, int]]


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
                raise InputFormatError(path, lineno,
                                       f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
            qid, _, docid, _, score, _ = parts
            try:
                run.setdefault(qid, {})[docid] = float(score)
            except ValueError:
                raise InputFormatError(path, lineno, f"score {score!r} is not a number") from None
    return run


def read_topics_tsv(path) -> dict[str, str]:
    """Pyserini/Anserini TSV topics: ``qid<TAB>query`` per line; empty or duplicate queries are errors."""
    topics: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            if "\t" not in line:
                raise InputFormatError(path, lineno, "expected 'qid<TAB>query text'")
            qid, text = line.split("\t", 1)
            if not text.strip():
                raise InputFormatError(path, lineno, f"query {qid!r} is empty")
            if qid in topics:
                raise InputFormatError(path, lineno, f"duplicate query id {qid!r}")
            topics[qid] = text
    if not topics:
        raise InputFormatError(path, None, "no topics")
    return topics


def read_trec_qrels(path) -> dict[str, dict[str, int]]:
    """TREC qrels: ``qid iteration docid relevance`` per line."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise InputFormatError(path, lineno, f"expected 4 columns 'qid 0 docid relevance', got {len(parts)}")
            try:
                qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
            except ValueError:
                raise InputFormatError(path, lineno, f"relevance {parts[3]!r} is not an integer") from None
    return qrels


def check_qrels_queries(qrels: Qrels, queries: Mapping[str, str], source: str) -> Qrels:
    """Drop judgements for queries that do not exist, with one counted warning (trec_eval ignores them)."""
    unknown = [q for q in qrels if q not in queries]
    if unknown:
        warnings.warn(f"{source}: {len(unknown)} judged queries are not in the topics and are ignored "
                      f"(e.g. {unknown[:3]})", stacklevel=2)
        qrels = {q: d for q, d in qrels.items() if q in queries}
    return qrels
