"""Test collections behind one small interface (documents, queries, qrels): by ir_datasets id
(:class:`Collection`) or from local files (:class:`LocalCollection`); :func:`iter_passages` reads any
corpus a user names (a JSONL file or directory, or an ir_datasets id).

Every ir_datasets collection, the embedded default included, goes through ir_datasets. Offline, ir_datasets
uses files already placed under ``$IR_DATASETS_HOME`` (default ``~/.ir_datasets``); when they are
missing we raise one line that says which file to place where, instead of a download traceback.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

from simlm_ir.data import embedded
from simlm_ir.data.corpus import NO_TITLE, Passage, beir_corpus_file, count_jsonl_passages, read_jsonl_corpus
from simlm_ir.data.embedded import irds_home
from simlm_ir.data.trec import check_qrels_queries, read_qrels, read_topics
from simlm_ir.errors import DatasetNotAvailableError, InputFormatError


def expected_files(dataset_id: str) -> str:
    """Human description of the files ir_datasets needs on disk for ``dataset_id``."""
    home = irds_home()
    parts = dataset_id.split("/")
    if parts[0] == "beir" and len(parts) >= 2:
        name = parts[1]
        if name == "cqadupstack" and len(parts) >= 3:
            name = "cqadupstack"
        return (f"{home}/beir/{name}/source.zip (the BEIR zip, holding {name}/corpus.jsonl, "
                f"{name}/queries.jsonl and {name}/qrels/<split>.tsv)")
    if parts[0] == "msmarco-passage":
        return (f"{home}/msmarco-passage/collection.tsv and irds_version.txt containing 'v2', plus the "
                f"split's files (e.g. dev/small/queries.tsv and dev/small/qrels; "
                f"trec-dl-2019/queries.tsv and trec-dl-2019/qrels)")
    if parts[0] in ("natural-questions", "dpr-w100"):
        return f"{home}/dpr-w100/psgs_w100.tsv.gz and the split's files under {home}/dpr-w100/natural-questions/"
    return f"the files ir_datasets downloads for {dataset_id}, under {home}/{parts[0]}/"


@dataclass
class Collection:
    """A test collection: passages, queries (qid -> text) and qrels (qid -> docid -> grade)."""

    dataset_id: str

    @cached_property
    def _ds(self):
        import ir_datasets

        embedded.register()
        try:
            return ir_datasets.load(self.dataset_id)
        except KeyError:
            raise DatasetNotAvailableError(
                f"{self.dataset_id}: not an ir_datasets id (see https://ir-datasets.com for the list)") from None

    def _guard(self, what: str, fn):
        logger = logging.getLogger("ir_datasets")
        level = logger.level
        logger.setLevel(logging.ERROR)  # silence the download retries we know will fail offline
        try:
            return fn()
        except (OSError, ConnectionError, RuntimeError) as exc:
            # ir_datasets raises requests' ConnectionError, or RuntimeError('All download sources
            # failed') when it has mirrors; both mean "the file is not here and cannot be fetched"
            if isinstance(exc, FileNotFoundError) or "download" in str(exc).lower() \
                    or "connection" in type(exc).__name__.lower() or "Max retries" in str(exc):
                raise DatasetNotAvailableError(
                    f"{self.dataset_id}: {what} not on disk and cannot be downloaded here; place "
                    f"{expected_files(self.dataset_id)}") from None
            raise
        finally:
            logger.setLevel(level)

    def has_docs(self) -> bool:
        return self._ds.has_docs()

    def passages(self) -> Iterator[Passage]:
        """Stream the documents as passages (title '-' when the collection has none)."""
        ds = self._ds
        if not ds.has_docs():
            raise DatasetNotAvailableError(f"{self.dataset_id}: this dataset has no documents")
        it = self._guard("documents", lambda: iter(ds.docs_iter()))
        first = True
        while True:
            try:
                doc = self._guard("documents", lambda: next(it)) if first else next(it)
            except StopIteration:
                return
            first = False
            title = getattr(doc, "title", None) or NO_TITLE
            text = getattr(doc, "text", None)
            if text is None:
                text = doc.default_text()
            yield Passage(str(doc.doc_id), str(title).strip() or NO_TITLE, text)

    def docs_store(self):
        """ir_datasets' random-access document store (``get_many``); NotImplementedError when the
        dataset has none."""
        return self._ds.docs_store()

    def docs_count(self) -> int | None:
        try:
            return self._ds.docs_count()
        except Exception:
            return None

    @cached_property
    def queries(self) -> dict[str, str]:
        """qid -> query text; an empty query is an error naming the dataset and qid."""
        ds = self._ds
        if not ds.has_queries():
            raise DatasetNotAvailableError(f"{self.dataset_id}: this dataset has no queries "
                                           f"(pick a split, e.g. {self.dataset_id}/test)")
        out: dict[str, str] = {}
        for n, q in enumerate(self._guard("queries", lambda: list(ds.queries_iter())), 1):
            text = getattr(q, "text", None) or q.default_text()
            if not text.strip():
                raise InputFormatError(f"{self.dataset_id} queries", n, f"query {q.query_id!r} is empty")
            out[str(q.query_id)] = text
        return out

    @cached_property
    def qrels(self) -> dict[str, dict[str, int]]:
        """qid -> {docid: relevance}; judgements for unknown queries are dropped with a warning."""
        ds = self._ds
        if not ds.has_qrels():
            raise DatasetNotAvailableError(f"{self.dataset_id}: this dataset has no relevance judgements")
        qrels: dict[str, dict[str, int]] = {}
        for qr in self._guard("relevance judgements", lambda: list(ds.qrels_iter())):
            qrels.setdefault(str(qr.query_id), {})[str(qr.doc_id)] = int(qr.relevance)
        return check_qrels_queries(qrels, self.queries, self.dataset_id)

    @property
    def slug(self) -> str:
        """Directory name for this collection under runs/ and the work dir."""
        return self.dataset_id.replace("/", "-")

    @property
    def corpus_source(self) -> str:
        """What corpus readers (``iter_passages``) take for this collection's documents."""
        return self.dataset_id


