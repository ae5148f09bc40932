"""python -m simlm_ir.adapt end to end on a tiny corpus: pre-training, the recipe, the leaderboard, resumption."""

import json

import pytest
import torch
from safetensors.torch import load_file

from simlm_ir.modeling.checkpoints import DEFAULT_SIMLM_DIR
from tests.tiny import DOCS, QRELS, QUERIES, save_tiny_bert

# the user's unlabelled corpus (a domain the training data does not cover) and their test queries
USER_DOCS = {
    "u1": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.",
    "u2": "Photosynthesis converts light energy into chemical energy stored in sugars.",
    "u3": "The Great Barrier Reef is the largest coral reef system on Earth.",
    "u4": "The Manhattan Project produced the first nuclear weapons during the Second World War.",
    "u5": "Mount Everest is the highest mountain above sea level, in the Himalayas.",
    "u6": "The Amazon is the largest river in the world by discharge volume of water.",
}
USER_TOPICS = {"t1": "tower in paris", "t2": "plants turn light into energy", "t3": "largest coral reef"}
USER_QRELS = {"t1": "u1", "t2": "u2", "t3": "u3"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapt")
    with open(d / "user.jsonl", "w") as fh:
        for i, t in USER_DOCS.items():
            fh.write(json.dumps({"id": i, "contents": t}) + "\n")
    (d / "topics.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in USER_TOPICS.items()))
    (d / "qrels.txt").write_text("".join(f"{q} 0 {doc} 1\n" for q, doc in USER_QRELS.items()))
    train = d / "train"  # labelled training data in BEIR's layout (its train split)
    (train / "qrels").mkdir(parents=True)
    (train / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in DOCS.items()))
    (train / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (train / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{doc}\t1\n" for q, rel in QRELS.items() for doc in rel))
    return d, save_tiny_bert(d / "tiny", dropout=0.0)


def config(d, tiny, out, **kw):
    from simlm_ir.adapt import AdaptConfig

    return AdaptConfig(corpus=str(d / "user.jsonl"), output=str(out), topics=str(d / "topics.tsv"),
                       qrels=str(d / "qrels.txt"), name="user", init=str(tiny), generator="unigram",
                       pretrain_steps=3, pretrain_batch_size=2, max_length=32, train_data=str(d / "train"),
                       reranker=str(tiny), train_queries=6, device="cpu", progress=False, **kw)


def test_adapt_end_to_end_then_resume(setup, tmp_path):
    from simlm_ir.adapt import _recipe_settings, adapt, recipe_stages

    d, tiny = setup
    out = tmp_path / "adapted"
    said = []
    log = adapt(config(d, tiny, out), say=said.append)
    text = "\n".join(said)
    recipe = _recipe_settings()
    # the shipped recipe's fine-tuning stages, up to the one the shipped model was exported from
    assert list(log["stages"]) == ["pretrain", *recipe_stages(recipe), "export", "evaluate"]
    assert "generator: unigram" in text and "estimated time: ~" in text
    assert log["stages"]["pretrain"]["generator"]["kind"] == "unigram"
    assert log["stages"]["pretrain"]["steps"] == 3
    # the recipe's subset of training queries, each with mined negatives
    assert sum(1 for _ in open(out / "bm25_negs.jsonl")) == 6
    meta = json.loads((out / "model" / "simlm_ir_adapt.json").read_text())
    assert meta["adapt_config"]["generator"] == "unigram" and meta["fine_tuning_recipe"] == recipe
    before, after = load_file(str(tiny / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    layer = "encoder.layer.0.attention.self.query.weight"
    assert before[layer].shape == after[layer].shape and not torch.equal(before[layer], after[layer])
    board = (out / "runs" / "user" / "leaderboard.md").read_text()
    for row in ("| BM25", "| SimLM ", "| SimLM adapted"):
        assert row in board
    assert "generator unigram" in board
    stamp = (out / "model" / "model.safetensors").stat().st_mtime_ns

    said.clear()
    adapt(config(d, tiny, out), say=said.append)  # everything done: every stage is skipped
    assert sum("skipped" in line for line in said) == len(log["stages"])
    assert not any("estimated" in line for line in said)
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_other_settings_in_the_same_output_are_refused(setup, tmp_path):
    from simlm_ir.adapt import adapt
    from simlm_ir.errors import SimLMIRError

    d, tiny = setup
    out = tmp_path / "adapted"
    out.mkdir()
    (out / "adapt_config.json").write_text(json.dumps({"corpus": str(d / "user.jsonl"), "pretrain_steps": 99}))
    with pytest.raises(SimLMIRError, match="adapt_config.json: this output holds a run with other settings"):
        adapt(config(d, tiny, out), say=lambda _: None)


def test_cli_is_generated_from_the_config():
    from simlm_ir.adapt import build_parser

    (cfg,) = build_parser().parse_args_into_dataclasses(
        ["--corpus", "c.jsonl", "--output", "o", "--preset", "gpu", "--pretrain-steps", "7"])
    resolved = cfg.resolved()
    assert resolved.pretrain_steps == 7 and resolved.pretrain_batch_size == 64
    assert resolved.generator == "mlm-warmup"
    assert resolved.train_queries == json.loads(
        (DEFAULT_SIMLM_DIR / "simlm_ir_recipe.json").read_text())["settings"]["train_queries"]


@pytest.mark.parametrize("export_stage, last", [(None, "stage3"), ("stage1", "stage1"), ("stage2", "stage2")])
def test_the_recipe_is_re_run_up_to_the_stage_the_shipped_model_came_from(export_stage, last):
    from simlm_ir.adapt import recipe_stages

    recipe = {} if export_stage is None else {"export_stage": export_stage}
    stages = recipe_stages(recipe)
    assert stages[-1] == last and stages[0] == "mine-bm25"
    assert ("teacher" in stages) == (last == "stage3") and ("mine-dense" in stages) == (last != "stage1")


def test_an_unknown_export_stage_is_refused():
    from simlm_ir.adapt import recipe_stages
    from simlm_ir.errors import SimLMIRError

    with pytest.raises(SimLMIRError, match="export_stage 'stage9'"):
        recipe_stages({"export_stage": "stage9"})
