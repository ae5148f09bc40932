"""Keep the best checkpoint on a dev split: evaluate the bi-encoder at each save, keep the best.

The authors' distillation run evaluates at each save and loads the best model at the end. Here the
dev evaluation is a full ranking of the training corpus (exact inner product, faiss) for the dev
queries, scored with ir-measures (``RR@10`` by default, the authors' MRR@10); on a collection of a
few thousand passages that costs one encoding pass. Results go to ``eval_log.jsonl`` beside the
loss log; the best weights to ``best-checkpoint/``, which a resumed run keeps using.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from simlm_ir.errors import SimLMIRError
from simlm_ir.util.io import atomic_directory

EVAL_LOG = "eval_log.jsonl"
BEST_DIR = "best-checkpoint"
BEST_EVAL = "best_eval.json"


def load_dev_split(dataset: str = "", topics: str = "", qrels: str = "") -> tuple[dict[str, str], dict]:
    """Queries and qrels of the dev split: an ir_datasets id, or a TSV topics + TREC qrels pair."""
    from simlm_ir.data.datasets import LocalCollection, load_collection

    if dataset and (topics or qrels):
        raise SimLMIRError("give --eval-dataset or --eval-topics/--eval-qrels, not both")
    if dataset:
        col = load_collection(dataset)
    elif topics and qrels:
        col = LocalCollection(corpus="", topics=topics, qrels_file=qrels)
    else:
        raise SimLMIRError("--eval-topics and --eval-qrels go together")
    queries, judged = col.queries, col.qrels
    queries = {q: t for q, t in queries.items() if q in judged}
    if not queries:
        raise SimLMIRError(f"{dataset or topics}: no judged dev queries to evaluate on")
    return queries, judged


class DevEvaluator:
    """RR@10 (or any ir-measures measure) of an encoder over ``docs`` for the dev queries."""

    def __init__(self, queries: dict[str, str], qrels: dict, docs: dict[str, tuple[str, str]],
                 measure: str = "RR@10", depth: int = 100):
        from simlm_ir.eval.measures import parse_measures

        parse_measures([measure])  # fail now on a bad name, not after the first training epoch
        self.queries, self.qrels, self.measure, self.depth = queries, qrels, measure, depth
        self.doc_ids = sorted(docs)
        self.titles = [docs[d][0] for d in self.doc_ids]
        self.texts = [docs[d][1] for d in self.doc_ids]

    def __call__(self, enc) -> float:
        import faiss

        from simlm_ir.eval.measures import evaluate

        was_training = enc.model.training
        enc.model.eval()
        try:
            p = enc.encode_passages(self.texts, self.titles)
            qids = list(self.queries)
            q = enc.encode_queries([self.queries[i] for i in qids])
        finally:
            enc.model.train(was_training)
        index = faiss.IndexFlatIP(p.shape[1])
        index.add(np.ascontiguousarray(p, dtype=np.float32))
        scores, idx = index.search(np.ascontiguousarray(q, dtype=np.float32), min(self.depth, len(self.doc_ids)))
        run = {qid: {self.doc_ids[j]: float(s) for s, j in zip(srow, irow) if j >= 0}
               for qid, srow, irow in zip(qids, scores, idx)}
        return evaluate(run, self.qrels, [self.measure]).aggregate[self.measure]


class BestCheckpoint:
    """Evaluate at each save; copy the weights when the dev score beats every earlier one.

    State lives on disk (the eval log and ``best-checkpoint/``), so ``resume`` continues with the
    same best; the log is cut back to the resumed step like the loss log. Ties keep the earlier step.
    """

    def __init__(self, output: Path, evaluate: Callable[[], float], save_model: Callable[[Path], None],
                 measure: str, resume_step: int | None, is_main: bool = True):
        self.output, self.evaluate, self.save_model = Path(output), evaluate, save_model
        self.measure, self.is_main = measure, is_main
        self.log = self.output / EVAL_LOG
        self.records: list[dict] = []
        if resume_step is None:
            if is_main:
                self.log.unlink(missing_ok=True)
                shutil.rmtree(self.output / BEST_DIR, ignore_errors=True)
        elif self.log.exists():
            self.records = [r for r in map(json.loads, self.log.read_text().splitlines()) if r["step"] <= resume_step]
            if is_main:
                self.log.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    @property
    def best(self) -> dict | None:
        """The best evaluation so far (earliest of equals)."""
        return max(self.records, key=lambda r: (r[self.measure], -r["step"]), default=None)

    def __call__(self, step: int) -> None:
        """Evaluate the model as it is after ``step`` steps, unless that step is already logged
        (a run resumed from a checkpoint whose evaluation finished before the interruption)."""
        if any(r["step"] == step for r in self.records):
            return
        value = self.evaluate()
        previous = self.best
        rec = {"step": step, self.measure: value}
        self.records.append(rec)
        if not self.is_main:
            return
        with open(self.log, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if previous is None or value > previous[self.measure]:
            with atomic_directory(self.output / BEST_DIR) as tmp:
                self.save_model(tmp)
                (tmp / BEST_EVAL).write_text(json.dumps(rec) + "\n")

    def best_dir(self) -> Path:
        """The saved weights of :attr:`best`, checked against the step recorded beside them."""
        best, path = self.best, self.output / BEST_DIR
        saved = json.loads((path / BEST_EVAL).read_text()) if (path / BEST_EVAL).exists() else None
        if best is None or saved is None or saved["step"] != best["step"]:
            raise SimLMIRError(f"{path}: holds {saved and saved['step']}, but the eval log's best is step "
                               f"{best and best['step']}; rerun without --resume")
        return path