def load_collection(dataset, split: str | None = None):
    """A collection from what a user names: an ir_datasets id, a directory in BEIR's unzipped layout
    (``split``, default ``test``, picks ``qrels/<split>.tsv``), or a collection object (returned as is)."""
    if not isinstance(dataset, (str, os.PathLike)):
        return dataset
    if Path(dataset).is_dir():
        return beir_directory(dataset, split or "test")
    return Collection(str(dataset))


class JsonlCorpus:
    """The passage side of a collection whose corpus is a JSONL file (``self.corpus``)."""

    corpus: str

    @property
    def corpus_source(self) -> str:
        return self.corpus

    def passages(self) -> Iterator[Passage]:
        return read_jsonl_corpus(self.corpus)

    def docs_count(self) -> int | None:
        return count_jsonl_passages(self.corpus)


@dataclass
class LocalCollection(JsonlCorpus):
    """A collection from files in the field's formats: a JSONL corpus (optionally gzipped), topics
    (TSV or BEIR JSONL) and qrels (TREC or BEIR TSV)."""

    corpus: str
    topics: str
    qrels_file: str
    name: str = ""
    judged_only: bool = False  # search only judged topics (BEIR's queries.jsonl holds every split's)

    @property
    def dataset_id(self) -> str:
        return self.name or Path(self.topics).name.split(".")[0]

    @cached_property
    def _topics(self) -> dict[str, str]:
        return read_topics(self.topics)

    @cached_property
    def queries(self) -> dict[str, str]:
        if not self.judged_only:
            return self._topics
        return {q: t for q, t in self._topics.items() if q in self.qrels}

    @cached_property
    def qrels(self) -> dict[str, dict[str, int]]:
        return check_qrels_queries(read_qrels(self.qrels_file), self._topics, str(self.qrels_file))

    @property
    def slug(self) -> str:
        return self.dataset_id.replace("/", "-")

    def check_judged_documents(self) -> None:
        """Fail when no judged document is in the corpus (the qrels belong to another corpus, or ids
        differ in form), and warn with a count when some are missing (trec_eval scores them as unfound)."""
        import warnings

        all_judged = {d for docs in self.qrels.values() for d in docs}
        judged = set(all_judged)
        for p in read_jsonl_corpus(self.corpus, check_duplicates=False):
            judged.discard(p.id)
        total = sum(len(docs) for docs in self.qrels.values())
        if judged and len(judged) == len(all_judged):
            raise InputFormatError(self.qrels_file, None, f"none of the {len(judged)} judged documents is in the "
                                   f"corpus {self.corpus} (e.g. {sorted(judged)[:3]}); are these the qrels of this "
                                   "corpus?")
        if judged:
            warnings.warn(f"{self.qrels_file}: {len(judged)} judged documents are not in {self.corpus} "
                          f"(e.g. {sorted(judged)[:3]}; {total} judgements in all)", stacklevel=2)


