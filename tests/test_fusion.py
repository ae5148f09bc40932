"""Fusion: Pyserini's normalised interpolation and RRF by hand and against Pyserini, alpha tuning,
and FusionSystem (cached components, summed latency/size, no tuning on the evaluated split)."""

import ast
import importlib.util
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simlm_ir.data.trec import ranked
from simlm_ir.errors import SimLMIRError
from simlm_ir.search.base import IndexInfo, SearchResult
from simlm_ir.search.fusion import FusionSystem, alpha_sweep, interpolate, rrf, tune_alpha

Hit = namedtuple("Hit", "docid score")


def pyserini_hybrid():
    """Pyserini's own ``HybridSearcher._hybrid_results``, compiled from its source file, so the test
    does not import ``pyserini.search`` (which starts the JVM and loads every encoder)."""
    root = Path(importlib.util.find_spec("pyserini").submodule_search_locations[0])
    src = root / "search" / "hybrid" / "_searcher.py"
    tree = ast.parse(src.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "HybridSearcher")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "_hybrid_results")
    fn.decorator_list = []
    ns = {"DenseSearchResult": Hit}
    exec(compile(ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[])), str(src), "exec"), ns)
    return ns["_hybrid_results"]


def test_interpolation_by_hand():
    dense = {"q": {"a": 3.0, "b": 1.0}}
    sparse = {"q": {"b": 10.0, "c": 0.0}}
    # dense: min 1, max 3 -> a (3-2)/2 = .5, b -.5, c missing -> min -> -.5
    # sparse: min 0, max 10 -> b (10-5)/10 = .5, c -.5, a missing -> min -> -.5
    fused = interpolate(dense, sparse, alpha=0.5)["q"]
    assert fused == pytest.approx({"a": 0.25, "b": -0.25, "c": -0.75})
    assert [d for d, _ in ranked(fused)] == ["a", "b", "c"]
    # without normalisation: raw scores, missing -> the run's minimum
    raw = interpolate(dense, sparse, alpha=0.5, normalization=False)["q"]
    assert raw == pytest.approx({"a": 3.0 + 0.5 * 0.0, "b": 1.0 + 0.5 * 10.0, "c": 1.0 + 0.5 * 0.0})
    assert list(interpolate(dense, sparse, alpha=0.5, hits=1)["q"]) == ["a"]


def test_interpolation_matches_pyserini_hybrid_searcher():
    reference = pyserini_hybrid()
    dense = {"d1": 0.91, "d2": 0.85, "d3": 0.80, "d4": 0.42}
    sparse = {"d3": 12.5, "d5": 9.1, "d2": 7.7, "d6": 3.0}
    for alpha in (0.1, 0.5, 1.3):
        for norm in (True, False):
            ours = interpolate({"q": dense}, {"q": sparse}, alpha, normalization=norm)["q"]
            theirs = reference([Hit(d, s) for d, s in dense.items()], [Hit(d, s) for d, s in sparse.items()],
                               alpha, k=100, normalization=norm)
            assert ours == pytest.approx({h.docid: h.score for h in theirs}, abs=1e-12)
            # same order up to ties (Pyserini orders tied documents by set iteration)
            assert [round(s, 12) for _, s in ranked(ours)] == [round(h.score, 12) for h in theirs]


def test_degenerate_runs_do_not_divide_by_zero():
    fused = interpolate({"q": {"a": 2.0}}, {"q": {}}, alpha=1.0)["q"]
    assert fused == {"a": pytest.approx(-0.5)}  # a alone: dense range 0 -> 0; empty sparse -> min 0 of [0, 1]


def test_rrf_by_hand_and_through_pyserini():
    one = {"q": {"a": 9.0, "b": 8.0, "c": 7.0}, "r": {"x": 1.0}}
    two = {"q": {"b": 0.7, "d": 0.5}}
    fused = rrf([one, two], k=60)
    assert fused["q"] == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 63, "d": 1 / 62})
    assert [d for d, _ in ranked(fused["q"])] == ["b", "a", "d", "c"]
    assert fused["r"] == pytest.approx({"x": 1 / 61})
    assert list(rrf([one, two], k=60, hits=2)["q"]) == ["b", "a"]


