#!/usr/bin/env python
"""Build the unlabelled pre-training corpus: every English Debian package description we can fetch,
plus prose docstrings of the Python packages installed here.

SimLM pre-training needs only unlabelled text, and much more of it than the 4,995 documents of the
embedded collection. Sources (real text only, nothing generated):

1. Debian ``i18n/Translation-en`` of every suite and component the archive serves (bookworm,
   bookworm-updates, bookworm-backports, trixie, sid, bullseye; main, contrib, non-free,
   non-free-firmware). Fetch them into a private lists directory (the system's apt state is untouched):

       mkdir -p work/apt/lists/partial
       printf 'deb http://deb.debian.org/debian %s main contrib non-free non-free-firmware\\n' \\
           bookworm bookworm-updates bookworm-backports trixie sid bullseye > work/apt/sources.list
       apt-get update -o Dir::Etc::sourcelist=$PWD/work/apt/sources.list -o Dir::Etc::sourceparts=- \\
           -o Dir::State::Lists=$PWD/work/apt/lists -o Acquire::Languages=en

   One passage per distinct long description (the synopsis line is *not* included: synopses are the
   embedded collection's queries).
2. Docstrings of the standard library and of every package in this environment's site-packages,
   read with ``ast`` (nothing is imported): paragraphs of at least 8 words that read as prose
   (doctest, table, parameter-list and code-like paragraphs skipped), joined per docstring.

Passages are de-duplicated by text and written as Pyserini JSONL (``id``, ``contents``) gzipped,
with ``stats.json`` (passages and whitespace tokens per source). The check that matters for honest
evaluation is printed and recorded: no passage contains a dev or test query of the embedded
collection verbatim (documents of every split may be in it: pre-training on the target corpus is the
paper's setting; test *queries* never are).

    python benchmarks/make_pretrain_corpus.py --lists work/apt/lists --output work/pretrain-corpus
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
import sys
import sysconfig
from pathlib import Path

from tqdm.auto import tqdm

from simlm_ir.data.debian import read_translation
from simlm_ir.errors import SimLMIRError
from simlm_ir.util.io import atomic_write

MIN_WORDS = 8
_CODE_LIKE = re.compile(r">>>|---|===|\.\. |::$|^\s*(Parameters|Returns|Raises|Examples?|See Also|Notes)\b")


def read_lists(lists_dir: Path):
    """(suite/component, package, description) from every ``*_i18n_Translation-en*`` file in ``lists_dir``."""
    files = sorted(lists_dir.glob("*_i18n_Translation-en*"))
    if not files:
        raise SystemExit(f"error: {lists_dir}: no *_i18n_Translation-en files; run the apt-get update in "
                         "this script's docstring first")
    for f in files:
        m = re.search(r"dists_(.+?)_(main|contrib|non-free-firmware|non-free)_i18n", f.name)
        label = f"{m.group(1)}/{m.group(2)}" if m else f.name
        for pkg, _synopsis, text in read_translation(f):
            if text:
                yield label, pkg, text


def docstring_passages(root: Path, prefix: str):
    """(id, passage) per docstring under ``root``: its prose paragraphs (>= 8 words) joined."""
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if any(part in ("test", "tests", "testing", "_vendor", "vendor", "site-packages", "dist-packages")
               for part in rel.parts[:-1]):
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree)
                          if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        for node in nodes:
            doc = ast.get_docstring(node) or ""
            paras = []
            for para in re.split(r"\n\s*\n", doc):
                if _CODE_LIKE.search(para):
                    continue
                flat = " ".join(para.split())
                words = flat.split()
                # prose: enough words, mostly alphabetic, not an indented code block
                if len(words) >= MIN_WORDS and sum(w.isalpha() for w in words) >= 0.6 * len(words):
                    paras.append(flat)
            if paras:
                yield f"py:{prefix}/{rel.with_suffix('')}:{getattr(node, 'name', '')}", "\n".join(paras)


def python_roots() -> list[tuple[str, Path]]:
    """The standard library and each top-level package directory in site-packages."""
    roots = [("stdlib", Path(sysconfig.get_paths()["stdlib"]))]
    site = Path(sysconfig.get_paths()["purelib"])
    for d in sorted(site.iterdir()):
        if d.is_dir() and (d / "__init__.py").exists():
            roots.append((d.name, d))
    return roots


def build(lists_dir: Path, output: Path, query_files: list[Path]) -> dict:
    seen: set[str] = set()
    stats: dict[str, dict[str, int]] = {}
    rows: list[tuple[str, str]] = []
    ids: set[str] = set()

    def add(source: str, pid: str, text: str) -> None:
        key = " ".join(text.split())
        if len(key.split()) < MIN_WORDS or key in seen:
            return
        seen.add(key)
        while pid in ids:  # a package name shared by two different descriptions
            pid += "+"
        ids.add(pid)
        rows.append((pid, text))
        s = stats.setdefault(source, {"passages": 0, "words": 0})
        s["passages"] += 1
        s["words"] += len(key.split())

    for label, pkg, text in tqdm(read_lists(lists_dir), desc="Debian descriptions", unit=" pkg"):
        add(f"debian:{label}", f"deb:{pkg}", text)
    for name, root in tqdm(python_roots(), desc="Python docstrings", unit=" pkg"):
        for pid, text in docstring_passages(root, name):
            add("python-docstrings", pid, text)

    queries = set()
    for qf in query_files:
        for line in qf.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                q = " ".join(line.split("\t", 1)[1].split()).lower()
                if len(q) >= 12:  # a short synopsis ("Python 3") could occur anywhere by chance
                    queries.add(q)
    pattern = re.compile("|".join(re.escape(q) for q in sorted(queries, key=len, reverse=True)))
    dropped = 0
    kept = []
    for pid, text in tqdm(rows, desc="query-leak check", unit=" psg"):
        if queries and pattern.search(" ".join(text.split()).lower()):
            dropped += 1
            continue
        kept.append((pid, text))

    output.mkdir(parents=True, exist_ok=True)
    with atomic_write(output / "corpus.jsonl.gz", mode="wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as fh:
            for pid, text in kept:
                fh.write((json.dumps({"id": pid, "contents": text}, ensure_ascii=False) + "\n").encode())
    summary = {
        "passages": len(kept),
        "words": sum(len(t.split()) for _, t in kept),
        "dropped_containing_dev_or_test_query": dropped,
        "dev_test_queries_checked": len(queries),
        "sources": stats,
    }
    with atomic_write(output / "stats.json") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lists", type=Path, default=Path("work/apt/lists"),
                    help="apt lists directory holding the *_i18n_Translation-en files")
    ap.add_argument("--output", type=Path, default=Path("work/pretrain-corpus"))
    args = ap.parse_args(argv)
    coll = Path(__file__).resolve().parent.parent / "simlm_ir" / "resources" / "collections" / "debian-known-item"
    try:
        summary = build(args.lists, args.output, [coll / "queries.dev.tsv", coll / "queries.test.tsv"])
    except SimLMIRError as exc:  # e.g. a damaged Translation-en: one line naming it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
