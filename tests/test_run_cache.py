"""Runs kept on disk by content: a second benchmark run serves each run from disk, re-times only the
latency sample, and never serves a run whose system, queries, depth or code changed."""

from dataclasses import dataclass, field

import pytest

from simlm_ir.data.trec import ranked
from simlm_ir.search.base import IndexInfo, SearchResult


@dataclass
class Coll:
    dataset_id: str
    queries: dict
    qrels: dict = field(default_factory=dict)


class Keyed:
    """A system that can say what decides its run; counts its searches and latency samples."""

    def __init__(self, runs, key="v1"):
        self.name, self.note, self.runs, self.key = "keyed", "", runs, key
        self.searches = self.batches = self.timed = 0

    def prepare(self, collection, work_dir):
        return IndexInfo(10, 1.0)

    def run_key(self):
        return {"system": "keyed", "version": self.key}

    def latencies(self, queries, k):
        self.timed += 1
        return [3.0] * min(2, len(queries))

    def _run(self, queries, k):
        return {q: dict(ranked(self.runs[q])[:k]) for q in queries}

    def search(self, queries, k):
        self.searches += 1
        self.note = "found out while searching"
        return SearchResult(self._run(queries, k), self.latencies(queries, k))

    def batch_run(self, queries, k):
        self.batches += 1
        return self._run(queries, k)


RUNS = {"q1": {"a": 0.1 + 0.2, "b": 1 / 3, "c": -2.5e-7}, "q2": {"z": 7.0, "y": 7.0}}
QUERIES = {"q1": "text editor", "q2": "web browser"}


def test_run_cache_gives_back_scores_and_order_exactly(tmp_path):
    from simlm_ir.search.run_cache import RunCache

    cache = RunCache(tmp_path)
    assert cache.get("k") is None
    run = {"q1": {"b": 1 / 3, "a": 0.1 + 0.2, "c": -2.5e-7}, "q2": {}}
    cache.put("k", run, searched=True, note="n")
    got, extra = cache.get("k")
    assert got == run and extra == {"searched": True, "note": "n"}
    assert [list(d) for d in got.values()] == [list(d) for d in run.values()]  # document order kept
    assert not [p for p in tmp_path.iterdir() if p.name != "k.json.gz"]  # no temp file left


@pytest.mark.parametrize("damage", [b"", b"not gzip", "truncated", "no run"])
def test_a_damaged_cache_file_is_a_miss_and_is_written_again(tmp_path, damage):
    import gzip
    import json

    from simlm_ir.search.run_cache import RunCache

    cache = RunCache(tmp_path)
    cache.put("k", {"q": {"d": 1.0}}, searched=True)
    path = tmp_path / "k.json.gz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-8])
    elif damage == "no run":
        path.write_bytes(gzip.compress(json.dumps({"searched": True}).encode()))
    else:
        path.write_bytes(damage)
    assert cache.get("k") is None
    cache.put("k", {"q": {"d": 2.0}}, searched=True)
    assert cache.get("k") == ({"q": {"d": 2.0}}, {"searched": True})


def test_key_changes_with_system_queries_depth_and_code(monkeypatch):
    import simlm_ir.search.run_cache as rc

    base = rc.run_cache_key({"s": 1}, QUERIES, 10)
    assert rc.run_cache_key({"s": 1}, dict(QUERIES), 10) == base
    assert rc.run_cache_key({"s": 2}, QUERIES, 10) != base
    assert rc.run_cache_key({"s": 1}, QUERIES, 11) != base
    assert rc.run_cache_key({"s": 1}, {**QUERIES, "q2": "web browsers"}, 10) != base  # same id, new text
    assert rc.run_cache_key({"s": 1}, {"q2": QUERIES["q2"], "q1": QUERIES["q1"]}, 10) != base  # run order
    monkeypatch.setattr(rc, "code_fingerprint", lambda: "edited")
    assert rc.run_cache_key({"s": 1}, QUERIES, 10) != base


def test_code_fingerprint_covers_the_search_code():
    from pathlib import Path

    import simlm_ir
    from simlm_ir.search.run_cache import CODE_PACKAGES, code_fingerprint

    root = Path(simlm_ir.__file__).parent
    assert {"search", "index", "encode", "modeling"} <= set(CODE_PACKAGES)
    assert all((root / p).is_dir() for p in CODE_PACKAGES)
    assert len(code_fingerprint()) == 16


