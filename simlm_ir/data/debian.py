"""Debian's English package descriptions (``i18n/Translation-en``, deb822): the real text behind the
embedded known-item collection and most of the pre-training corpus."""

from __future__ import annotations

from typing import Iterable, Iterator


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
