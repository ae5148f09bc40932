"""Fine-tuning on a tiny BERT: mining, train -> save -> load -> encode, resume, re-ranker and KD."""

import json

import pytest
import tiny as tiny_data
import torch

from simlm_ir.errors import InputFormatError
from simlm_ir.train.data import TrainExample, negatives_from_run, read_train_file, write_train_file

DOCS = dict(list(tiny_data.DOCS.items())[:8])
QUERIES = {q: tiny_data.QUERIES[q] for q in ("q1", "q2", "q3", "q4")}
QRELS = {q: tiny_data.QRELS[q] for q in QUERIES}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tiny_data.save_tiny_bert(d / "bert")
    tiny_data.write_training_data(d, DOCS, QUERIES, QRELS, depth=6, tiebreak=0)
    return d


def test_mining_excludes_positives_and_keeps_rank_order():
    run = {"q1": {"apt": 9.0, "dpkg": 8.0, "vim": 1.0, "curl": 5.0}}
    negs = negatives_from_run(run, {"q1": {"apt": 1, "vim": 0}}, depth=3)
    # top 3 = apt, dpkg, curl; apt is a positive, vim judged 0 stays out of top 3
    assert negs == {"q1": ["dpkg", "curl"]}


def test_train_file_errors_name_the_line(tmp_path):
    f = tmp_path / "t.jsonl"
    write_train_file([TrainExample("q1", "debian", ["apt"], ["vim"])], f)
    with open(f, "a") as fh:
        fh.write(json.dumps({"query_id": "q2", "query": "x", "positives": ["nope"], "negatives": []}) + "\n")
    with pytest.raises(InputFormatError, match=r"t.jsonl:2: document id\(s\) not in the corpus"):
        read_train_file(f, DOCS)


