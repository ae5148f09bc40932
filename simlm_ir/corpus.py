"""Reading passage corpora: Pyserini JSONL files/directories and ir_datasets docs, validated.

Every corpus becomes a stream of :class:`Passage` (id, title, text). JSONL lines may be Pyserini's
``{"id", "contents"}`` or BEIR-style ``{"id"|"_id", "title", "text"}``. Problems are reported as one
:class:`~simlm_ir.errors.InputFormatError` naming the file and line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from simlm_ir.errors import InputFormatError

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


def jsonl_files(path) -> list[Path]:
    """The JSONL files of a corpus given as one file or a directory of them (sorted)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".jsonl", ".json") and f.is_file())
        if not files:
            raise InputFormatError(p, None, "directory holds no .jsonl files")
        return files
    if not p.exists():
        raise InputFormatError(p, None, "no such corpus file or directory")
    return [p]


def read_jsonl_corpus(path, check_duplicates: bool = True) -> Iterator[Passage]:
    """Stream passages from a JSONL file or directory; duplicate ids are an error."""
    seen: set[str] = set()
    for f in jsonl_files(path):
        with open(f, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                passage = parse_jsonl_line(line, f, lineno)
                if check_duplicates:
                    if passage.id in seen:
                        raise InputFormatError(f, lineno, f"duplicate document id {passage.id!r}")
                    seen.add(passage.id)
                yield passage


def iter_passages(corpus: str | os.PathLike, check_duplicates: bool = True) -> Iterator[Passage]:
    """Passages of ``corpus``: a JSONL file, a directory of them, or an ir_datasets id."""
    if Path(corpus).exists():
        yield from read_jsonl_corpus(corpus, check_duplicates)
        return
    from simlm_ir.collections import load_collection

    yield from load_collection(str(corpus)).passages()


def write_jsonl_corpus(passages: Iterable[Passage], path) -> int:
    """Write passages as Pyserini JSONL (``id``, ``title``, ``text``, ``contents``), atomically."""
    from simlm_ir.io_utils import atomic_write

    n = 0
    with atomic_write(path) as fh:
        for p in passages:
            fh.write(json.dumps({"id": p.id, "title": p.title, "text": p.text,
                                 "contents": p.contents}, ensure_ascii=False) + "\n")
            n += 1
    return n
