#!/usr/bin/env python
"""More training queries for the embedded task, from the part of its own source it left out.

The embedded collection (``benchmarks/make_debian_collection.py``) keeps 1 document in 12 of Debian
12 "bookworm" ``main``; the other 11 in 12 packages are the same task (synopsis -> long description)
on documents the collection does not hold. This script turns a seeded sample of them into extra
training queries, so fine-tuning can see more than the 4,020 training queries:

    python benchmarks/make_extra_train.py --lists work/apt/lists --extra 24000 --output work/extra-train

``--lists``: the private apt lists directory of ``benchmarks/make_pretrain_corpus.py`` (only its
``bookworm_main`` Translation-en is read: other suites hold other versions of the collection's own
packages, whose descriptions could paraphrase a test document). What is left out, so that no dev or
test query or document reaches training:

- every package whose description is a collection document (the 1-in-12 sample, recomputed with the
  collection's rule) and every package named by a collection query or document id;
- every package whose description's text is a collection document, in any whitespace;
- every package whose synopsis is a collection query's text (any split), in any whitespace or case.

Output (Pyserini formats, under ``--output``):
``corpus.jsonl.gz`` (the collection's 4,995 documents + one per extra query, id = package),
``topics.tsv`` + ``qrels.txt`` (the collection's training queries + the extra ones),
``train.jsonl`` (BM25 top-100 negatives over that corpus, as ``simlm_ir.train.mine`` writes them) and
``stats.json``. Fine-tune with ``python -m simlm_ir.train.finetune --train-file
OUTPUT/train.jsonl --corpus OUTPUT/corpus.jsonl.gz ...``; evaluation stays on the collection's dev
and test splits, over its own corpus.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from simlm_ir.data.datasets import LocalCollection, load_collection
from simlm_ir.data.debian import document_ids, in_sample, read_translation, sha1_int
from simlm_ir.errors import SimLMIRError
from simlm_ir.util.io import atomic_write


def norm(s: str) -> str:
    return " ".join(s.split()).lower()


def bookworm_main(lists: Path) -> list[tuple[str, str, str]]:
    files = sorted(lists.glob("*dists_bookworm_main_i18n_Translation-en*"))
    if not files:
        raise SystemExit(f"error: {lists}: no bookworm main Translation-en; run the apt-get update in "
                         "benchmarks/make_pretrain_corpus.py's docstring first")
    return sorted((p, s, d) for p, s, d in read_translation(files[0]) if d and s)


def extra_queries(records, splits) -> tuple[list[tuple[str, str, str]], dict]:
    """(package, synopsis, description) of packages outside the collection, with the counts left out."""
    docs = {p.id: p.text for p in splits["train"].passages()}
    doc_texts = {norm(t) for t in docs.values()}
    queries = {q: t for s in splits.values() for q, t in s.queries.items()}
    query_texts = {norm(t) for t in queries.values()}
    named = set(docs) | set(queries)
    doc_of_text = document_ids(records)
    kept, seen_syn, seen_doc, seen_pkg = [], set(), set(), set()
    dropped = {"in_sample": 0, "named_in_collection": 0, "same_document_text": 0, "same_query_text": 0,
               "repeated": 0}
    for pkg, syn, text in records:
        doc_id, syn_key, text_key = doc_of_text[text], norm(syn), norm(text)
        if in_sample(doc_id):
            dropped["in_sample"] += 1
        elif pkg in named or doc_id in named:
            dropped["named_in_collection"] += 1
        elif text_key in doc_texts:
            dropped["same_document_text"] += 1
        elif syn_key in query_texts:
            dropped["same_query_text"] += 1
        elif syn_key in seen_syn or text_key in seen_doc or pkg in seen_pkg:
            # one query per synopsis, one document per description, one of each per package (a package
            # can have two stanzas, e.g. two versions' descriptions)
            dropped["repeated"] += 1
        else:
            seen_pkg.add(pkg)
            seen_syn.add(syn_key)
            seen_doc.add(text_key)
            kept.append((pkg, " ".join(syn.split()), text))
    return kept, dropped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lists", type=Path, required=True, help="apt lists directory with bookworm main")
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--extra", type=int, default=8000, help="extra queries (a seeded sample of those available)")
    ap.add_argument("--depth", type=int, default=100, help="BM25 depth the negatives are mined from")
    ap.add_argument("--work-dir", default="work", help="cache for the BM25 index")
    args = ap.parse_args(argv)

    splits = {s: load_collection(f"debian-known-item/{s}") for s in ("train", "dev", "test")}
    try:
        records = bookworm_main(args.lists)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    candidates, dropped = extra_queries(records, splits)
    chosen = sorted(candidates, key=lambda r: sha1_int("extra:" + r[0]))[:args.extra]
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "corpus.jsonl.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        for p in splits["train"].passages():
            fh.write((json.dumps({"id": p.id, "contents": p.text}, ensure_ascii=False) + "\n").encode())
        for pkg, _, text in chosen:
            fh.write((json.dumps({"id": pkg, "contents": text}, ensure_ascii=False) + "\n").encode())
    train = splits["train"]
    with atomic_write(out / "topics.tsv", "w") as fh:
        for q, t in train.queries.items():
            fh.write(f"{q}\t{t}\n")
        for pkg, syn, _ in chosen:
            fh.write(f"{pkg}\t{syn}\n")
    with atomic_write(out / "qrels.txt", "w") as fh:
        for q, rels in train.qrels.items():
            for d, r in rels.items():
                fh.write(f"{q} 0 {d} {r}\n")
        for pkg, _, _ in chosen:
            fh.write(f"{pkg} 0 {pkg} 1\n")

    from simlm_ir.train.mine import mine

    combined = LocalCollection(str(out / "corpus.jsonl.gz"), str(out / "topics.tsv"), str(out / "qrels.txt"),
                               name="debian-known-item-extra")
    n = mine(combined, "bm25", out / "train.jsonl", depth=args.depth, work_dir=args.work_dir)
    stats = {"available": len(candidates), "extra_queries": len(chosen), "train_queries": len(train.queries),
             "training_queries_written": n, "left_out": dropped}
    with atomic_write(out / "stats.json") as fh:
        fh.write(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
