"""``python -m simlm_ir.index``: encode a corpus with a SimLM encoder into a Pyserini FAISS index.

Examples::

    # one process: encode (resuming finished shards) and build an HNSW index
    python -m simlm_ir.index --corpus corpus.jsonl --encoder simlm --index indexes/simlm-hnsw \\
        --index-type hnsw --M 32 --ef-construction 200 --ef-search 128

    # sharded: run shards anywhere (same --index directory), then merge
    python -m simlm_ir.index --corpus beir/scifact --encoder CKPT --index DIR --shard-id 0 --shard-num 4
    python -m simlm_ir.index --corpus beir/scifact --encoder CKPT --index DIR --shard-num 4 --merge

    # then search it with Pyserini
    python -m pyserini.search.faiss --index DIR --topics topics.tsv --encoder simlm:CKPT --output run.trec
"""

from __future__ import annotations

import argparse
import sys

from simlm_ir.data.corpus import count_jsonl_passages
from simlm_ir.data.datasets import check_corpus, corpus_key, iter_passages
from simlm_ir.errors import SimLMIRError
from simlm_ir.index.faiss import INDEX_TYPES, IndexConfig, build_from_shards, build_index, encode_shard


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simlm_ir.index", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="JSONL file or directory ({id, contents} or {id, title, text}), "
                                    "or an ir_datasets id")
    p.add_argument("--encoder", default="simlm",
                   help="checkpoint: 'simlm' (shipped default), 'minilm', a directory, a hub id; "
                        "a 'simlm:' prefix is accepted (default: %(default)s)")
    p.add_argument("--tokenizer", default=None, help="tokenizer name or path (default: the checkpoint's)")
    p.add_argument("--index", required=True, help="output directory (Pyserini layout: index + docid)")
    g = p.add_argument_group("index type")
    g.add_argument("--index-type", choices=INDEX_TYPES, default="flat")
    g.add_argument("--M", dest="hnsw_m", type=int, default=32, help="HNSW neighbours per node")
    g.add_argument("--ef-construction", type=int, default=200)
    g.add_argument("--ef-search", type=int, default=128, help="HNSW search depth stored in the index")
    g.add_argument("--pq-m", type=int, default=None, help="PQ sub-quantizers (default dim/8)")
    g.add_argument("--pq-nbits", type=int, default=8)
    g.add_argument("--nlist", type=int, default=None, help="IVF cells (default ~4*sqrt(n))")
    g.add_argument("--nprobe", type=int, default=16, help="IVF cells searched, stored in the index")
    g.add_argument("--factory", default=None, help="faiss index_factory string for --index-type factory")
    g = p.add_argument_group("encoding")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--max-length", type=int, default=144, help="passage max tokens (SimLM: 144)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    g.add_argument("--fp16", action="store_true", help="float16 on GPU")
    g.add_argument("--bf16", action="store_true", help="bfloat16 on GPU")
    g.add_argument("--int8", action="store_true", help="dynamic int8 quantisation on CPU (approximate)")
    g.add_argument("--threads", type=int, default=None, help="torch/faiss CPU threads")
    g = p.add_argument_group("sharding")
    g.add_argument("--shard-id", type=int, default=None, help="encode only this shard (0-based)")
    g.add_argument("--shard-num", type=int, default=1)
    g.add_argument("--merge", action="store_true", help="only merge finished shards and build the index")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    progress = not args.no_progress
    config = IndexConfig(index_type=args.index_type, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                         ef_search=args.ef_search, pq_m=args.pq_m, pq_nbits=args.pq_nbits, nlist=args.nlist,
                         nprobe=args.nprobe, factory=args.factory)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    try:
        if args.merge:
            stats = build_from_shards(args.index, config, args.shard_num, progress)
            print(stats.summary())
            return 0
        if not args.corpus:
            raise SystemExit("--corpus is required unless --merge is given")
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
        stats = build_index(lambda: iter_passages(args.corpus), encoder, args.index, config,
                            shard_num=args.shard_num, progress=progress, **corpus)
        print(stats.summary())
        return 0
    except (SimLMIRError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
