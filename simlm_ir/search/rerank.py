"""Re-ranking a first-stage run with a cross-encoder: every (query, passage) pair scored once, in
length-sorted batches across queries, and kept in a content-keyed cache.

The cache is an SQLite file per model (keyed by a hash of the query text, the passage's title and
text), so a second run, another depth, or another collection sharing passages re-scores nothing it
has scored before; a changed passage or query is a new key. Per-query latency is measured apart, on a
sample of queries re-ranked one at a time (what a user's single request costs), never from the cache.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Mapping, Sequence

from simlm_ir.data.trec import Run, ranked
from simlm_ir.util.progress import progress


def pair_key(query: str, title: str, text: str) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in (query, title, text):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.digest()


class ScoreCache:
    """Cross-encoder scores by pair content, in ``path`` (SQLite; each batch of writes is one
    transaction, so an interrupted run keeps what it committed and nothing half-written)."""

    def __init__(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS scores (key BLOB PRIMARY KEY, score REAL NOT NULL)")

    def get(self, keys: Sequence[bytes]) -> dict[bytes, float]:
        found: dict[bytes, float] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self.db.execute(f"SELECT key, score FROM scores WHERE key IN ({','.join('?' * len(chunk))})",
                                   chunk).fetchall()
            found.update(rows)
        return found

    def put(self, items: Mapping[bytes, float]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", list(items.items()))

    def close(self) -> None:
        self.db.close()


def rerank_run(ce, run: Run, queries: Mapping[str, str], docs: Mapping[str, tuple[str, str]], depth: int,
               cache: ScoreCache | None = None, chunk: int = 4096) -> tuple[Run, int]:
    """Scores of each query's top ``depth`` documents; returns (new run, pairs scored now).

    Pairs missing from ``cache`` are scored in chunks of ``chunk`` pairs (each chunk committed to the
    cache), with a progress bar that moves per forward pass."""
    tops = {qid: [d for d, _ in ranked(hits)[:depth]] for qid, hits in run.items()}
    keys = {(q, d): pair_key(queries[q], *docs[d]) for q, top in tops.items() for d in top}
    known = cache.get(list(set(keys.values()))) if cache is not None else {}
    todo = list(dict.fromkeys((q, d) for (q, d), k in keys.items() if k not in known))
    with progress(total=len(todo), desc="re-rank", unit="pair") as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            scores = ce.score([queries[q] for q, _ in part], [docs[d][0] for _, d in part],
                              [docs[d][1] for _, d in part], on_batch=bar.update)
            fresh = {keys[p]: float(s) for p, s in zip(part, scores)}
            known.update(fresh)
            if cache is not None:
                cache.put(fresh)
    return {q: {d: known[keys[(q, d)]] for d in top} for q, top in tops.items()}, len(todo)


def rerank_latencies(ce, run: Run, queries: Mapping[str, str], docs: Mapping[str, tuple[str, str]], depth: int,
                     qids: Sequence[str]) -> dict[str, float]:
    """Milliseconds to re-rank each of ``qids`` alone (its top ``depth`` as one request, no cache)."""
    out = {}
    for qid in qids:
        top = [d for d, _ in ranked(run[qid])[:depth]]
        start = time.perf_counter()
        ce.score([queries[qid]] * len(top), [docs[d][0] for d in top], [docs[d][1] for d in top])
        out[qid] = (time.perf_counter() - start) * 1000
    return out
