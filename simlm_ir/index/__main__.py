"""``python -m simlm_ir.index``: encode a corpus with a SimLM encoder into a FAISS or Lucene index.

Examples::

    # one process: encode (resuming finished shards) and build an HNSW index
    python -m simlm_ir.index --corpus corpus.jsonl --encoder simlm --index indexes/simlm-hnsw \\
        --index-type hnsw --M 32 --ef-construction 200 --ef-search 128

    # sharded: run shards anywhere (same --index directory), then merge
    python -m simlm_ir.index --corpus beir/scifact --encoder CKPT --index DIR --shard-id 0 --shard-num 4
    python -m simlm_ir.index --corpus beir/scifact --encoder CKPT --index DIR --shard-num 4 --merge

    # then search it with Pyserini
    python -m pyserini.search.faiss --index DIR --topics topics.tsv --encoder simlm:CKPT --output run.trec

    # Lucene, built by Anserini's own indexers: HNSW (--quantize-int8 for int8), or flat
    python -m simlm_ir.index --corpus debian-known-item --index indexes/simlm-lucene-hnsw --backend lucene-hnsw \
        --M 16 --ef-construction 100
    python -m simlm_ir.index --index DIR --backend lucene-flat --vectors vectors.jsonl.gz   # encoded elsewhere
    python -m simlm_ir.search.lucene --index indexes/simlm-lucene-hnsw --topics topics.tsv --output run.trec
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from simlm_ir.data.corpus import count_jsonl_passages
from simlm_ir.data.datasets import check_corpus, corpus_key, iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.index.faiss import SHARDS_DIR, IndexConfig, build_from_shards, build_index, encode_shard
from simlm_ir.index.lucene import BACKENDS as LUCENE_BACKENDS
from simlm_ir.util.cli import arg, parse_configs

BACKENDS = ("faiss",) + LUCENE_BACKENDS


@dataclass
class IndexCommand:
    """What to encode and where (the index type is :class:`~simlm_ir.index.faiss.IndexConfig`)."""

    index: str = arg(help="output directory (FAISS: Pyserini's index + docid layout; Lucene: a Lucene index)")
    backend: str = arg("faiss", "faiss, or a Lucene vector index built by Anserini (HNSW M and efC from --M and "
                                "--ef-construction; Anserini's own defaults are 16 and 100)", choices=BACKENDS)
    quantize_int8: bool = arg(False, "Lucene backends: int8 scalar quantisation of the index (Anserini's "
                                     "-quantize.int8)")
    vectors: str | None = arg(None, "Lucene backends: index these vectors instead of encoding --corpus: JSONL(.gz) "
                                    "{docid|id, vector} files, or a directory holding them or an index directory's "
                                    "encoded shards/ (e.g. a FAISS index)")
    corpus: str | None = arg(None, "JSONL file or directory ({id, contents} or {id, title, text}), or an "
                                   "ir_datasets id")
    encoder: str = arg("simlm", "checkpoint: 'simlm' (shipped default), 'minilm', a directory, a hub id; a 'simlm:' "
                                "prefix is accepted")
    tokenizer: str | None = arg(None, "tokenizer name or path (default: the checkpoint's)")
    batch_size: int = arg(64, "passages per forward pass")
    max_length: int = arg(144, "passage max tokens (SimLM: 144)")
    device: str | None = arg(None, "cpu, cuda, cuda:1 (default: cuda if available)")
    fp16: bool = arg(False, "float16 on GPU")
    bf16: bool = arg(False, "bfloat16 on GPU")
    int8: bool = arg(False, "dynamic int8 quantisation on CPU (approximate)")
    threads: int | None = arg(None, "torch/faiss CPU threads; Anserini indexing threads")
    shard_id: int | None = arg(None, "encode only this shard (0-based)")
    shard_num: int = arg(1, "shards the corpus is encoded in")
    merge: bool = arg(False, "only merge finished shards and build the index")
    progress: bool = arg(True, "progress bars")


def main(argv=None) -> int:
    try:
        args, config = parse_configs([IndexCommand, IndexConfig], argv, prog="python -m simlm_ir.index",
                                     description=__doc__)
    except ValueError as exc:  # IndexConfig's own checks (e.g. --index-type factory without --factory)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress = args.progress
    if args.backend == "faiss" and (args.quantize_int8 or args.vectors):
        print("error: --quantize-int8 and --vectors apply to --backend lucene-hnsw / lucene-flat", file=sys.stderr)
        return 2
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    try:
        lucene = None
        if args.backend != "faiss":
            from simlm_ir.index.lucene import LuceneIndexConfig

            lucene = LuceneIndexConfig(backend=args.backend, hnsw_m=config.hnsw_m,
                                       ef_construction=config.ef_construction,
                                       quantize_int8=args.quantize_int8, threads=args.threads or 1)
        if args.vectors:
            print(_index_vectors(args, lucene, progress).summary())
            return 0
        if args.merge:
            stats = (build_from_shards(args.index, config, args.shard_num, progress) if lucene is None else
                     _lucene_from_shards(args.index, lucene, args.shard_num, progress))
            print(stats.summary())
            return 0
        if not args.corpus:
            raise SystemExit("--corpus is required unless --merge or --vectors is given")
        check_corpus(args.corpus)
        from simlm_ir.encode.encoder import SimLMEncoder

        encoder = SimLMEncoder(args.encoder, tokenizer=args.tokenizer, device=args.device,
                               dtype="float16" if args.fp16 else "bfloat16" if args.bf16 else None,
                               batch_size=args.batch_size, passage_max_length=args.max_length,
                               threads=args.threads, quantize_int8=args.int8)
        corpus = {"corpus_key": corpus_key(args.corpus), "total": count_jsonl_passages(args.corpus)}
        if args.shard_id is not None:
            out = encode_shard(iter_passages(args.corpus), encoder, args.index, args.shard_id, args.shard_num,
                               progress=progress, **corpus)
            print(f"shard {args.shard_id} of {args.shard_num} is in {out}; when all are done run with "
                  f"--shard-num {args.shard_num} --merge")
            return 0
        if lucene is None:
            stats = build_index(lambda: iter_passages(args.corpus), encoder, args.index, config,
                                shard_num=args.shard_num, progress=progress, **corpus)
        else:
            for k in range(args.shard_num):  # resumable: finished shards are kept
                encode_shard(lambda: iter_passages(args.corpus), encoder, args.index, k, args.shard_num,
                             progress=progress, **corpus)
            stats = _lucene_from_shards(args.index, lucene, args.shard_num, progress)
        print(stats.summary())
        return 0
    except (SimLMIRError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _lucene_from_shards(index_dir, config, shard_num: int, progress: bool):
    from simlm_ir.index.lucene import build_lucene_index

    return build_lucene_index(index_dir, config, shard_num, progress=progress)


def _index_vectors(args, lucene, progress: bool):
    """--vectors: an index directory's encoded shards, or JSONL vector files."""
    from pathlib import Path

    from simlm_ir.index.lucene import build_lucene_index, build_lucene_index_from_vectors

    source = Path(args.vectors)
    if (source / SHARDS_DIR).is_dir():
        return build_lucene_index(args.index, lucene, args.shard_num, vectors_dir=source, progress=progress)
    return build_lucene_index_from_vectors(source, args.index, lucene, encoder=args.encoder, progress=progress)


if __name__ == "__main__":
    sys.exit(main())
