"""benchmarks/pretrain_ablation.py end to end at its tiny preset: every stage runs, resumes by skipping
what is done, and the table has one row per arm with the compute-matched budgets."""

import csv
import json

import pytest
from tiny import DOCS

from simlm_ir.train import ablation as abl


@pytest.mark.slow
def test_tiny_ablation_end_to_end_and_resume(tmp_path):
    corpus = tmp_path / "pretrain.jsonl"
    # Real text: the shared package descriptions, repeated under distinct ids to fill a few batches.
    with open(corpus, "w") as fh:
        for rep in range(30):
            for doc_id, text in DOCS.items():
                fh.write(json.dumps({"id": f"{doc_id}-{rep}", "contents": text}) + "\n")
    preset = abl.PRESETS["tiny"]
    work, runs = tmp_path / "work", tmp_path / "runs"
    result = abl.run_ablation(preset, corpus, work, runs, progress=False)

    arms = [r["arm"] for r in result["rows"]]
    assert arms == list(preset.arms)
    costs = {r["arm"]: r["pretrain"] for r in result["rows"]}
    assert costs["base"] is None
    # Compute-matched arms: the same steps, batch and length, hence the same tokens (same data order).
    matched = [costs[a] for a in ("mlm", "rlm")]
    assert {(c["steps"], c["batch_size"], c["max_length"], c["tokens"]) for c in matched} == {
        (preset.arm_steps, preset.batch_size, preset.max_length, matched[0]["tokens"])}
    assert costs["rlm"]["generator"]["kind"] == "checkpoint"  # the frozen base samples RLM's replacements
    assert costs["mlm"]["generator"]["kind"] == "mask"
    for r in result["rows"]:
        for frac in preset.fractions:
            (seed_result,) = r["finetuned"][frac]
            assert set(seed_result) == {"dev", "test"}
            assert 0.0 <= seed_result["test"]["aggregate"]["nDCG@10"] <= 1.0

    with open(runs / "ablation.csv") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 1 + len(preset.arms)
    assert (runs / "ablation.png").stat().st_size > 0
    md = (runs / "ablation.md").read_text()
    assert "not BEIR" in md and "Published" in md

    # A second call finds every stage done and only rewrites the report.
    marks = sorted(p.stat().st_mtime_ns for p in work.rglob("done.json"))
    again = abl.run_ablation(preset, corpus, work, runs, progress=False)
    assert sorted(p.stat().st_mtime_ns for p in work.rglob("done.json")) == marks
    assert again["rows"][0]["finetuned"][1.0][0]["test"] == result["rows"][0]["finetuned"][1.0][0]["test"]
