"""Runs kept on disk by content, so a second benchmark run searches nothing it has searched before.

A system that can say what decides its results offers ``run_key()`` (after ``prepare``): a JSON-able
description of its index (the cache directories are already keyed by corpus and model content), its
query encoder and its search parameters. The cache key adds the queries (ids and text), the depth and
a fingerprint of the source of the packages that compute runs (``simlm_ir.data``, ``encode``,
``index``, ``modeling``, ``search``): an edit there, a changed query or another checkpoint is a new
key, so a stale run is never served.

Only the run is kept. Per-query latency is a measurement of this machine now, so a system served from
the cache still times its latency sample live (``latencies(queries, k)``); a note the search changed
(e.g. the Lucene rows' recall against FAISS) is kept with the run. Files are gzipped JSON written to a
temporary file and renamed, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import Mapping

import simlm_ir
from simlm_ir.data.trec import Run, ranked
from simlm_ir.search.base import SearchResult
from simlm_ir.util.io import atomic_write

# the packages whose code decides a run's content (benchmark plumbing, training and docs do not)
CODE_PACKAGES = ("data", "encode", "index", "modeling", "search")
RUN_CACHE_DIR = "runs-cache"


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the source files of :data:`CODE_PACKAGES` (paths and contents)."""
    root = Path(simlm_ir.__file__).parent
    h = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(b"\x00")
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def run_cache_key(system_key: Mapping, queries: Mapping[str, str], k: int) -> str:
    """The cache key of ``system_key``'s run of ``queries`` at depth ``k`` under the current code."""
    h = hashlib.sha256(json.dumps({"system": system_key, "k": k, "code": code_fingerprint()},
                                  sort_keys=True, default=str).encode())
    for qid, text in queries.items():
        h.update(f"{qid}\x00{text}\x00".encode())
    return h.hexdigest()[:32]


class RunCache:
    """Runs by key under ``directory`` (one gzipped JSON file each, with a few extra fields)."""

    def __init__(self, directory):
        self.dir = Path(directory)

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json.gz"

    def get(self, key: str) -> tuple[Run, dict] | None:
        """(run, extra fields) stored under ``key``, or None. Document order and float scores come
        back exactly as stored (JSON keeps a float's shortest repr). A file that cannot be read as a
        stored run (damaged on disk, or edited by hand) is a miss: the run is searched and written again."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
            run = {qid: dict(hits) for qid, hits in data.pop("run").items()}
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return run, data

    def put(self, key: str, run: Run, **extra) -> None:
        payload = {"run": {qid: list(docs.items()) for qid, docs in run.items()}, **extra}
        with atomic_write(self._path(key), "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                                        compresslevel=1) as fh:
            fh.write(json.dumps(payload).encode("utf-8"))


class CachedSystem:
    """A system whose runs are kept: in memory, so a fusion of it and the system's own leaderboard
    row search each query once (a deeper search serves a shallower one), and on disk under
    ``work_dir/runs-cache/`` when the system offers ``run_key()`` and ``latencies()``, so a later
    benchmark run only re-times the latency sample. Keyed by collection, queries and depth."""

    def __init__(self, system):
        self.system = system
        self._prepared: tuple[str, str] | None = None
        self._info = None
        self._disk: RunCache | None = None
        self._results: dict[tuple, tuple[int, SearchResult]] = {}

    def __getattr__(self, item):  # name, note and anything else the wrapped system has
        return getattr(self.__dict__["system"], item)

    def prepare(self, collection, work_dir: Path):
        key = (collection.dataset_id, str(work_dir))
        if self._prepared != key:
            self._info = self.system.prepare(collection, work_dir)
            self._prepared = key
            persistent = all(callable(getattr(self.system, m, None)) for m in ("run_key", "latencies"))
            self._disk = RunCache(Path(work_dir) / RUN_CACHE_DIR) if persistent else None
        return self._info

    def _stored(self, queries: Mapping[str, str], k: int) -> tuple[str | None, tuple[Run, dict] | None]:
        """(disk key, what is stored under it); (None, None) when this system is not kept on disk."""
        system_key = self.system.run_key() if self._disk is not None else None
        if system_key is None:
            return None, None
        key = run_cache_key(system_key, queries, k)
        return key, self._disk.get(key)

    def search(self, queries: Mapping[str, str], k: int) -> SearchResult:
        key = (self._prepared, tuple(queries.items()))
        hit = self._results.get(key)
        if hit is None or hit[0] < k:
            hit = (k, self._search(dict(queries), k))
            self._results[key] = hit
        depth, result = hit
        if depth == k:
            return result
        return SearchResult(_cut(result.run, k), list(result.latencies_ms))

    def _search(self, queries: dict[str, str], k: int) -> SearchResult:
        disk_key, stored = self._stored(queries, k)
        if stored is not None and stored[1].get("searched"):  # one stored by batch_run lacks the search's note
            run, extra = stored
            result = SearchResult(run, self.system.latencies(queries, k))
            if "note" in extra:  # what the search itself found out (e.g. recall against exact search)
                self.system.note = extra["note"]
            return result
        before = getattr(self.system, "note", "")
        result = self.system.search(queries, k)
        if disk_key:
            after = getattr(self.system, "note", "")
            # only a note the search changed is kept: the rest of a note is the system's own, made afresh
            self._disk.put(disk_key, result.run, searched=True, **({"note": after} if after != before else {}))
        return result

    def batch_run(self, queries: Mapping[str, str], k: int) -> Run:
        """The run alone (for tuning a fusion): from memory or disk, else the system's batch search."""
        queries = dict(queries)
        hit = self._results.get((self._prepared, tuple(queries.items())))
        if hit is not None and hit[0] >= k:
            return _cut(hit[1].run, k)
        disk_key, stored = self._stored(queries, k)
        if stored is not None:
            return stored[0]
        batch = getattr(self.system, "batch_run", None)
        run = batch(queries, k) if batch else self.system.search(queries, k).run
        if disk_key:
            self._disk.put(disk_key, run)
        return run


def _cut(run: Run, k: int) -> Run:
    """Each query's top ``k`` of a deeper run."""
    return {q: dict(ranked(docs)[:k]) for q, docs in run.items()}


def cached(system) -> CachedSystem:
    return system if isinstance(system, CachedSystem) else CachedSystem(system)
