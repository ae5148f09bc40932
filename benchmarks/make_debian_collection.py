#!/usr/bin/env python
"""Build the embedded known-item collection from Debian's package descriptions.

This is how ``simlm_ir/resources/collections/debian-known-item/`` was made (it is committed, so
nobody needs to run this). Source: Debian 12 "bookworm" main, ``i18n/Translation-en``, which apt
fetches when asked for English descriptions:

    apt-get update -o Acquire::Languages=en
    lz4 -dc /var/lib/apt/lists/*bookworm_main_i18n_Translation-en.lz4 > Translation-en
    python benchmarks/make_debian_collection.py Translation-en

Task (known-item, NOT a judged ad-hoc collection and not BEIR): the query is a package's one-line
synopsis; the relevant document is that package's long description. Identical long descriptions
are one document (id = first package name in sort order); identical synopses are one query (id =
first package name), relevant to every document of the packages that share it. A deterministic
1-in-12 sample of documents (sha1 of the doc id) keeps the collection laptop-sized; queries follow
their documents. Query splits: sha1("split:" + qid) % 10 -> 0-7 train, 8 dev, 9 test.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path

from simlm_ir.data.debian import COLLECTION_SAMPLE, document_ids, in_sample, read_translation, sha1_int
from simlm_ir.errors import SimLMIRError

OUT = Path(__file__).resolve().parent.parent / "simlm_ir" / "resources" / "collections" / "debian-known-item"


def build(src: Path, out: Path, sample: int = COLLECTION_SAMPLE) -> dict:
    records = sorted((p, s, d) for p, s, d in read_translation(src) if d and s)
    doc_of_text = document_ids(records)
    doc_of_pkg = {pkg: doc_of_text[text] for pkg, _, text in records}
    docs = {doc_id: text for text, doc_id in doc_of_text.items() if in_sample(doc_id, sample)}
    qid_of_syn: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for pkg, syn, _ in records:
        qid = qid_of_syn.setdefault(syn, pkg)
        if doc_of_pkg[pkg] in docs:
            qrels.setdefault(qid, set()).add(doc_of_pkg[pkg])
    text_of_qid = {qid: syn for syn, qid in qid_of_syn.items()}
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "docs.jsonl.gz", "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.mtime = 0
        for doc_id in sorted(docs):
            fh.write(json.dumps({"doc_id": doc_id, "text": docs[doc_id]}, ensure_ascii=False) + "\n")
    counts = {"docs": len(docs)}
    for split, buckets in (("train", range(8)), ("dev", (8,)), ("test", (9,))):
        qids = sorted(q for q in qrels if sha1_int("split:" + q) % 10 in buckets)
        with open(out / f"queries.{split}.tsv", "w", encoding="utf-8") as fh:
            for q in qids:
                fh.write(f"{q}\t{' '.join(text_of_qid[q].split())}\n")
        with open(out / f"qrels.{split}.txt", "w", encoding="utf-8") as fh:
            for q in qids:
                for d in sorted(qrels[q]):
                    fh.write(f"{q} 0 {d} 1\n")
        counts[f"{split}_queries"] = len(qids)
        counts[f"{split}_qrels"] = sum(len(qrels[q]) for q in qids)
    counts["source_sha256"] = hashlib.sha256(src.read_bytes()).hexdigest()
    (out / "stats.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("translation", type=Path, help="Translation-en file (plain, .lz4, .xz or .gz)")
    ap.add_argument("--output", type=Path, default=OUT)
    ap.add_argument("--sample", type=int, default=COLLECTION_SAMPLE, help="keep 1 in SAMPLE documents")
    args = ap.parse_args(argv)
    try:
        print(json.dumps(build(args.translation, args.output, args.sample), indent=2))
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