@dataclass
class WithCorpus(JsonlCorpus):
    """A collection's queries and qrels over another file of its passages, with the same ids (e.g. MS
    MARCO with the RocketQA titles the published SimLM checkpoints were trained and evaluated with)."""

    base: object
    corpus: str
    label: str = "titled"

    @property
    def dataset_id(self) -> str:
        return self.base.dataset_id

    @property
    def slug(self) -> str:
        return f"{self.base.slug}-{self.label}"

    @property
    def queries(self) -> dict[str, str]:
        return self.base.queries

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        return self.base.qrels


def beir_directory(path, split: str = "test", name: str = "") -> LocalCollection:
    """A directory in BEIR's unzipped layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""
    d = Path(path)
    corpus = beir_corpus_file(d)
    topics = next((d / q for q in ("queries.jsonl", "queries.jsonl.gz") if (d / q).is_file()), None)
    if corpus is None or topics is None:
        raise InputFormatError(d, None, "not a BEIR directory: expected corpus.jsonl, queries.jsonl and "
                                        "qrels/<split>.tsv")
    qrels = d / "qrels" / f"{split}.tsv"
    if not qrels.is_file():
        have = sorted(f.stem for f in (d / "qrels").glob("*.tsv")) if (d / "qrels").is_dir() else []
        raise InputFormatError(qrels, None, f"missing: this BEIR directory has no {split!r} split"
                                            + (f" (it has {', '.join(have)})" if have else ""))
    return LocalCollection(str(corpus), str(topics), str(qrels), name or f"{d.resolve().name}/{split}",
                           judged_only=True)


def iter_passages(corpus: str | os.PathLike, check_duplicates: bool = True) -> Iterator[Passage]:
    """Passages of ``corpus``: a JSONL file, a directory of them, or an ir_datasets id."""
    if Path(corpus).exists():
        yield from read_jsonl_corpus(corpus, check_duplicates)
        return
    if str(corpus).endswith((".jsonl", ".json", ".gz")) or str(corpus).startswith((".", "/", "~")):
        raise InputFormatError(corpus, None, "no such corpus file or directory")
    yield from load_collection(str(corpus)).passages()


def corpus_key(corpus: str | os.PathLike) -> str:
    """How an index records the corpus it was built from: the resolved path of a JSONL file or
    directory, else the ir_datasets id as given."""
    return str(Path(corpus).resolve()) if Path(corpus).exists() else str(corpus)


def check_corpus(corpus) -> None:
    """Fail fast (before loading a model) on a corpus that is missing, malformed at its start, or empty."""
    passages = iter_passages(corpus, check_duplicates=False)
    try:
        first = next(passages, None)
    finally:
        passages.close()
    if first is None:
        raise InputFormatError(corpus, None, "corpus holds no passages; nothing to index")
