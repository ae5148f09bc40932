"""End to end through Pyserini's own command lines: pyserini.encode -> pyserini.search.faiss.

Each Pyserini command starts a JVM (~15 s), so this module runs exactly two subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_faiss import EXPECTED_TOP1, PASSAGES, QUERIES, read

from simlm_ir.encode.encoder import SimLMEncoder
from simlm_ir.index.faiss import IndexConfig, build_index
from simlm_ir.modeling.checkpoints import minilm_dir
from simlm_ir.search.dense import DenseSearcher, load_index

# Pyserini 1.6.0's own class keywords: it tries these before "simlm", so our paths must avoid them.
PYSERINI_KEYWORDS = ("dpr", "bpr", "dkrr", "tct_colbert", "aggretriever", "ance", "sentence", "unicoil",
                     "openai", "cosdpr", "auto", "clip", "contriever", "arctic", "uniir", "splade",
                     "qwen3", "dse", "mmeb")


def run(cmd, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def read_trec_run(path):
    runs: dict[str, list[tuple[str, float]]] = {}
    for line in open(path):
        qid, _, docid, rank, score, _ = line.split()
        runs.setdefault(qid, []).append((docid, float(score)))
    return runs


@pytest.mark.slow
def test_pyserini_encode_then_search_matches_python_api(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "title": ti, "text": t}) + "\n" for i, ti, t in PASSAGES))
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{qid}\t{q}\n" for qid, q in QUERIES.items()))
    model = str(minilm_dir())
    # Two ways to pick our classes: the simlm: prefix, and a checkpoint path containing "simlm".
    by_prefix = "simlm:" + model
    by_name = tmp_path / "simlm-ckpt"
    by_name.symlink_to(model, target_is_directory=True)
    for spec in (by_prefix, str(by_name)):
        clash = [k for k in PYSERINI_KEYWORDS if k in spec.lower()]
        assert not clash, f"{spec} contains Pyserini keyword(s) {clash}; it would pick another class"

    pyserini_index = tmp_path / "pyserini-index"
    run([sys.executable, "-m", "pyserini.encode",
         "input", "--corpus", corpus, "--fields", "title", "text",
         "output", "--embeddings", pyserini_index, "--to-faiss",
         "encoder", "--encoder", by_prefix, "--fields", "title", "text", "--dimension", "384",
         "--batch-size", "8", "--device", "cpu"], cwd=tmp_path)
    run_file = tmp_path / "run.trec"
    run([sys.executable, "-m", "pyserini.search.faiss", "--index", pyserini_index, "--topics", topics,
         "--encoder", by_name, "--output", run_file, "--hits", "10", "--device", "cpu"], cwd=tmp_path)

    # Pyserini's encode run produced exactly what our own index builder produces ...
    encoder = SimLMEncoder(model, device="cpu")
    ours = tmp_path / "ours"
    build_index(read(corpus), encoder, ours, IndexConfig("flat"), progress=False, corpus_key=str(corpus))
    p_index, p_docids = load_index(pyserini_index)
    o_index, o_docids = load_index(ours)
    assert p_docids == o_docids == [p[0] for p in PASSAGES]
    np.testing.assert_allclose(p_index.reconstruct_n(0, p_index.ntotal), o_index.reconstruct_n(0, o_index.ntotal),
                               atol=1e-5)

    # ... and Pyserini's search run equals our Python API's ranking, query by query.
    pyserini_run = read_trec_run(run_file)
    ranking = DenseSearcher(pyserini_index, encoder).batch_search(list(QUERIES.values()), list(QUERIES), k=10)
    assert set(pyserini_run) == set(QUERIES)
    for qid, hits in ranking.items():
        assert [d for d, _ in pyserini_run[qid]] == [h.docid for h in hits], qid
        np.testing.assert_allclose([s for _, s in pyserini_run[qid]], [h.score for h in hits], atol=1e-5)
        assert hits[0].docid == EXPECTED_TOP1[qid]
