r"""Hard-negative mining: BM25 (Pyserini) or a dense retriever's top-k, minus the positives.

    python -m simlm_ir.train.mine --dataset debian-known-item/train --method bm25 --output bm25_negs.jsonl
    python -m simlm_ir.train.mine --dataset debian-known-item/train --method dense --encoder stage1 \
        --depth 200 --output stage1_negs.jsonl
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from simlm_ir.data.datasets import load_collection
from simlm_ir.data.trec import Run
from simlm_ir.errors import SimLMIRError
from simlm_ir.search.bm25 import BM25Searcher, cached_lucene_index
from simlm_ir.train.data import build_examples, negatives_from_run, write_train_file
from simlm_ir.util.cli import arg, parse_config


def bm25_run(dataset, work_dir, depth: int, k1: float = 0.9, b: float = 0.4, threads: int = 2) -> Run:
    """Top-``depth`` of BM25 over the collection's (cached) Lucene index."""
    collection = load_collection(dataset)
    index = cached_lucene_index(collection.passages, Path(work_dir), threads=threads)
    return BM25Searcher(index.path, k1, b).batch_search(collection.queries, k=depth, threads=threads)


def dense_run(dataset, encoder, work_dir, depth: int) -> Run:
    """Top-``depth`` of a SimLM checkpoint over a flat index of the collection's passages."""
    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.index.faiss import build_index
    from simlm_ir.search.dense import DenseSearcher

    collection = load_collection(dataset)
    enc = encoder if isinstance(encoder, SimLMEncoder) else SimLMEncoder(encoder)
    index_dir = Path(work_dir) / collection.slug / f"mine-{Path(enc.name).name}"
    shutil.rmtree(index_dir, ignore_errors=True)  # the checkpoint at this path may have been retrained
    build_index(collection.passages, enc, index_dir, corpus_key=collection.dataset_id)
    searcher = DenseSearcher(index_dir, enc)
    qids = list(collection.queries)
    hits = searcher.batch_search([collection.queries[q] for q in qids], qids, k=depth)
    return {q: {h.docid: h.score for h in hs} for q, hs in hits.items()}


def mine(dataset, method: str, output, depth: int = 200, encoder=None, work_dir="work", **kw) -> int:
    """Write a training file for ``dataset``'s queries with mined negatives; returns its size.

    ``dataset``: an ir_datasets id with queries and qrels, or a collection object (e.g. a BEIR
    directory's train split, :func:`simlm_ir.data.datasets.beir_directory`)."""
    collection = load_collection(dataset)
    if method == "bm25":
        run = bm25_run(dataset, work_dir, depth, **kw)
    elif method == "dense":
        if encoder is None:
            raise SimLMIRError("--method dense needs --encoder CHECKPOINT")
        run = dense_run(dataset, encoder, work_dir, depth)
    else:
        raise SimLMIRError(f"unknown mining method {method!r} (bm25 or dense)")
    examples = build_examples(collection.queries, collection.qrels, negatives_from_run(run, collection.qrels, depth))
    write_train_file(examples, output)
    return len(examples)


@dataclass
class MineConfig:
    """The command line (one flag per field)."""

    dataset: str = arg(help="ir_datasets id of a split with training queries and qrels")
    output: str = arg(help="training JSONL to write")
    method: str = arg("bm25", "where negatives come from", choices=("bm25", "dense"))
    encoder: str | None = arg(None, "checkpoint for --method dense")
    depth: int = arg(200, "mine from the top DEPTH")
    work_dir: str = arg("work", "cache for indexes")
    threads: int = arg(2, "BM25 search threads")


def main(argv=None) -> int:
    cfg = parse_config(MineConfig, argv, prog="python -m simlm_ir.train.mine", description=__doc__)
    if cfg.dataset.endswith(("/test", "/dev/small")):
        print(f"warning: mining training data from {cfg.dataset}, an evaluation split", file=sys.stderr)
    try:
        kw = {"threads": cfg.threads} if cfg.method == "bm25" else {}
        n = mine(cfg.dataset, cfg.method, cfg.output, cfg.depth, cfg.encoder, cfg.work_dir, **kw)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{n} training queries -> {cfg.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
