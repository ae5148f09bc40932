"""The embedded default collection, registered with ir_datasets like any other.

``debian-known-item`` is a *known-item* retrieval task over real text (Debian 12 package
descriptions; see ``benchmarks/make_debian_collection.py`` and the README): query = a package's
one-line synopsis, relevant document = its long description. It is not a judged ad-hoc collection
and not BEIR. Its files ship inside the package; on first use they are placed under
``$IR_DATASETS_HOME/debian-known-item/`` (ir_datasets' cache layout) and read by ir_datasets'
own JSONL/TSV/TREC-qrels readers, so the code path is the real ir_datasets one.

Ids: ``debian-known-item`` (docs), ``debian-known-item/{train,dev,test}`` (docs, queries, qrels).
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

NAME = "debian-known-item"
DEFAULT_DATASET = f"{NAME}/test"
SPLITS = ("train", "dev", "test")
RESOURCE_DIR = Path(__file__).resolve().parent.parent / "resources" / "collections" / NAME
LABEL = "known-item task: Debian package synopsis -> description (not BEIR)"

_registered = False


def irds_home() -> Path:
    """Where ir_datasets keeps collections (``$IR_DATASETS_HOME``, default ``~/.ir_datasets``)."""
    return Path(os.environ.get("IR_DATASETS_HOME", Path.home() / ".ir_datasets"))


def _place_files() -> Path:
    """Copy the shipped files into the ir_datasets home once (atomically); return that dir."""
    target = irds_home() / NAME
    stamp = (RESOURCE_DIR / "stats.json").read_text()
    if (target / "stats.json").exists() and (target / "stats.json").read_text() == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}.", dir=target.parent))
    try:
        with gzip.open(RESOURCE_DIR / "docs.jsonl.gz", "rb") as src, open(tmp / "docs.jsonl", "wb") as dst:
            shutil.copyfileobj(src, dst)
        for split in SPLITS:
            shutil.copy(RESOURCE_DIR / f"queries.{split}.tsv", tmp)
            shutil.copy(RESOURCE_DIR / f"qrels.{split}.txt", tmp)
        shutil.copy(RESOURCE_DIR / "stats.json", tmp)  # written last: marks a complete copy
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def register() -> None:
    """Register the embedded collection's ids with ir_datasets (idempotent)."""
    global _registered
    if _registered:
        return
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import JsonlDocs, TrecQrels, TsvQueries
    from ir_datasets.util import LocalDownload

    if NAME in ir_datasets.registry:
        _registered = True
        return
    base = _place_files()
    docs = JsonlDocs(LocalDownload(base / "docs.jsonl"), namespace=NAME, lang="en",
                     count_hint=None)
    ir_datasets.registry.register(NAME, Dataset(docs))
    qrel_defs = {1: "the package whose synopsis is the query", 0: "any other package"}
    for split in SPLITS:
        ir_datasets.registry.register(f"{NAME}/{split}", Dataset(
            docs,
            TsvQueries(LocalDownload(base / f"queries.{split}.tsv"), namespace=NAME, lang="en"),
            TrecQrels(LocalDownload(base / f"qrels.{split}.txt"), qrel_defs)))
    _registered = True