def test_tune_alpha_picks_the_best_on_dev_only():
    # the dense run has the answer at rank 3; the sparse run at rank 1: weighting sparse helps
    dense = {f"q{i}": {"x": 0.9, "y": 0.8, f"rel{i}": 0.7, "z": 0.1} for i in range(4)}
    sparse = {f"q{i}": {f"rel{i}": 5.0, "x": 1.0, "z": 0.5} for i in range(4)}
    qrels = {f"q{i}": {f"rel{i}": 1} for i in range(4)}
    sweep = alpha_sweep(dense, sparse, qrels, grid=[0.0, 0.1, 2.0], measure="RR@10")
    assert sweep == pytest.approx({0.0: 1 / 3, 0.1: 1 / 3, 2.0: 1.0})
    assert tune_alpha(dense, sparse, qrels, grid=[0.0, 0.1, 2.0]) == 2.0
    assert tune_alpha(dense, sparse, qrels, grid=[0.5, 2.0]) == 0.5  # 0.5 already ranks it first: a tie
    assert tune_alpha(dense, dense, qrels, grid=[0.3, 0.1]) == 0.3  # all tie: the first in the grid


@dataclass
class FakeCollection:
    dataset_id: str
    queries: dict
    qrels: dict = field(default_factory=dict)


class FakeSystem:
    def __init__(self, name, runs, size=100, latency=2.0):
        self.name, self.note, self.runs, self.size, self.latency = name, "", runs, size, latency
        self.searches, self.prepared = 0, []

    def prepare(self, collection, work_dir):
        self.prepared.append(collection.dataset_id)
        return IndexInfo(self.size, 1.5)

    def search(self, queries, k):
        self.searches += 1
        run = {q: dict(ranked(self.runs.get(q, {}))[:k]) for q in queries}
        return SearchResult(run, [self.latency] * len(queries))


def test_fusion_system_caches_components_and_sums_cost(tmp_path, monkeypatch):
    test = FakeCollection("toy/test", {"t1": "x", "t2": "y"}, {"t1": {"a": 1}, "t2": {"c": 1}})
    dev = FakeCollection("toy/dev", {"d1": "x"}, {"d1": {"r": 1}})
    runs_a = {"t1": {"a": 0.9, "b": 0.8}, "t2": {"b": 0.9, "c": 0.1}, "d1": {"w": 0.9, "r": 0.8}}
    runs_b = {"t1": {"b": 9.0}, "t2": {"c": 9.0, "b": 1.0}, "d1": {"r": 9.0, "w": 1.0}}
    a, b = FakeSystem("dense", runs_a, 100, 2.0), FakeSystem("BM25", runs_b, 50, 1.0)
    import simlm_ir.data.datasets

    monkeypatch.setattr(simlm_ir.data.datasets, "load_collection", lambda i, **_: {"toy/dev": dev, "toy/test": test}[i])
    hybrid = FusionSystem(a, b, tune_on="toy/dev", grid=[0.0, 2.0], depth=10)
    rrf_sys = FusionSystem(hybrid.primary, hybrid.secondary, method="rrf", depth=10)
    info = hybrid.prepare(test, tmp_path)
    assert hybrid.alpha == 2.0 and "alpha=2 on BM25, tuned on toy/dev (RR@10 1.0000)" == hybrid.note
    assert (info.size_bytes, info.build_seconds) == (150, 3.0)
    # the components' own leaderboard rows and both fusions share one search per component
    hybrid.primary.search(test.queries, 10)
    res = hybrid.search(test.queries, 10)
    rrf_res = rrf_sys.search(test.queries, 5)
    assert a.searches == 2 and b.searches == 2  # one on dev (tuning), one on test
    assert list(ranked(res.run["t2"]))[0][0] == "c"
    assert all(x >= 3.0 for x in res.latencies_ms + rrf_res.latencies_ms)
    assert rrf_sys.note == "RRF k=60"


