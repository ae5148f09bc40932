"""Open-domain QA retrieval (NQ as in DPR): questions with answer strings, judged by answer match.

DPR-style evaluation has no relevance judgements: a passage counts when it contains an answer
string (Pyserini's ``has_answers`` with its DPR ``SimpleTokenizer``, on the passage text without
the title, as ``pyserini.eval.evaluate_dpr_retrieval`` does). We turn that into qrels over the
retrieved passages, so "top-k accuracy" (the papers' R@k) is ir-measures' ``Success@k`` and the
leaderboard's significance tests apply unchanged.

Questions come from DPR's ``nq-test.qa.csv`` layout (``question<TAB>["answer", ...]``, query id =
0-based line number, as Pyserini's ``dpr-nq-test`` topics) or from an ir_datasets id whose queries
carry answers (``dpr-w100/natural-questions/dev``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from simlm_ir.data.corpus import NO_TITLE, Passage
from simlm_ir.data.datasets import iter_passages, load_collection
from simlm_ir.data.trec import Qrels, Run, ranked
from simlm_ir.errors import DatasetNotAvailableError, InputFormatError

NO_ANSWER_DOC = "__no_retrieved_passage_has_an_answer__"


def read_dpr_qas(path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Questions and answers of a DPR ``*.qa.csv`` file (tab-separated; ids = line numbers from 0)."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotAvailableError(f"{path}: questions file not found (DPR's nq-test.qa.csv: "
                                       "question<TAB>['answer', ...] per line)")
    questions, answers = {}, {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise InputFormatError(path, lineno, f"expected 'question<TAB>[answers]', got {len(parts)} columns")
            raw = parts[1]
            if raw.startswith('"') and raw.endswith('"'):  # csv-quoted, as Pyserini unquotes it
                raw = raw[1:-1].replace('""', '"')
            try:
                ans = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raise InputFormatError(path, lineno, f"answers {parts[1][:60]!r} are not a list literal") from None
            if not isinstance(ans, (list, tuple)) or not ans or not all(isinstance(a, str) for a in ans):
                raise InputFormatError(path, lineno, "answers must be a non-empty list of strings")
            qid = str(lineno - 1)
            questions[qid], answers[qid] = parts[0], list(ans)
    if not questions:
        raise InputFormatError(path, None, "no questions")
    return questions, answers


def read_ir_datasets_qas(dataset_id: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Questions and answers of an ir_datasets split whose queries have ``answers``."""
    collection = load_collection(dataset_id)
    queries = collection.queries
    answers = {}
    for q in collection._guard("queries", lambda: list(collection._ds.queries_iter())):
        if not getattr(q, "answers", None):
            raise InputFormatError(dataset_id, None, f"query {q.query_id!r} has no answers; not a QA split")
        answers[str(q.query_id)] = list(q.answers)
    return queries, answers


@dataclass
class QACollection:
    """What benchmark systems need (``dataset_id`` of the passages, ``passages()``, ``queries``),
    plus the answers. ``dataset_id`` is the corpus: an ir_datasets id (``dpr-w100``) or JSONL."""

    dataset_id: str
    queries: dict[str, str]
    answers: dict[str, list[str]]
    name: str = "nq-test"

    @property
    def corpus_source(self) -> str:
        """What corpus readers (``iter_passages``) take: the same as ``dataset_id`` here."""
        return self.dataset_id

    def passages(self) -> Iterator[Passage]:
        return iter_passages(self.dataset_id)

    @property
    def slug(self) -> str:
        return self.name.replace("/", "-")


def answer_text(p: Passage) -> str:
    """The text answers are matched in: the passage body, without its title (as Pyserini). A
    Pyserini DPR JSONL passage keeps ``title\\ntext`` in ``contents``: its first line is dropped."""
    if p.title == NO_TITLE and "\n" in p.text:
        return p.text.split("\n", 1)[1]
    return p.text


def passage_texts(corpus: str, docids: Iterable[str]) -> dict[str, str]:
    """Answer-match text of the given passages: ir_datasets' docstore when it has one, else one
    pass over the corpus."""
    wanted = set(docids)
    if not Path(corpus).exists():
        collection = load_collection(corpus)
        try:
            docs = collection.docs_store().get_many(wanted)
            return {d: answer_text(Passage(d, getattr(doc, "title", None) or NO_TITLE, doc.text))
                    for d, doc in docs.items()}
        except (NotImplementedError, AttributeError):
            pass
    out = {}
    for p in iter_passages(corpus):
        if p.id in wanted:
            out[p.id] = answer_text(p)
            if len(out) == len(wanted):
                break
    return out


def answer_qrels(runs: Iterable[Run], answers: Mapping[str, list[str]], texts: Mapping[str, str],
                 depth: int = 100) -> Qrels:
    """Judge every passage in the top ``depth`` of any run: relevance 1 when it contains an answer.

    Every question gets an entry (a placeholder judged 0 when nothing retrieved has an answer), so
    a question no system answers still counts as a miss.
    """
    from pyserini.eval.evaluate_dpr_retrieval import SimpleTokenizer, has_answers

    tokenizer = SimpleTokenizer()
    judged: dict[str, set[str]] = {q: set() for q in answers}
    for run in runs:
        for qid, docs in run.items():
            if qid in judged:
                judged[qid].update(d for d, _ in ranked(docs)[:depth])
    qrels: Qrels = {}
    for qid, docids in judged.items():
        rel = {d: 1 for d in sorted(docids) if d in texts and has_answers(texts[d], answers[qid], tokenizer)}
        qrels[qid] = rel or {NO_ANSWER_DOC: 0}
    return qrels
