from simlm_ir.bench.systems import RecordedRunSystem, build_systems, model_fingerprint, record_run
from simlm_ir.modeling.checkpoints import DEFAULT_SIMLM_DIR
from simlm_ir.search.base import IndexInfo, SearchResult


def test_recorded_run_replays_run_and_measurements(tmp_path):
    run = {"q1": {"d1": 2.0, "d2": 1.5, "d3": 0.1}, "q2": {"d9": 0.3}}
    meta = record_run(tmp_path, "stage-1", "SimLM stage 1", "BM25 negatives", SearchResult(run, [1.0, 2.5]),
                      IndexInfo(1234, 5.5), {"checkpoint": "work/stage1"})
    system = RecordedRunSystem(meta)
    assert system.name == "SimLM stage 1" and system.note == "BM25 negatives; recorded run"
    info = system.prepare(None, tmp_path)
    assert (info.size_bytes, info.build_seconds) == (1234, 5.5)
    replay = system.search({"q1": "x", "q2": "y"}, k=2)
    assert replay.run == {"q1": {"d1": 2.0, "d2": 1.5}, "q2": {"d9": 0.3}}
    assert replay.latencies_ms == [1.0, 2.5]
    assert system.search({"q2": "y"}, k=10).run == {"q2": {"d9": 0.3}}


def test_model_fingerprint_follows_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights-a")
    a = model_fingerprint(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"weights-b")
    assert model_fingerprint(str(tmp_path)) != a
    assert model_fingerprint("intfloat/simlm-base-msmarco") == model_fingerprint("intfloat/simlm-base-msmarco")


def test_build_systems_order_and_missing_checkpoints(tmp_path):
    said = []
    systems = build_systems(["bm25", "minilm", "recorded"], recorded_dir=tmp_path / "none", say=said.append)
    assert [s.name for s in systems] == ["BM25", "MiniLM-L6 (off the shelf)"]
    systems = build_systems(["simlm"], reranker="reranker-default", say=said.append)
    if not (DEFAULT_SIMLM_DIR / "config.json").exists():
        assert systems == [] and "not built yet" in said[-1]
    else:
        assert [s.name for s in systems] == ["SimLM"]


def test_live_system_replaces_its_recorded_run(tmp_path):
    from simlm_ir.bench.systems import BM25System, prefer_live

    meta = record_run(tmp_path, "bm25", "BM25", "", SearchResult({"q": {"d": 1.0}}, [1.0]), IndexInfo(1, 1.0))
    other = record_run(tmp_path, "old", "Old model", "", SearchResult({"q": {"d": 1.0}}, [1.0]), IndexInfo(1, 1.0))
    kept = prefer_live([BM25System(), RecordedRunSystem(meta), RecordedRunSystem(other)])
    assert [type(s).__name__ for s in kept] == ["BM25System", "RecordedRunSystem"] and kept[1].name == "Old model"


def test_rerank_keeps_first_stage_tail_below_rescored_top(tmp_path):
    from simlm_ir.bench.systems import RerankSystem
    from simlm_ir.search.rerank import ScoreCache

    class FakeBM25:
        def search(self, queries, k):
            return SearchResult({"q": {f"d{i}": 10.0 - i for i in range(k)}}, [1.0])

    class FakeCE:  # scores a passage by the number in its text: reverses BM25's top `depth`
        calls = 0

        def score(self, queries, titles, texts, on_batch=None):
            FakeCE.calls += len(texts)
            return [float(t.split()[-1]) for t in texts]

    system = RerankSystem("unused", depth=3, bm25=FakeBM25(), latency_queries=1)
    system.ce, system.cache = FakeCE(), ScoreCache(tmp_path / "scores.sqlite")
    system.docs = {f"d{i}": ("-", f"passage {i}") for i in range(6)}
    result = system.search({"q": "text"}, k=6)
    order = sorted(result.run["q"], key=lambda d: -result.run["q"][d])
    assert order == ["d2", "d1", "d0", "d3", "d4", "d5"]
    assert len(result.latencies_ms) == 1 and result.latencies_ms[0] >= 1.0  # BM25's 1 ms + the re-ranking
    assert FakeCE.calls == 3 + 3  # the batch, then the latency sample (never from the cache)
    again = system.search({"q": "text"}, k=6)
    assert again.run == result.run and FakeCE.calls == 6 + 3  # the scores came from the cache


def test_latency_sample_times_the_first_queries_alone_in_order():
    from simlm_ir.search.base import sample_latencies

    seen = []
    queries = {f"q{i}": f"text {i}" for i in range(5)}
    latencies = sample_latencies(queries, seen.append, n=3)
    assert seen == ["text 0", "text 1", "text 2"] and len(latencies) == 3 and all(x >= 0 for x in latencies)
    assert len(sample_latencies(queries, seen.append, n=32)) == 5  # fewer queries than the sample


def test_batch_searched_runs_equal_one_query_at_a_time(tmp_path):
    """The rows' runs come from batch searches; they must be the runs of one-at-a-time search."""
    from simlm_ir.bench.systems import BM25System
    from simlm_ir.data.datasets import load_collection

    collection = load_collection("debian-known-item/test")
    queries = dict(list(collection.queries.items())[:40])
    bm25 = BM25System()
    bm25.prepare(collection, tmp_path)
    result = bm25.search(queries, 50)
    assert len(result.latencies_ms) == 32
    assert result.run == bm25.searcher.search(queries, 50).run