def test_fusion_refuses_to_tune_on_the_evaluated_split(tmp_path, monkeypatch):
    test = FakeCollection("toy/test", {"t1": "x"}, {"t1": {"a": 1}})
    a, b = FakeSystem("dense", {}), FakeSystem("BM25", {})
    with pytest.raises(SimLMIRError, match="split being evaluated"):
        FusionSystem(a, b, tune_on="toy/test").prepare(test, tmp_path)
    with pytest.raises(SimLMIRError, match="fixed alpha or a held-out split"):
        FusionSystem(a, b).prepare(test, tmp_path)
    import simlm_ir.data.datasets

    monkeypatch.setattr(simlm_ir.data.datasets, "load_collection", lambda i, **_: FakeCollection(i, {"t1": "x"}, {}))
    with pytest.raises(SimLMIRError, match="shares 1 queries"):
        FusionSystem(a, b, tune_on="toy/dev").prepare(test, tmp_path)
    # the same id for a different question (NQ's files number questions from 0) is not shared
    monkeypatch.setattr(simlm_ir.data.datasets, "load_collection",
                        lambda i, **_: FakeCollection(i, {"t1": "other"}, {}))
    FusionSystem(a, b, tune_on="toy/dev", grid=[0.5]).prepare(test, tmp_path)


def pyserini_rrf_of_one_run(run, k, depth=None, hits=None):
    """Pyserini's ``reciprocal_rank_fusion`` on one run: its merge needs two, so the second run holds
    only a topic no query has (it contributes nothing to any real query)."""
    from pyserini.fusion import reciprocal_rank_fusion
    from pyserini.trectools import TrecRun

    rows = [(q, "Q0", d, rank, s, "a") for q, docs in run.items() for rank, (d, s) in enumerate(ranked(docs), 1)]
    dummy = TrecRun.from_list([("__no_such_query__", "Q0", "__no_doc__", 1, 0.0, "b")])
    fused = reciprocal_rank_fusion([TrecRun.from_list(rows), dummy], rrf_k=k, depth=depth, k=hits)
    out = {}
    for q, d, s in fused.run_data[["topic", "docid", "score"]].itertuples(index=False):
        if q != "__no_such_query__":
            out.setdefault(q, {})[d] = s
    return out


def test_rrf_of_a_single_run_matches_pyserini():
    """The one-run path (Pyserini's merge refuses a single run, so it is ours) against Pyserini."""
    run = {"q": {"a": 9.0, "b": 8.5, "c": 7.0, "d": 7.0, "e": 1.0}, "r": {"x": 3.0, "y": 4.0}}
    for k, depth, hits in ((60, None, None), (10, 3, None), (1, None, 2), (60, 4, 3)):
        ours = rrf([run, {}], k=k, depth=depth, hits=hits)  # an empty second run leaves one run
        theirs = pyserini_rrf_of_one_run(run, k, depth, hits)
        assert set(ours) == set(theirs)
        for q in theirs:
            assert ours[q] == pytest.approx(theirs[q], rel=1e-12), (k, depth, hits, q)
            assert [d for d, _ in ranked(ours[q])] == list(theirs[q])
    # by hand: rank 1 scores 1 / (k + 1)
    assert rrf([run], k=60)["r"] == pytest.approx({"y": 1 / 61, "x": 1 / 62})


