"""The field's text formats: TREC runs (``qid Q0 docid rank score tag``), TREC qrels
(``qid 0 docid relevance``) and Pyserini/Anserini TSV topics (``qid<TAB>query``), plus BEIR's
``queries.jsonl`` and ``qrels/<split>.tsv`` (:func:`read_topics` and :func:`read_qrels` take either)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

from simlm_ir.data.corpus import iter_json_objects, open_text
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


def _check_file(path, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise InputFormatError(p, None, f"no such {what} file")
    if p.is_dir():
        raise InputFormatError(p, None, f"is a directory, not a {what} file")


def read_topics(path) -> dict[str, str]:
    """Topics from TSV (``qid<TAB>query``) or JSONL (BEIR's ``{"_id", "text"}``; ``id``/``qid`` and
    ``query`` are accepted too), chosen by the file name (``.jsonl``/``.json``, optionally ``.gz``)."""
    name = str(path)
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return read_topics_jsonl(path)
    return read_topics_tsv(path)


def read_topics_jsonl(path) -> dict[str, str]:
    """JSONL topics, one ``{"_id": ..., "text": ...}`` object per line (BEIR's ``queries.jsonl``)."""
    _check_file(path, "topics")
    topics: dict[str, str] = {}
    for lineno, obj in iter_json_objects(path, 'a JSON object {"_id": ..., "text": ...}'):
        qid = next((obj[k] for k in ("_id", "id", "qid") if k in obj), None)
        text = next((obj[k] for k in ("text", "query") if k in obj), None)
        if qid is None or str(qid).strip() == "":
            raise InputFormatError(path, lineno, "query has no '_id'")
        if not isinstance(text, str) or not text.strip():
            raise InputFormatError(path, lineno, f"query {qid!r} has no 'text'")
        if str(qid) in topics:
            raise InputFormatError(path, lineno, f"duplicate query id {qid!r}")
        topics[str(qid)] = text
    if not topics:
        raise InputFormatError(path, None, "no topics")
    return topics


def read_topics_tsv(path) -> dict[str, str]:
    """Pyserini/Anserini TSV topics: ``qid<TAB>query`` per line; empty or duplicate queries are errors."""
    _check_file(path, "topics")
    topics: dict[str, str] = {}
    with open_text(path) as fh:
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


def read_qrels(path) -> Qrels:
    """Qrels in TREC's 4 columns (``qid 0 docid relevance``) or BEIR's TSV (a ``query-id corpus-id
    score`` header, then 3 tab-separated columns), told apart by the header."""
    _check_file(path, "qrels")
    with open_text(path) as fh:
        first = next((line for line in fh if line.strip()), "")
    if first.split()[:1] == ["query-id"]:
        return read_beir_qrels(path)
    return read_trec_qrels(path)


def _relevance(value: str, path, lineno: int) -> int:
    try:
        return int(value)
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            f = None
        if f is None or f != int(f):
            raise InputFormatError(path, lineno, f"relevance {value!r} is not an integer") from None
        return int(f)


def read_trec_qrels(path) -> Qrels:
    """TREC qrels: ``qid iteration docid relevance`` per line."""
    _check_file(path, "qrels")
    qrels: Qrels = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise InputFormatError(path, lineno, f"expected 4 columns 'qid 0 docid relevance', got {len(parts)}")
            qrels.setdefault(parts[0], {})[parts[2]] = _relevance(parts[3], path, lineno)
    if not qrels:
        raise InputFormatError(path, None, "no judgements")
    return qrels


def read_beir_qrels(path) -> Qrels:
    """BEIR qrels: header ``query-id<TAB>corpus-id<TAB>score``, then one judgement per line."""
    _check_file(path, "qrels")
    qrels: Qrels = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n\r").split("\t")
            if not line.strip() or (lineno == 1 and parts[0] == "query-id"):
                continue
            if len(parts) != 3:
                raise InputFormatError(path, lineno, f"expected 3 tab-separated columns 'query-id corpus-id score', "
                                                     f"got {len(parts)}")
            qrels.setdefault(parts[0], {})[parts[1]] = _relevance(parts[2], path, lineno)
    if not qrels:
        raise InputFormatError(path, None, "no judgements")
    return qrels


def check_qrels_queries(qrels: Qrels, queries: Mapping[str, str], source: str) -> Qrels:
    """Drop judgements for queries that do not exist, with one counted warning (trec_eval ignores them)."""
    unknown = [q for q in qrels if q not in queries]
    if unknown:
        warnings.warn(f"{source}: {len(unknown)} judged queries are not in the topics and are ignored "
                      f"(e.g. {unknown[:3]})", stacklevel=2)
        qrels = {q: d for q, d in qrels.items() if q in queries}
    return qrels