def _cfg(tiny, out, **kw):
    from simlm_ir.train.finetune import FinetuneConfig

    base = dict(train_file=str(tiny / "train.jsonl"), output=str(out), init=str(tiny / "bert"),
                corpus=str(tiny / "corpus.jsonl"), group_size=3, batch_size=2, lr=1e-3, max_steps=6,
                warmup_steps=1, save_steps=3, log_every=1, device="cpu", progress=False)
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.mark.slow
def test_finetune_save_load_encode_and_resume(tiny, tmp_path):
    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.train.finetune import finetune

    full = finetune(_cfg(tiny, tmp_path / "full"))
    assert [r["step"] for r in full] == [1, 2, 3, 4, 5, 6]
    assert full[-1]["loss"] < full[0]["loss"]
    enc = SimLMEncoder(str(tmp_path / "full"), device="cpu")
    v = enc.encode_queries(["text editor"])
    assert v.shape == (1, 32) and abs(float((v ** 2).sum()) - 1) < 1e-5
    # the saved model is the trained one, not the initial one
    assert not torch.allclose(SimLMEncoder(str(tiny / "bert"), device="cpu").model.embeddings.word_embeddings.weight,
                              enc.model.embeddings.word_embeddings.weight)

    # interrupted at step 3, then resumed: the same losses as the uninterrupted run
    finetune(_cfg(tiny, tmp_path / "part", max_steps=6, save_steps=3))
    resumed = finetune(_cfg(tiny, tmp_path / "part", resume=True))
    assert [r["step"] for r in resumed] == [4, 5, 6]
    for a, b in zip(resumed, full[3:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


@pytest.mark.slow
def test_reranker_teacher_scores_and_distillation(tiny, tmp_path):
    from simlm_ir.modeling.reranker import CrossEncoder
    from simlm_ir.train.finetune import finetune
    from simlm_ir.train.rerank import RerankConfig, train_reranker
    from simlm_ir.train.teacher_scores import score_train_file

    rec = train_reranker(RerankConfig(train_file=str(tiny / "train.jsonl"), output=str(tmp_path / "rr"),
                                      init=str(tiny / "bert"), corpus=str(tiny / "corpus.jsonl"), group_size=4,
                                      rerank_forward_factor=2, batch_size=2, lr=1e-3, max_steps=4, warmup_steps=1,
                                      device="cpu"))
    assert rec and rec[-1]["step"] == 4
    ce = CrossEncoder(str(tmp_path / "rr"), device="cpu")
    assert ce.score(["text editor"], ["-"], [DOCS["vim"]]).shape == (1,)
    n = score_train_file(ce, tiny / "train.jsonl", tmp_path / "teacher.jsonl", corpus=str(tiny / "corpus.jsonl"),
                         negatives=2, random_negatives=1)
    examples = read_train_file(tmp_path / "teacher.jsonl")
    assert n == 4 and all(len(ex.teacher_scores) == 4 for ex in examples)
    kd = finetune(_cfg(tiny, tmp_path / "kd", kd_teacher=str(tmp_path / "teacher.jsonl"), max_steps=2))
    assert len(kd) == 2 and all(r["loss"] > 0 for r in kd)


def _kd_example(pool_size=10, unscored=("sqlite3",)):
    pool = [d for d in tiny_data.DOCS if d != "apt"][:pool_size]
    scores = {"apt": 5.0, **{d: float(i) for i, d in enumerate(pool)}}
    return TrainExample("q1", "package manager", ["apt"], [*unscored, *pool], scores)


def test_kd_groups_change_across_epochs_and_come_only_from_the_scored_pool():
    from simlm_ir.train.data import kd_group

    ex = _kd_example()
    groups = [kd_group(ex, index=3, n_negatives=3, epoch=e, seed=42) for e in range(4)]
    assert all(g[0] == "apt" for g in groups)
    negs = [g[1:] for g in groups]
    assert all(set(n) <= set(ex.teacher_scores) - {"apt"} for n in negs)  # sqlite3 has no score: never drawn
    assert len({d for n in negs[:3] for d in n}) == 9  # epochs 0-2 take disjoint slices of the 10-item pool
    assert negs[0] != negs[1]
    assert kd_group(ex, 3, 3, 1, 42) == groups[1]  # a pure function of (example, epoch, seed)
    assert kd_group(ex, 3, 3, 0, 43) != groups[0] or kd_group(ex, 4, 3, 0, 42) != groups[0]
    # a pool smaller than the group repeats scored items rather than taking unscored ones
    small = kd_group(_kd_example(pool_size=2), 0, 5, 0, 42)
    assert len(small) == 6 and set(small[1:]) <= set(_kd_example(pool_size=2).teacher_scores)


def test_data_order_reports_the_epoch_each_example_is_read_in():
    from simlm_ir.train.data import DataOrder

    order = DataOrder(n=4, seed=1, batch_size=3)
    picks = [order.indices_with_epochs(s) for s in range(3)]  # 9 reads of 4 examples
    assert [e for step in picks for _, e in step] == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert sorted(i for step in picks for i, e in step if e == 1) == [0, 1, 2, 3]


def test_teacher_matrix_reads_scores_in_group_order_and_refuses_unscored():
    from simlm_ir.errors import SimLMIRError
    from simlm_ir.train.data import teacher_matrix

    ex = _kd_example()
    assert teacher_matrix([ex], [["apt", "vim", "dpkg"]]) == [[5.0, 1.0, 0.0]]
    with pytest.raises(SimLMIRError, match="no teacher score"):
        teacher_matrix([ex], [["apt", "sqlite3"]])


def _teacher_file(tiny, path, permute=False):
    """The tiny training file with made-up teacher scores over each query's positive + 5 negatives;
    ``permute`` reverses which document gets which score within each query."""
    examples = read_train_file(tiny / "train.jsonl")
    for k, ex in enumerate(examples):
        ex.negatives = ex.negatives[:5]
        docs = ex.positives + ex.negatives
        values = [float(3 * k + i * 1.7 % 5) for i in range(len(docs))]
        ex.teacher_scores = dict(zip(docs, values[::-1] if permute else values))
    write_train_file(examples, path)
    return path


@pytest.mark.slow
def test_permuted_teacher_scores_change_the_kd_loss(tiny, tmp_path):
    from simlm_ir.train.finetune import finetune

    losses = []
    for permute in (False, True):
        f = _teacher_file(tiny, tmp_path / f"t{permute}.jsonl", permute)
        rec = finetune(_cfg(tiny, tmp_path / f"kd{permute}", kd_teacher=str(f), group_size=4,
                            max_steps=1, save_steps=0))
        losses.append(rec[0]["loss"])
    again = finetune(_cfg(tiny, tmp_path / "kd-again", kd_teacher=str(tmp_path / "tFalse.jsonl"),
                          group_size=4, max_steps=1, save_steps=0))
    assert again[0]["loss"] == losses[0]  # same scores, same loss: the difference is the permutation's
    assert losses[0] != pytest.approx(losses[1], rel=1e-4)


def test_stage_defaults_follow_the_authors():
    from simlm_ir.train.finetune import FinetuneConfig

    c = FinetuneConfig(train_file="t", output="o")
    k = FinetuneConfig(output="o", kd_teacher="t.jsonl")
    assert (c.group_size, c.lr, c.epochs, c.weight_decay) == (16, 2e-5, 3.0, 0.0)
    assert (k.group_size, k.lr, k.epochs, k.weight_decay) == (24, 3e-5, 6.0, 0.0)
    assert FinetuneConfig(output="o", kd_teacher="t.jsonl", group_size=6).group_size == 6
    from simlm_ir.util.cli import parse_config

    cli = parse_config(FinetuneConfig, ["--kd-teacher", "t.jsonl", "--output", "o"], prog="finetune")
    assert (cli.group_size, cli.lr, cli.epochs) == (24, 3e-5, 6.0)
    cli = parse_config(FinetuneConfig, ["--train-file", "t.jsonl", "--output", "o", "--group-size", "8"],
                       prog="finetune")
    assert (cli.group_size, cli.lr, cli.epochs) == (8, 2e-5, 3.0)


def _dev_files(tmp_path):
    topics, qrels = tmp_path / "dev.tsv", tmp_path / "dev.qrels"
    topics.write_text("".join(f"{q}\t{QUERIES[q]}\n" for q in QUERIES))
    qrels.write_text("".join(f"{q} 0 {d} 1\n" for q in QRELS for d in QRELS[q]))
    return dict(eval_topics=str(topics), eval_qrels=str(qrels))


@pytest.mark.slow
def test_kd_keeps_the_best_dev_checkpoint(tiny, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from simlm_ir.train import dev_eval
    from simlm_ir.train.finetune import finetune

    scripted = iter([0.2, 0.9, 0.1])  # best at the 2nd evaluation (step 4), not the last
    monkeypatch.setattr(dev_eval.DevEvaluator, "__call__", lambda self, enc: next(scripted))
    f = _teacher_file(tiny, tmp_path / "t.jsonl")
    out = tmp_path / "kd"
    finetune(_cfg(tiny, out, kd_teacher=str(f), group_size=4, max_steps=6, save_steps=2,
                  **_dev_files(tmp_path)))
    log = [json.loads(x) for x in (out / "eval_log.jsonl").read_text().splitlines()]
    assert log == [{"step": 2, "RR@10": 0.2}, {"step": 4, "RR@10": 0.9}, {"step": 6, "RR@10": 0.1}]
    assert json.loads((out / "best_eval.json").read_text())["step"] == 4
    final, step4 = load_file(str(out / "model.safetensors")), load_file(str(out / "checkpoint-4" / "model.safetensors"))
    assert all(torch.equal(final[k], step4[k]) for k in step4)
    step2 = load_file(str(out / "checkpoint-2" / "model.safetensors"))
    assert not all(torch.equal(final[k], step2[k]) for k in step2)  # the weights do move between saves


@pytest.mark.slow
def test_kd_with_dev_eval_resumes_bit_identically(tiny, tmp_path):
    from safetensors.torch import load_file

    from simlm_ir.encode.encoder import SimLMEncoder
    from simlm_ir.train.dev_eval import DevEvaluator
    from simlm_ir.train.finetune import finetune

    f = _teacher_file(tiny, tmp_path / "t.jsonl")
    kw = dict(kd_teacher=str(f), group_size=4, max_steps=6, save_steps=3, **_dev_files(tmp_path))
    full = finetune(_cfg(tiny, tmp_path / "full", **kw))  # 4 queries, batch 2: 3 epochs, new groups each
    finetune(_cfg(tiny, tmp_path / "part", **kw))
    resumed = finetune(_cfg(tiny, tmp_path / "part", resume=True, **kw))
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[3:]]
    logs = [(tmp_path / d / "eval_log.jsonl").read_text() for d in ("full", "part")]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 2  # steps 3 and 6
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the logged best is what the saved model scores on the dev queries
    best = json.loads((tmp_path / "full" / "best_eval.json").read_text())
    evaluator = DevEvaluator(QUERIES, QRELS, {d: ("-", t) for d, t in DOCS.items()})
    assert evaluator(SimLMEncoder(str(tmp_path / "full"), device="cpu")) == pytest.approx(best["RR@10"], abs=1e-9)


def _distinct_teacher_scores(tiny, path, permute: bool = False) -> dict[str, dict[str, float]]:
    """The training file with distinct teacher scores per (query, document); ``permute`` moves each
    query's scores to other documents of the same query (reversed order)."""
    examples = read_train_file(tiny / "train.jsonl")
    scores = {}
    for qi, ex in enumerate(examples):
        docs = ex.positives + ex.negatives
        values = [4.0 - 1.3 * rank + 0.17 * qi for rank in range(len(docs))]
        if permute:
            values = values[::-1]
        ex.teacher_scores = scores[ex.query_id] = dict(zip(docs, values))
    write_train_file(examples, path)
    return scores


@pytest.mark.slow
def test_distillation_reads_each_teacher_score_beside_its_own_passage(tiny, tmp_path, monkeypatch):
    """Where fine-tuning builds the teacher matrix: row i, column j must be the teacher's score of the
    j-th passage encoded for query i, and the logged loss must be KL(teacher || student) over the group
    recomputed by hand from the vectors the model produced (kd_alpha 0: the KL alone)."""
    import math

    import simlm_ir.train.finetune as ft
    from simlm_ir.encode.encoder import SimLMEncoder

    text_to_id = {t: d for d, t in DOCS.items()}
    query_to_id = {t: q for q, t in QUERIES.items()}
    calls = {"kd": [], "passages": [], "queries": []}
    real_kd, real_tp, real_tq = ft.distillation_loss, SimLMEncoder.tokenize_passages, SimLMEncoder.tokenize_queries

    def spy_kd(q, p, teacher, *args, **kw):
        calls["kd"].append((q.detach().clone(), p.detach().clone(), teacher.detach().clone(), args, kw))
        return real_kd(q, p, teacher, *args, **kw)

    def spy_tp(self, texts, *args, **kw):
        calls["passages"].append([text_to_id[t] for t in texts])
        return real_tp(self, texts, *args, **kw)

    def spy_tq(self, queries, *args, **kw):
        calls["queries"].append([query_to_id[t] for t in queries])
        return real_tq(self, queries, *args, **kw)

    monkeypatch.setattr(ft, "distillation_loss", spy_kd)
    monkeypatch.setattr(SimLMEncoder, "tokenize_passages", spy_tp)
    monkeypatch.setattr(SimLMEncoder, "tokenize_queries", spy_tq)

    G, tau = 3, 0.05
    losses = []
    for permute in (False, True):
        for v in calls.values():
            v.clear()
        scores = _distinct_teacher_scores(tiny, tmp_path / f"teacher-{permute}.jsonl", permute)
        rec = ft.finetune(_cfg(tiny, tmp_path / f"kd-{permute}", train_file=str(tmp_path / f"teacher-{permute}.jsonl"),
                               kd_teacher=str(tmp_path / f"teacher-{permute}.jsonl"), max_steps=1, group_size=G,
                               batch_size=2, tau=tau, kd_alpha=0.0))
        assert len(calls["kd"]) == 1 and len(calls["passages"]) == 1 and len(calls["queries"]) == 1
        q, p, teacher, _, _ = calls["kd"][0]
        qids, flat = calls["queries"][0], calls["passages"][0]
        assert len(flat) == len(qids) * G and p.shape[0] == len(flat)
        want = [[scores[qid][flat[i * G + j]] for j in range(G)] for i, qid in enumerate(qids)]
        assert teacher.tolist() == [pytest.approx(row, abs=1e-6) for row in want]
        # KL(teacher || student) by hand: student = softmax over the query's own group of q.p / tau
        kl = 0.0
        for i in range(len(qids)):
            s = [float(q[i] @ p[i * G + j]) / tau for j in range(G)]
            log_zs = math.log(sum(math.exp(x) for x in s))
            log_zt = math.log(sum(math.exp(x) for x in want[i]))
            kl += sum(math.exp(t - log_zt) * ((t - log_zt) - (x - log_zs)) for t, x in zip(want[i], s))
        assert rec[0]["loss"] == pytest.approx(kl / len(qids), rel=1e-4)
        losses.append(rec[0]["loss"])
    assert losses[0] != pytest.approx(losses[1], rel=1e-3), "permuting teacher scores within groups must matter"


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_then_resume_is_bit_identical(tiny, tmp_path):
    """A real fine-tuning process killed with SIGKILL inside its second checkpoint write (model
    saved, trainer state not), resumed: the same final weights, bit for bit, as an uninterrupted
    run, a log with each step once, and no temp directory left behind."""
    from crash import hidden_entries, kill_at
    from safetensors.torch import load_file

    from simlm_ir.train.finetune import finetune

    kw = dict(max_steps=8, save_steps=2, threads=1)
    part = tmp_path / "part"
    args = ["--train-file", str(tiny / "train.jsonl"), "--output", str(part), "--init", str(tiny / "bert"),
            "--corpus", str(tiny / "corpus.jsonl"), "--group-size", "3", "--batch-size", "2", "--lr", "1e-3",
            "--max-steps", "8", "--warmup-steps", "1", "--save-steps", "2", "--log-every", "1", "--device", "cpu",
            "--threads", "1", "--no-progress"]
    kill_at("simlm_ir.train.finetune", args, "torch:save", nth=2, match="trainer_state", tmp=tmp_path)
    # killed mid-write: checkpoint-4 exists only as a temp directory; the log already reached step 4
    assert sorted(p.name for p in part.glob("checkpoint-*")) == ["checkpoint-2"]
    assert any(name.startswith(".checkpoint-4.") for name in hidden_entries(part))
    assert [json.loads(ln)["step"] for ln in (part / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]

    resumed = finetune(_cfg(tiny, part, resume=True, **kw))
    full = tmp_path / "full"
    finetune(_cfg(tiny, full, **kw))
    assert [r["step"] for r in resumed] == [3, 4, 5, 6, 7, 8]

    a, b = load_file(str(part / "model.safetensors")), load_file(str(full / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(ln) for ln in (part / "train_log.jsonl").read_text().splitlines()]
    ref = [json.loads(ln) for ln in (full / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert [r["loss"] for r in log] == [r["loss"] for r in ref]
    assert hidden_entries(part) == []
    assert sorted(p.name for p in part.glob("checkpoint-*")) == sorted(p.name for p in full.glob("checkpoint-*"))