def test_interpolation_keeps_queries_of_either_run_and_breaks_ties_by_docid():
    # a query only the secondary run answered still gets a fused list (the empty primary run takes
    # Pyserini's defaults min 0, max 1: -0.5 everywhere; secondary x .5, y -.5, times alpha .5)
    only_b = interpolate({"q1": {"a": 1.0}}, {"q2": {"x": 3.0, "y": 1.0}}, alpha=0.5)
    assert only_b["q2"] == pytest.approx({"x": -0.25, "y": -0.75}) and list(only_b) == ["q1", "q2"]
    # 40 documents with the same fused score come back in docid order
    docs = {f"d{i:02d}": 1.0 for i in range(40)}
    fused = interpolate({"q": docs}, {"q": dict(docs)}, alpha=1.0)["q"]
    assert list(fused) == sorted(docs)
    assert list(interpolate({"q": docs}, {"q": dict(docs)}, alpha=1.0, hits=5)["q"]) == sorted(docs)[:5]


def test_alpha_sweep_cuts_each_list_at_hits_and_uses_the_measure_asked():
    dense = {"q": {"x": 0.9, "rel": 0.8, "z": 0.1}}
    sparse = {"q": {"x": 2.0, "rel": 1.0}}
    qrels = {"q": {"rel": 1}}
    assert alpha_sweep(dense, sparse, qrels, grid=[0.5], measure="RR@10") == {0.5: pytest.approx(0.5)}
    assert alpha_sweep(dense, sparse, qrels, grid=[0.5], measure="RR@10", hits=1) == {0.5: 0.0}
    assert alpha_sweep(dense, sparse, qrels, grid=[0.5], measure="P@1") == {0.5: 0.0}
    # raw scores: the sparse run's larger scale wins at alpha 1; normalised, the two tie and "rel"
    # (docid order) cannot pass "x" either way, so only the unnormalised sweep can be told apart
    dense2 = {"q": {"rel": 0.9, "x": 0.8}}
    sparse2 = {"q": {"x": 10.0, "rel": 0.0}}
    assert tune_alpha(dense2, sparse2, qrels, grid=[1.0, 0.0], normalization=False) == 0.0
    assert alpha_sweep(dense2, sparse2, qrels, grid=[1.0], normalization=False) == {1.0: pytest.approx(0.5)}


def test_cached_system_serves_a_shallower_search_cut_to_k_and_forwards_work_dir(tmp_path):
    from simlm_ir.search.run_cache import CachedSystem, cached

    calls = []

    class Recording(FakeSystem):
        def prepare(self, collection, work_dir):
            calls.append(work_dir)
            return super().prepare(collection, work_dir)

    inner = Recording("dense", {"q": {f"d{i}": 10.0 - i for i in range(8)}})
    sys_ = cached(inner)
    assert isinstance(sys_, CachedSystem) and cached(sys_) is sys_ and sys_.name == "dense"
    coll = FakeCollection("toy/test", {"q": "x"})
    info = sys_.prepare(coll, tmp_path)
    assert sys_.prepare(coll, tmp_path) is info and calls == [tmp_path]  # prepared once
    deep = sys_.search({"q": "x"}, 6)
    shallow = sys_.search({"q": "x"}, 3)
    assert inner.searches == 1
    assert list(deep.run["q"]) == [f"d{i}" for i in range(6)]
    assert list(shallow.run["q"]) == ["d0", "d1", "d2"] and shallow.latencies_ms == [2.0]
    assert sys_.search({"q": "x"}, 8).run["q"] == {f"d{i}": 10.0 - i for i in range(8)} and inner.searches == 2


