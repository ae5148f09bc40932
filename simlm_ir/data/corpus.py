"""Passage corpora in Pyserini JSONL files/directories: reading (validated), writing, fingerprinting.

Every corpus becomes a stream of :class:`Passage` (id, title, text). JSONL lines may be Pyserini's
``{"id", "contents"}`` or BEIR-style ``{"id"|"_id", "title", "text"}``; files may be gzipped
(``*.jsonl.gz``). Problems are reported as one :class:`~simlm_ir.errors.InputFormatError` naming the
file and line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from simlm_ir.errors import InputFormatError
from simlm_ir.util.io import atomic_write

NO_TITLE = "-"  # what SimLM feeds as the title of a passage that has none


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """Title and text joined as Pyserini's BEIR "flat" indexes do."""
        return f"{self.title}\n{self.text}" if self.title and self.title != NO_TITLE else self.text


def parse_jsonl_line(line: str, path, lineno: int) -> Passage:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, lineno, f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InputFormatError(path, lineno, "expected a JSON object with 'id' and 'contents'")
    doc_id = obj.get("id", obj.get("_id", obj.get("docid")))
    if doc_id is None or str(doc_id).strip() == "":
        raise InputFormatError(path, lineno, "document has no 'id'")
    if "text" in obj:  # structured fields win over Pyserini's flattened "contents"
        title, text = obj.get("title") or NO_TITLE, obj["text"]
    elif "contents" in obj:
        title, text = NO_TITLE, obj["contents"]
    else:
        raise InputFormatError(path, lineno, "document has neither 'contents' nor 'text'")
    if not isinstance(text, str):
        raise InputFormatError(path, lineno, "'contents'/'text' must be a string")
    return Passage(str(doc_id), str(title), text)


JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
BEIR_CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")


def beir_corpus_file(directory) -> Path | None:
    """The corpus file of a directory in BEIR's unzipped layout (``corpus.jsonl`` beside
    ``queries.jsonl``), else None."""
    d = Path(directory)
    if not d.is_dir() or not any((d / q).is_file() for q in ("queries.jsonl", "queries.jsonl.gz")):
        return None
    return next((d / c for c in BEIR_CORPUS_NAMES if (d / c).is_file()), None)


def jsonl_files(path) -> list[Path]:
    """The JSONL files of a corpus given as one file or a directory of them (sorted); a directory in
    BEIR's layout means its ``corpus.jsonl`` alone (not its queries)."""
    p = Path(path)
    if p.is_dir():
        beir = beir_corpus_file(p)
        if beir is not None:
            return [beir]
        files = sorted(f for f in p.iterdir() if f.name.endswith(JSONL_SUFFIXES) and f.is_file())
        if not files:
            raise InputFormatError(p, None, "directory holds no .jsonl or .jsonl.gz files")
        return files
    if not p.exists():
        raise InputFormatError(p, None, "no such corpus file or directory")
    return [p]


