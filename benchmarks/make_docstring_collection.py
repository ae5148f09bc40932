#!/usr/bin/env python
"""Build a known-item task from a Python package's docstrings: summary line -> rest of the docstring.

A second real collection, in the user-file formats (JSONL corpus, TSV topics, TREC qrels), used to
show ``python -m simlm_ir.adapt`` on text neither the shipped model nor the embedded collection has
seen. The source is read with ``ast`` from the wheel's files, never imported. Default source: the
SQLAlchemy 2.0.36 wheel (not a dependency of simlm_ir, so not in the venv; it is not among the
sources of the lead's pre-training corpus either), fetched with pip's ordinary client::

    pip download --no-deps SQLAlchemy==2.0.36 -d /tmp/pkgs
    python benchmarks/make_docstring_collection.py /tmp/pkgs/SQLAlchemy-2.0.36-*.whl --output work/sqlalchemy-docstrings

Task (known-item, like ``debian-known-item``; not BEIR): the query is a docstring's summary (its
first paragraph, whitespace collapsed); the relevant document is the rest of that docstring. Every
other docstring goes in the corpus whole, as a distractor. Identical texts are one document;
identical summaries are one query, relevant to every document they head. Queries need >= 4 words
and their document >= 10; a summary must start with a letter (not a reST directive such as
``.. dialect::``). A deterministic sample (sha1 of the query id) makes the dev and test
splits. Output: ``corpus.jsonl`` (``id``, ``contents``), ``topics.{dev,test}.tsv``,
``qrels.{dev,test}.txt``, ``stats.json`` (with the source's sha256).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Iterator

from simlm_ir.util.io import atomic_write

MIN_QUERY_WORDS = 4
MIN_DOC_WORDS = 10


def _sources(path: Path) -> Iterator[tuple[str, str]]:
    """(relative path, source text) of every .py file in a wheel/zip or under a directory."""
    if path.is_dir():
        for f in sorted(path.rglob("*.py")):
            yield str(f.relative_to(path)), f.read_text(encoding="utf-8", errors="replace")
        return
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith(".py"):
                yield name, zf.read(name).decode("utf-8", errors="replace")


def docstrings(path: Path) -> Iterator[tuple[str, str]]:
    """(id, docstring) of every module, class and function, ids as ``module/path.py:Qual.name``."""
    for rel, source in _sources(path):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue

        def walk(node, qual: str):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{qual}.{child.name}" if qual else child.name
                    doc = ast.get_docstring(child)
                    if doc:
                        yield f"{rel}:{name}", doc
                    yield from walk(child, name)

        doc = ast.get_docstring(tree)
        if doc:
            yield f"{rel}:", doc
        yield from walk(tree, "")


def split_docstring(doc: str) -> tuple[str, str] | None:
    """(summary, rest) when the docstring is a summary paragraph followed by more text."""
    parts = doc.strip().split("\n\n", 1)
    if len(parts) != 2:
        return None
    summary, rest = " ".join(parts[0].split()), parts[1].strip()
    if len(summary.split()) < MIN_QUERY_WORDS or len(rest.split()) < MIN_DOC_WORDS:
        return None
    if not summary[0].isalpha():  # reST directives and fields (".. dialect::", ":param:") are not summaries
        return None
    return summary, rest


def h(s: str) -> int:
    return int(hashlib.sha1(s.encode("utf-8")).hexdigest(), 16)


def build(src: Path, out: Path, dev: int = 200, test: int = 300) -> dict:
    doc_of_text: dict[str, str] = {}  # text -> doc id (first id in source order)
    heads: list[tuple[str, str]] = []  # (summary, doc id of the rest)
    for ident, doc in docstrings(src):
        split = split_docstring(doc)
        text = split[1] if split else doc.strip()
        doc_id = doc_of_text.setdefault(text, ident)
        if split:
            heads.append((split[0], doc_id))
    qid_of_summary: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for summary, doc_id in heads:
        qid = qid_of_summary.setdefault(summary, doc_id)
        qrels.setdefault(qid, set()).add(doc_id)
    text_of_qid = {q: s for s, q in qid_of_summary.items()}
    order = sorted(qrels, key=lambda q: (h("split:" + q), q))
    if len(order) < dev + test:
        raise SystemExit(f"{src}: only {len(order)} queries; ask for fewer (--dev/--test)")
    splits = {"dev": sorted(order[:dev]), "test": sorted(order[dev:dev + test])}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "corpus.jsonl") as fh:
        for text, doc_id in sorted(doc_of_text.items(), key=lambda kv: kv[1]):
            fh.write(json.dumps({"id": doc_id, "contents": text}, ensure_ascii=False) + "\n")
    stats = {"source": src.name, "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file()
             else None, "docs": len(doc_of_text), "candidate_queries": len(order)}
    for split, qids in splits.items():
        with atomic_write(out / f"topics.{split}.tsv") as fh:
            fh.write("".join(f"{q}\t{text_of_qid[q]}\n" for q in qids))
        with atomic_write(out / f"qrels.{split}.txt") as fh:
            fh.write("".join(f"{q} 0 {d} 1\n" for q in qids for d in sorted(qrels[q])))
        stats[f"{split}_queries"] = len(qids)
        stats[f"{split}_qrels"] = sum(len(qrels[q]) for q in qids)
    with atomic_write(out / "stats.json") as fh:
        json.dump(stats, fh, indent=2)
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="a wheel/zip of Python sources, or a directory of them")
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--dev", type=int, default=200, help="dev queries (default %(default)s)")
    ap.add_argument("--test", type=int, default=300, help="test queries (default %(default)s)")
    args = ap.parse_args(argv)
    print(json.dumps(build(args.source, args.output, args.dev, args.test), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