def test_fusion_system_search_cuts_to_k_uses_its_settings_and_adds_fusion_time(tmp_path, monkeypatch):
    import simlm_ir.search.fusion as fusion

    runs_a = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"b": 1.0}}
    runs_b = {"q1": {"c": 5.0, "d": 4.0}, "q2": {"d": 2.0, "a": 1.0}}
    coll = FakeCollection("toy/test", {"q1": "x", "q2": "y"})
    queries = coll.queries

    rrf_sys = FusionSystem(FakeSystem("dense", runs_a, latency=2.0), FakeSystem("BM25", runs_b, latency=1.0),
                           method="rrf", rrf_k=1, depth=10, note="k small")
    assert rrf_sys.name == "dense + BM25 (RRF)" and rrf_sys.note == "RRF k=1; k small"
    rrf_sys.prepare(coll, tmp_path)  # RRF has nothing to tune: no held-out split needed
    assert rrf_sys.alpha is None
    ticks = iter([100.0, 100.004])  # the fusion of 2 queries takes 4 ms -> 2 ms per query
    monkeypatch.setattr(fusion.time, "perf_counter", lambda: next(ticks))
    res = rrf_sys.search(queries, 2)
    monkeypatch.undo()
    assert res.run["q1"] == pytest.approx({"c": 1 / 4 + 1 / 2, "a": 1 / 2})  # k=1: 1/(1+rank)
    assert res.latencies_ms == pytest.approx([2.0 + 1.0 + 2.0] * 2)

    hybrid = FusionSystem(FakeSystem("dense", runs_a), FakeSystem("BM25", runs_b), alpha=0.5, depth=10)
    assert hybrid.name == "dense + BM25 (hybrid)" and hybrid.note == "alpha=0.5 on BM25"
    hybrid.prepare(coll, tmp_path)
    got = hybrid.search(queries, 2).run
    want = interpolate(runs_a, runs_b, 0.5, normalization=True)
    assert got == {q: dict(list(want[q].items())[:2]) for q in queries}
    assert len(got["q1"]) == 2 and got["q1"] != interpolate(runs_a, runs_b, 0.5, normalization=False, hits=2)["q1"]


def test_fusion_system_tunes_to_the_best_alpha_on_dev_not_the_largest(tmp_path, monkeypatch):
    import simlm_ir.data.datasets

    dev = FakeCollection("toy/dev", {"d1": "x", "d2": "y"}, {"d1": {"r1": 1}, "d2": {"r2": 1}})
    test = FakeCollection("toy/test", {"t1": "z"}, {"t1": {"a": 1}})
    # dense ranks the answer 2nd; sparse 1st but with a big score gap elsewhere, so only a small
    # alpha lifts it without letting sparse's wrong top document through
    runs_a = {"d1": {"w": 0.9, "r1": 0.85, "v": 0.1}, "d2": {"w": 0.9, "r2": 0.85, "v": 0.1}}
    runs_b = {"d1": {"v": 10.0, "r1": 6.0, "w": 0.0}, "d2": {"v": 10.0, "r2": 6.0, "w": 0.0}}
    monkeypatch.setattr(simlm_ir.data.datasets, "load_collection", lambda i, **_: {"toy/dev": dev, "toy/test": test}[i])
    seen = []

    class Recording(FakeSystem):
        def search(self, queries, k):
            seen.append(k)
            return super().search(queries, k)

    grid = [0.0, 0.5, 1.0, 3.0]
    want = alpha_sweep(runs_a, runs_b, dev.qrels, grid=grid, hits=7)
    best = max(want.values())
    assert [a for a in grid if want[a] == best] == [0.5, 1.0] and want[3.0] < best  # a tie, then worse
    hybrid = FusionSystem(Recording("dense", runs_a), Recording("BM25", runs_b), tune_on="toy/dev", grid=grid, depth=7)
    hybrid.prepare(test, tmp_path)
    assert hybrid.alpha == 0.5 and hybrid.sweep == want and seen == [7, 7]


def test_a_short_fused_top_is_the_head_of_the_full_ranking_ties_included():
    """alpha_sweep fuses only as deep as its measure's cutoff; that top must be exactly the first
    documents of the full stable ranking, ties at the cut included."""
    import numpy as np

    from simlm_ir.search.fusion import _QueryPair

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = 200
        a = {f"d{i:03d}": float(rng.integers(0, 6)) for i in range(n)}  # few distinct values: many ties
        b = {f"d{i:03d}": float(rng.integers(0, 4)) for i in rng.permutation(n)[:150]}
        pair = _QueryPair.build(a, b, normalization=True)
        full = list(pair.fuse(0.5, None).items())
        for hits in (1, 7, 10, 49):
            assert list(pair.fuse(0.5, hits).items()) == full[:hits]