def test_a_second_process_serves_the_run_from_disk_and_re_times_latency(tmp_path):
    from simlm_ir.search.run_cache import cached

    coll = Coll("toy/test", QUERIES)
    first = cached(Keyed(RUNS))
    first.prepare(coll, tmp_path)
    want = first.search(QUERIES, 10)
    assert first.system.searches == 1

    inner = Keyed({q: {} for q in RUNS})  # would give empty runs if it searched
    second = cached(inner)  # a new process: nothing in memory
    second.prepare(coll, tmp_path)
    got = second.search(QUERIES, 10)
    assert inner.searches == 0 and inner.batches == 0 and inner.timed == 1
    assert got.run == want.run and got.latencies_ms == [3.0, 3.0]
    assert second.note == "found out while searching"  # the search's note came back with its run
    assert second.batch_run(QUERIES, 10) == want.run and inner.batches == 0

    changed = cached(Keyed({q: {} for q in RUNS}, key="v2"))  # another checkpoint: searched again
    changed.prepare(coll, tmp_path)
    assert changed.search(QUERIES, 10).run == {"q1": {}, "q2": {}} and changed.system.searches == 1


def test_batch_run_is_stored_but_a_search_still_computes_its_note(tmp_path):
    from simlm_ir.search.run_cache import cached

    coll = Coll("toy/dev", QUERIES)
    tuner = cached(Keyed(RUNS))
    tuner.prepare(coll, tmp_path)
    run = tuner.batch_run(QUERIES, 5)
    again = cached(Keyed(RUNS))
    again.prepare(coll, tmp_path)
    assert again.batch_run(QUERIES, 5) == run and again.system.batches == 0
    result = again.search(QUERIES, 5)  # the stored run has no note: the search runs (and stores one)
    assert again.system.searches == 1 and result.run == run
    third = cached(Keyed(RUNS))
    third.prepare(coll, tmp_path)
    assert third.search(QUERIES, 5).run == run and third.system.searches == 0


def test_systems_without_a_key_are_never_stored(tmp_path):
    from simlm_ir.search.run_cache import RUN_CACHE_DIR, cached

    class Unkeyed(Keyed):
        run_key = None

    sys_ = cached(Unkeyed(RUNS))
    sys_.prepare(Coll("toy/test", QUERIES), tmp_path)
    sys_.search(QUERIES, 10)
    assert not (tmp_path / RUN_CACHE_DIR).exists()


@pytest.mark.parametrize("k", [1, 2])
def test_memory_hit_serves_a_shallower_depth_from_a_deeper_disk_run(tmp_path, k):
    from simlm_ir.search.run_cache import cached

    sys_ = cached(Keyed(RUNS))
    sys_.prepare(Coll("toy/test", QUERIES), tmp_path)
    deep = sys_.search(QUERIES, 10)
    assert sys_.batch_run(QUERIES, k) == {q: dict(ranked(d)[:k]) for q, d in deep.run.items()}
    assert sys_.system.batches == 0


def test_only_the_part_of_a_note_the_search_changed_comes_from_the_cache(tmp_path):
    """A note the system makes itself (e.g. from its checkpoint's recipe) is made afresh on a cache hit;
    a note its search rewrote (e.g. recall against exact search) comes back with the run."""
    from simlm_ir.search.run_cache import cached

    class Fixed(Keyed):
        def search(self, queries, k):
            self.searches += 1
            return SearchResult(self._run(queries, k), self.latencies(queries, k))

    coll = Coll("toy/test", QUERIES)
    first = cached(Fixed(RUNS))
    first.system.note = "trained for 1 epoch(s)"
    first.prepare(coll, tmp_path)
    first.search(QUERIES, 10)
    second = cached(Fixed(RUNS))
    second.system.note = "trained for 1 epoch"  # the system's own note changed, not its run
    second.prepare(coll, tmp_path)
    second.search(QUERIES, 10)
    assert second.system.searches == 0 and second.note == "trained for 1 epoch"
