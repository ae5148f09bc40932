"""FAISS index building (flat fp32/fp16/SQ8, HNSW, PQ/OPQ/IVF-PQ, sharded + resumable) and DenseSearcher."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from simlm_ir.data.datasets import iter_passages
from simlm_ir.encode.encoder import SimLMEncoder
from simlm_ir.errors import InputFormatError
from simlm_ir.index.__main__ import main as index_main
from simlm_ir.index.faiss import (
    IndexConfig,
    ShardedVectors,
    build_from_shards,
    build_index,
    encode_shard,
    make_faiss_index,
)
from simlm_ir.search.dense import DenseSearcher, load_index


def read(corpus):
    """A corpus file as the index builder takes it: a function returning fresh passages."""
    return lambda: iter_passages(corpus)


# Tiny real-text corpus: (id, title, text); a few are written as Pyserini {"id", "contents"}.
PASSAGES = [
    ("d01", "Photosynthesis", "Photosynthesis is the process by which green plants use sunlight, water and "
     "carbon dioxide to make glucose and release oxygen into the air."),
    ("d02", "French Revolution", "The French Revolution began in 1789 with the storming of the Bastille and "
     "ended the absolute monarchy of Louis XVI."),
    ("d03", "Great Barrier Reef", "The Great Barrier Reef off the coast of Queensland, Australia, is the "
     "largest coral reef system in the world."),
    ("d04", "Mount Everest", "Mount Everest, on the border of Nepal and China, is Earth's highest mountain "
     "above sea level at 8,849 metres."),
    ("d05", "Python", "Python is a high-level programming language created by Guido van Rossum whose design "
     "emphasises code readability."),
    ("d06", "Insulin", "Insulin is a hormone made by the pancreas that lets cells absorb glucose from the "
     "blood; people with type 1 diabetes must inject it."),
    ("d07", "Paris", "Paris is the capital and most populous city of France, known for the Eiffel Tower and "
     "the Louvre museum."),
    ("d08", "Jupiter", "Jupiter is the fifth planet from the Sun and the largest in the Solar System, a gas "
     "giant with a Great Red Spot storm."),
    ("d09", "Penicillin", "Alexander Fleming discovered penicillin in 1928 when mould killed bacteria in a "
     "culture dish, starting the age of antibiotics."),
    ("d10", "Amazon River", "The Amazon River in South America carries more water than any other river and "
     "flows through the largest tropical rainforest."),
    ("d11", "Tea", "Tea is an aromatic drink prepared by pouring hot water over the cured leaves of the "
     "Camellia sinensis shrub, native to East Asia."),
    ("d12", "World Wide Web", "Tim Berners-Lee invented the World Wide Web in 1989 while working at CERN, "
     "linking hypertext documents over the internet."),
    ("d13", "Volcano", "A volcano is a rupture in the crust of a planet through which lava, ash and gases "
     "escape from a magma chamber below the surface."),
    ("d14", "Honey bee", "Honey bees live in colonies with a single queen and collect nectar from flowers, "
     "which they turn into honey stored in wax combs."),
    ("d15", "Chess", "Chess is a board game for two players on a checkered board of 64 squares; the goal is "
     "to checkmate the opponent's king."),
    ("d16", "Moon landing", "Apollo 11 landed on the Moon on 20 July 1969, and Neil Armstrong became the "
     "first person to walk on its surface."),
    ("d17", "DNA", "DNA is a molecule of two strands forming a double helix that carries the genetic "
     "instructions of all known living organisms."),
    ("d18", "Sahara", "The Sahara is the largest hot desert in the world, covering most of North Africa "
     "with sand dunes, rocky plateaus and very little rain."),
    ("d19", "Bicycle", "A bicycle is a human-powered vehicle with two wheels attached to a frame, driven by "
     "pedals turning a chain."),
    ("d20", "Coffee", "Coffee is brewed from roasted coffee beans, the seeds of berries from Coffea plants; "
     "its caffeine makes people feel alert."),
    ("d21", "Earthquake", "An earthquake is the shaking of the ground caused by a sudden slip of rock along "
     "a fault, measured with seismometers."),
    ("d22", "Shakespeare", "William Shakespeare was an English playwright and poet who wrote Hamlet, Macbeth "
     "and Romeo and Juliet."),
    ("d23", "Vaccination", "Vaccination trains the immune system with a harmless part of a pathogen so the "
     "body can fight the real infection later."),
    ("d24", "Great Wall", "The Great Wall of China is a series of fortifications built over centuries to "
     "protect Chinese states from northern invaders."),
    ("d25", "", "Glaciers are slowly moving rivers of ice formed where snow accumulates faster than it "
     "melts over many years."),
    ("d26", "Olympic Games", "The modern Olympic Games began in Athens in 1896 and are held every four years "
     "with athletes from around the world."),
    ("d27", "Electric car", "Electric cars run on motors powered by rechargeable lithium-ion batteries "
     "instead of petrol engines."),
    ("d28", "Printing press", "Johannes Gutenberg's printing press with movable metal type, built around "
     "1440, made books cheap and spread literacy in Europe."),
    ("d29", "Black hole", "A black hole is a region of spacetime where gravity is so strong that nothing, not "
     "even light, can escape from it."),
    ("d30", "Bread", "Bread is baked from a dough of flour and water, usually leavened with yeast that "
     "produces carbon dioxide bubbles."),
]
QUERIES = {
    "1": "what is the capital of france",
    "2": "who discovered the first antibiotic",
    "3": "how do plants produce oxygen",
    "4": "biggest planet in the solar system",
    "5": "when did people first walk on the moon",
    "6": "hormone that controls blood sugar",
}
EXPECTED_TOP1 = {"1": "d07", "2": "d09", "3": "d01", "4": "d08", "5": "d16", "6": "d06"}


def write_corpus(path, passages=PASSAGES):
    with open(path, "w", encoding="utf-8") as fh:
        for i, (pid, title, text) in enumerate(passages):
            obj = {"id": pid, "contents": text} if i % 7 == 3 else {"id": pid, "title": title, "text": text}
            fh.write(json.dumps(obj) + "\n")
    return path


@pytest.fixture(scope="module")
def encoder():
    return SimLMEncoder("minilm", device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl")


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory, corpus, encoder):
    out = tmp_path_factory.mktemp("flat") / "index"
    stats = build_index(read(corpus), encoder, out, IndexConfig("flat"), progress=False, corpus_key=str(corpus))
    assert stats.passages == len(PASSAGES) and stats.dim == 384
    assert stats.bytes_per_passage >= 4 * 384  # fp32 vectors
    return out


def brute_force(encoder, k):
    texts = [t for _, _, t in PASSAGES]
    titles = [ti if i % 7 != 3 else "-" for i, (_, ti, _) in enumerate(PASSAGES)]
    p = encoder.encode_passages(texts, titles)
    q = encoder.encode_queries(list(QUERIES.values()))
    scores = q @ p.T
    return {qid: [(PASSAGES[j][0], scores[i, j]) for j in np.argsort(-scores[i])[:k]]
            for i, qid in enumerate(QUERIES)}


def test_flat_index_search_matches_brute_force(flat_dir, encoder):
    assert (flat_dir / "docid").read_text().split() == [p[0] for p in PASSAGES]
    searcher = DenseSearcher(flat_dir, encoder)
    results = searcher.batch_search(list(QUERIES.values()), list(QUERIES), k=5)
    expected = brute_force(encoder, 5)
    for qid, hits in results.items():
        assert [h.docid for h in hits] == [d for d, _ in expected[qid]]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected[qid]], atol=1e-5)
        assert hits[0].docid == EXPECTED_TOP1[qid]
    # one query alone vs in a padded batch: the same hits, scores equal to float32 rounding (the
    # matrix products may take another kernel path, so bit equality is not promised)
    alone = searcher.search(QUERIES["1"], k=3)
    assert [h.docid for h in alone] == [h.docid for h in results["1"][:3]]
    np.testing.assert_allclose([h.score for h in alone], [h.score for h in results["1"][:3]], atol=1e-5)
    # the searcher can also find the encoder from the index's own metadata
    assert DenseSearcher(flat_dir).search(QUERIES["4"], k=1)[0].docid == "d08"


def test_sharded_build_equals_unsharded_and_resumes(tmp_path, corpus, encoder, flat_dir):
    out = tmp_path / "sharded"
    for k in (2, 0, 1):  # any order, as separate workers would finish
        encode_shard(read(corpus), encoder, out, k, 3, progress=False, corpus_key=str(corpus))
    stats = build_from_shards(out, IndexConfig("flat"), shard_num=3, progress=False)
    index, docids = load_index(out)
    ref_index, ref_docids = load_index(flat_dir)
    assert docids == ref_docids  # corpus order restored
    np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), ref_index.reconstruct_n(0, ref_index.ntotal),
                               atol=1e-5)
    assert stats.passages == len(PASSAGES)
    # the memory-mapped view the build reads equals the in-memory merge, for slices and row picks
    # (shard k holds passages k, k+3, ...: interleave the raw shard files back into corpus order)
    shards = sorted((out / "shards").iterdir())
    raw = [np.fromfile(s / "embeddings.f32", dtype="<f4").reshape(-1, encoder.dim) for s in shards]
    vectors = np.empty((sum(len(r) for r in raw), encoder.dim), dtype=np.float32)
    ids = [""] * len(vectors)
    for k, (s, r) in enumerate(zip(shards, raw)):
        vectors[k::3] = r
        ids[k::3] = (s / "docid").read_text().splitlines()
    mapped = ShardedVectors(out, 3)
    assert mapped.shape == vectors.shape and list(mapped.iter_docids(out)) == ids == docids
    for key in (slice(0, len(vectors)), slice(4, 17), slice(29, 40), [28, 0, 5, 14]):
        np.testing.assert_array_equal(mapped[key], vectors[key])

    class MustNotEncode:  # same identity as the real encoder; any encoding is a failure
        path, passage_max_length, quantized, dim = encoder.path, encoder.passage_max_length, False, encoder.dim

        def encode_passages(self, *a, **k):
            raise AssertionError("a finished shard was re-encoded")

    before = {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*")}
    again = build_index(read(corpus), MustNotEncode(), out, IndexConfig("hnsw"), shard_num=3, progress=False,
                        corpus_key=str(corpus))
    assert (again.shards_encoded, again.shards_reused) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*")} == before
    index, _ = load_index(out)
    assert isinstance(faiss.downcast_index(index), faiss.IndexHNSWFlat)

    MustNotEncode.passage_max_length = 64  # other settings: refuse to mix shards
    with pytest.raises(InputFormatError, match="passage_max_length"):
        encode_shard(read(corpus), MustNotEncode(), out, 0, 3, progress=False, corpus_key=str(corpus))


def test_missing_shard_is_reported(tmp_path, corpus, encoder):
    encode_shard(read(corpus), encoder, tmp_path, 0, 2, progress=False, corpus_key=str(corpus))
    with pytest.raises(InputFormatError, match="--shard-id 1 --shard-num 2"):
        build_from_shards(tmp_path, shard_num=2, progress=False)


def test_hnsw_and_pq_indexes(tmp_path, flat_dir, encoder):
    flat = DenseSearcher(flat_dir, encoder)
    qids, queries = list(QUERIES), list(QUERIES.values())
    exact = flat.batch_search(queries, qids, k=10)
    # Re-use the flat index's encoded shard for every other type: no re-encoding.
    sizes = {}
    for cfg in (IndexConfig("hnsw", hnsw_m=8, ef_construction=40, ef_search=64),
                IndexConfig("pq", pq_m=48, pq_nbits=4),
                IndexConfig("ivfpq", pq_m=48, pq_nbits=4, nlist=2, nprobe=2)):
        stats = build_from_shards(flat_dir, cfg, progress=False)
        if cfg.index_type != "hnsw":
            index, _ = load_index(flat_dir)
            sizes[cfg.index_type] = index.sa_code_size()  # bytes stored per passage
        results = DenseSearcher(flat_dir, encoder).batch_search(queries, qids, k=10)
        recall = np.mean([len({h.docid for h in results[q]} & {h.docid for h in exact[q]}) / 10 for q in qids])
        top1 = np.mean([results[q][0].docid == EXPECTED_TOP1[q] for q in qids])
        if cfg.index_type == "hnsw":
            assert recall == 1.0  # 30 points, efSearch 64: exhaustive
            assert DenseSearcher(flat_dir, encoder, ef_search=16).index.hnsw.efSearch == 16
        else:
            assert recall >= 0.6 and top1 >= 0.8, (cfg.index_type, recall, top1)
        assert stats.index_type == cfg.index_type and stats.passages == len(PASSAGES)
    assert sizes["pq"] == 48 * 4 // 8  # vs 4 * 384 for flat
    assert sizes["ivfpq"] == sizes["pq"] + 1  # + the IVF list number
    build_from_shards(flat_dir, IndexConfig("flat"), progress=False)  # leave the fixture as it was


def test_scalar_quantised_and_opq_indexes_reuse_another_dirs_vectors(tmp_path, flat_dir, encoder):
    flat = DenseSearcher(flat_dir, encoder)
    qids, queries = list(QUERIES), list(QUERIES.values())
    exact = flat.batch_search(queries, qids, k=10)
    expected_bytes = {"fp16": 2 * 384, "sq8": 384}
    for cfg in (IndexConfig("fp16"), IndexConfig("sq8")):
        out = tmp_path / cfg.index_type
        stats = build_from_shards(out, cfg, progress=False, vectors_dir=flat_dir)
        assert not (out / "shards").exists() and stats.passages == len(PASSAGES)
        index, docids = load_index(out)
        assert index.sa_code_size() == expected_bytes[cfg.index_type] and docids == load_index(flat_dir)[1]
        results = DenseSearcher(out, encoder).batch_search(queries, qids, k=10)
        recall = np.mean([len({h.docid for h in results[q]} & {h.docid for h in exact[q]}) / 10 for q in qids])
        if cfg.index_type == "fp16":  # half precision changes scores in the 4th decimal, not the ranking
            assert recall == 1.0
            for q in qids:
                assert [h.score for h in results[q]] == pytest.approx([h.score for h in exact[q]], abs=2e-3)
        else:
            top1 = np.mean([results[q][0].docid == EXPECTED_TOP1[q] for q in qids])
            assert recall >= 0.6 and top1 >= 0.8, (cfg.index_type, recall, top1)
    with pytest.raises(ValueError, match="OPQ needs at least 256 passages"):
        build_from_shards(tmp_path / "opq", IndexConfig("opq", pq_m=48, pq_nbits=4), progress=False,
                          vectors_dir=flat_dir)


def test_opq_codes_and_search():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = make_faiss_index(x, IndexConfig("opq", pq_m=16, pq_nbits=8), progress=False)
    assert index.sa_code_size() == 16 and index.ntotal == 600  # 16 one-byte codes vs 256 bytes flat
    _, ids = index.search(x[:100], 1)
    assert np.mean(ids[:, 0] == np.arange(100)) >= 0.9  # each vector finds itself through its code


def test_index_dir_errors(tmp_path, flat_dir, encoder):
    missing = tmp_path / "no-docid"
    missing.mkdir()
    (missing / "index").write_bytes((flat_dir / "index").read_bytes())
    with pytest.raises(InputFormatError, match="docid.*missing"):
        DenseSearcher(missing, encoder)
    (missing / "docid").write_text("d01\nd02\n")
    with pytest.raises(InputFormatError, match="holds 2 ids but the index holds 30"):
        load_index(missing)
    with pytest.raises(InputFormatError, match="no such index directory"):
        load_index(tmp_path / "nowhere")

    small = tmp_path / "dim16"
    small.mkdir()
    idx = faiss.IndexFlatIP(16)
    idx.add(np.eye(16, dtype=np.float32)[:3])
    faiss.write_index(idx, str(small / "index"))
    (small / "docid").write_text("a\nb\nc\n")
    with pytest.raises(InputFormatError, match="16-dim vectors but the encoder .* 384-dim"):
        DenseSearcher(small, encoder)
    with pytest.raises(ValueError, match="HNSW"):
        DenseSearcher(flat_dir, encoder, ef_search=10)


class StubEncoder:
    def __init__(self, dim, path="stub"):
        self.dim, self.path, self.passage_max_length, self.quantized = dim, path, 144, False

    def encode_passages(self, texts, titles=None, batch_size=None):
        v = np.random.default_rng(len(texts)).normal(size=(len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_corpus_and_shard_errors(tmp_path, corpus):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputFormatError, match="no passages"):
        build_index(read(empty), StubEncoder(8), tmp_path / "e", progress=False, corpus_key=str(empty))
    assert not (tmp_path / "e" / "index").exists()

    encode_shard(read(corpus), StubEncoder(8), tmp_path / "mixed", 0, 2, progress=False, corpus_key=str(corpus))
    encode_shard(read(corpus), StubEncoder(4), tmp_path / "mixed", 1, 2, progress=False, corpus_key=str(corpus))
    with pytest.raises(InputFormatError, match="dim 4 but shard 0 has 8"):
        build_from_shards(tmp_path / "mixed", shard_num=2, progress=False)

    with pytest.raises(ValueError, match="at least 256 passages"):
        build_index(read(corpus), StubEncoder(8), tmp_path / "pq", IndexConfig("pq", pq_m=2), progress=False,
                    corpus_key=str(corpus))
    with pytest.raises(ValueError, match="shard"):
        encode_shard(read(corpus), StubEncoder(8), tmp_path / "x", 3, 3, corpus_key=str(corpus))

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a b ", "contents": "x"}) + "\n")
    with pytest.raises(InputFormatError, match="whitespace"):
        build_index(read(bad), StubEncoder(8), tmp_path / "b", progress=False, corpus_key=str(bad))


def test_cli_builds_index_and_reports_size(tmp_path, corpus, capsys):
    out = tmp_path / "cli"
    rc = index_main(["--corpus", str(corpus), "--encoder", "simlm:minilm", "--index", str(out),
                     "--index-type", "hnsw", "--M", "8", "--ef-search", "32", "--device", "cpu",
                     "--shard-num", "2", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "30 passages x 384 dims" in printed and "bytes/passage" in printed
    index, _ = load_index(out)
    assert faiss.downcast_index(index).hnsw.efSearch == 32
    assert len(list((out / "shards").iterdir())) == 2

    rc = index_main(["--corpus", str(tmp_path / "nope.jsonl"), "--encoder", "minilm", "--index",
                     str(tmp_path / "x"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.jsonl" in err and "Loading weights" not in err  # fails before loading a model


@pytest.mark.slow
def test_sigkill_during_a_sharded_build_then_resume_gives_the_same_index(tmp_path, capsys):
    """``python -m simlm_ir.index --shard-num 3`` killed with SIGKILL while encoding shard 1, then run
    again: shard 0 is re-used, the rest encoded, and index, docid file and shard vectors are
    bit-identical to an uninterrupted build, with no temp directory left."""
    import tiny as tiny_data
    from crash import hidden_entries, kill_at, torch_threads

    bert = tiny_data.save_tiny_bert(tmp_path / "bert")
    corpus = write_corpus(tmp_path / "corpus.jsonl")

    def args(out):
        return ["--corpus", str(corpus), "--encoder", str(bert), "--index", str(out), "--shard-num", "3",
                "--device", "cpu", "--threads", "1", "--batch-size", "4", "--no-progress"]

    part, full = tmp_path / "part", tmp_path / "full"
    kill_at("simlm_ir.index", args(part), "simlm_ir.encode.encoder:SimLMEncoder.encode_passages", nth=2,
            tmp=tmp_path)
    shards = part / "shards"
    assert [p.name for p in shards.iterdir() if not p.name.startswith(".")] == ["0000-of-0003"]
    assert any(n.startswith(".0001-of-0003.") for n in hidden_entries(shards)) and not (part / "index").exists()

    with torch_threads(1):
        assert index_main(args(part)) == 0
        out = capsys.readouterr().out
        assert "encoded 2 shard(s)" in out and "re-used 1" in out, out
        assert index_main(args(full)) == 0
    assert hidden_entries(part) == []
    assert (part / "docid").read_bytes() == (full / "docid").read_bytes()
    a, b = faiss.read_index(str(part / "index")), faiss.read_index(str(full / "index"))
    assert a.ntotal == b.ntotal == len(PASSAGES)
    assert np.array_equal(a.reconstruct_n(0, a.ntotal), b.reconstruct_n(0, b.ntotal))
    for k in range(3):
        name = f"{k:04d}-of-0003"
        assert (part / "shards" / name / "embeddings.f32").read_bytes() == \
            (full / "shards" / name / "embeddings.f32").read_bytes()
    assert json.loads((part / "simlm_index.json").read_text())["passages"] == len(PASSAGES)
