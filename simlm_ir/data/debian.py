"""Debian's English package descriptions (``i18n/Translation-en``, deb822): the real text behind the
embedded known-item collection and most of the pre-training corpus."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import subprocess
from pathlib import Path
from typing import Iterable, Iterator

from simlm_ir.errors import InputFormatError


def parse_translation(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """Yield (package, synopsis, long description) per stanza of a ``Translation-en`` file.

    Continuation lines lose their leading space and a lone ``.`` is a blank line, as deb822 says.
    """
    pkg, synopsis, body = None, None, []

    def stanza():
        text = [("" if ln.strip() == "." else ln[1:] if ln.startswith(" ") else ln) for ln in body]
        return pkg, synopsis.strip(), "\n".join(text).strip()

    for raw in lines:
        line = raw.rstrip("\n")
        if not line:
            if pkg and synopsis is not None:
                yield stanza()
            pkg, synopsis, body = None, None, []
        elif line.startswith("Package: "):
            pkg = line[len("Package: "):].strip()
        elif line.startswith("Description-en: "):
            synopsis = line[len("Description-en: "):]
        elif line.startswith(" ") and synopsis is not None:
            body.append(line)
    if pkg and synopsis is not None:
        yield stanza()


# The embedded collection's sampling rule (benchmarks/make_debian_collection.py). Kept here, beside the
# parser, because benchmarks/make_extra_train.py must apply exactly the same rule to leave the
# collection's documents out of its extra training data.
COLLECTION_SAMPLE = 12  # 1 document in 12 is kept


def sha1_int(s: str) -> int:
    """The integer of ``s``'s SHA-1: the collection's deterministic sample and split key."""
    return int(hashlib.sha1(s.encode("utf-8")).hexdigest(), 16)


def document_ids(records: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """Long description -> document id, for (package, synopsis, description) records in sort order:
    identical descriptions are one document, named after its first package."""
    ids: dict[str, str] = {}
    for pkg, _, text in records:
        ids.setdefault(text, pkg)
    return ids


def in_sample(doc_id: str, sample: int = COLLECTION_SAMPLE) -> bool:
    """Whether the collection's 1-in-``sample`` document sample keeps ``doc_id``."""
    return sha1_int(doc_id) % sample == 0


def read_translation(path) -> Iterator[tuple[str, str, str]]:
    """:func:`parse_translation` of a ``Translation-en`` file as apt stores it: plain, ``.lz4`` (through
    the ``lz4`` tool, which apt's lists need anyway), ``.xz`` or ``.gz``."""
    path = Path(path)
    try:
        if path.suffix == ".lz4":
            raw = subprocess.run(["lz4", "-dc", str(path)], check=True, capture_output=True).stdout
        elif path.suffix == ".xz":
            raw = lzma.decompress(path.read_bytes())
        elif path.suffix == ".gz":
            raw = gzip.decompress(path.read_bytes())
        else:
            raw = path.read_bytes()
    except subprocess.CalledProcessError as exc:
        why = exc.stderr.decode(errors="replace").strip()
        raise InputFormatError(path, None, f"lz4 cannot decompress it ({why})") from None
    except (OSError, EOFError, lzma.LZMAError) as exc:  # gzip.BadGzipFile is an OSError
        raise InputFormatError(path, None, f"cannot read it ({exc})") from None
    yield from parse_translation(raw.decode("utf-8", errors="replace").splitlines())