def open_text(path: Path):
    """Open a corpus file for reading text, gunzipping ``*.gz`` transparently."""
    if str(path).endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_json_objects(path, expected: str = "a JSON object") -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` per non-blank line of a JSONL file, gzipped or not. A line that is not
    JSON, or not a JSON object, is one InputFormatError naming the file and line (``expected`` says
    what the object should look like)."""
    with open_text(Path(path)) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFormatError(path, lineno, f"not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputFormatError(path, lineno, f"expected {expected}")
            yield lineno, obj


class IdSet:
    """Exact duplicate detection over any number of ids in 16 bytes per id (a Python ``set`` of
    strings costs ~80-100 bytes per id: ~0.8 GB for MS MARCO's 8.8M passages vs ~140 MB here).

    Stores a 64-bit hash and the ordinal of every id in sorted runs whose sizes halve down the list
    (merged like a log-structured merge tree), so adding n ids costs O(n log n) numpy work. A hash
    match is only a *candidate*: the caller confirms it against the earlier id (by ordinal), so hash
    collisions never cause false errors.
    """

    def __init__(self):
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted keys, their ordinals)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def keys(ids: list[str]) -> np.ndarray:
        # str hashes are cached on the object and stable within a process: all an in-process set needs
        return np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))

    def candidates(self, keys: np.ndarray) -> list[tuple[int, int]]:
        """(position in ``keys``, earlier ordinal) for every key seen before or twice in ``keys``."""
        found = []
        for run_keys, run_ords in self._runs:
            pos = np.minimum(np.searchsorted(run_keys, keys), len(run_keys) - 1)
            for i in np.flatnonzero(run_keys[pos] == keys):
                lo, hi = np.searchsorted(run_keys, keys[i], "left"), np.searchsorted(run_keys, keys[i], "right")
                found.extend((int(i), int(o)) for o in run_ords[lo:hi])
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        for j in np.flatnonzero(sk[1:] == sk[:-1]):
            found.append((int(order[j + 1]), self._count + int(order[j])))
        return sorted(found)

    def add(self, keys: np.ndarray) -> None:
        """Add a chunk of keys (ordinals continue from the ids added before)."""
        order = np.argsort(keys, kind="stable")
        run = (keys[order], self._count + order.astype(np.int64))
        self._count += len(keys)
        while self._runs and len(self._runs[-1][0]) <= len(run[0]):
            prev = self._runs.pop()
            k = np.concatenate([prev[0], run[0]])
            o = np.concatenate([prev[1], run[1]])
            order = np.argsort(k, kind="stable")
            run = (k[order], o[order])
        self._runs.append(run)


DUPLICATE_CHECK_CHUNK = 8192  # passages checked together (held in memory before they are yielded)


def _passage_at(files: list[Path], ordinal: int) -> tuple[Path, int, str]:
    """File, line and id of the ``ordinal``-th passage (0-based) of a JSONL corpus: a re-scan, only
    done to confirm a duplicate-id candidate."""
    n = 0
    for f in files:
        with open_text(f) as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    if n == ordinal:
                        return f, lineno, parse_jsonl_line(line, f, lineno).id
                    n += 1
    raise IndexError(ordinal)


def _lines(fh, path):
    """Lines of an open text file; a file that is not UTF-8 (or a broken gzip) is an error naming it."""
    lineno = 0
    try:
        for lineno, line in enumerate(fh, 1):
            yield line
    except UnicodeDecodeError as exc:
        raise InputFormatError(path, lineno + 1, f"not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise InputFormatError(path, None, f"cannot be read as gzip ({exc})") from None


def read_jsonl_corpus(path, check_duplicates: bool = True) -> Iterator[Passage]:
    """Stream passages from a JSONL file or directory; duplicate ids are an error.

    Memory stays bounded by a chunk of passages plus 16 bytes per id for the duplicate check
    (:class:`IdSet`); pass ``check_duplicates=False`` to skip it.
    """
    files = jsonl_files(path)
    seen = IdSet()
    chunk: list[tuple[Passage, Path, int]] = []

    def checked():
        keys = IdSet.keys([p.id for p, _, _ in chunk])
        for pos, earlier in seen.candidates(keys):
            passage, f, lineno = chunk[pos]
            if earlier >= len(seen):  # earlier in this chunk
                first, ef, eline = chunk[earlier - len(seen)]
                eid = first.id
            else:
                ef, eline, eid = _passage_at(files, earlier)
            if eid == passage.id:
                raise InputFormatError(f, lineno, f"duplicate document id {passage.id!r} (first at {ef}:{eline})")
        seen.add(keys)
        return [p for p, _, _ in chunk]

    for f in files:
        with open_text(f) as fh:
            for lineno, line in enumerate(_lines(fh, f), 1):
                if not line.strip():
                    continue
                passage = parse_jsonl_line(line, f, lineno)
                if not check_duplicates:
                    yield passage
                    continue
                chunk.append((passage, f, lineno))
                if len(chunk) == DUPLICATE_CHECK_CHUNK:
                    yield from checked()
                    chunk = []
    if chunk:
        yield from checked()


def count_jsonl_passages(corpus) -> int | None:
    """Number of non-empty lines of a JSONL corpus (cheap; for progress bars), else None."""
    if not Path(corpus).exists():
        return None
    try:
        n = 0
        for f in jsonl_files(corpus):
            with open_text(f) as fh:
                n += sum(1 for line in fh if line.strip())
        return n
    except (OSError, InputFormatError):
        return None


def corpus_fingerprint(passages: Iterable[Passage]) -> tuple[str, int]:
    """A content hash of the corpus (ids, titles, texts) and its size."""
    h = hashlib.sha256()
    n = 0
    for p in passages:
        for part in (p.id, p.title, p.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        n += 1
    return h.hexdigest(), n


def write_jsonl_corpus(passages: Iterable[Passage], path) -> int:
    """Write passages as Pyserini JSONL (``id``, ``title``, ``text``, ``contents``), atomically."""
    n = 0
    with atomic_write(path) as fh:
        for p in passages:
            fh.write(json.dumps({"id": p.id, "title": p.title, "text": p.text,
                                 "contents": p.contents}, ensure_ascii=False) + "\n")
            n += 1
    return n
