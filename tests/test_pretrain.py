"""The pre-training driver: loss goes down, resume reproduces losses, clear errors, CLI output."""

import importlib
import inspect
import json
import re
from dataclasses import replace

import pytest

from simlm_ir.errors import CheckpointError, InputFormatError, SimLMIRError
from simlm_ir.train.data import DataOrder
from simlm_ir.train.loop import checkpoints
from simlm_ir.train.pretrain import PretrainConfig, main, pretrain

TINY = "hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128"
MODULES = ["json", "argparse", "collections", "functools", "pathlib", "logging", "subprocess", "tempfile",
           "textwrap", "csv", "heapq", "random", "statistics", "decimal", "datetime", "difflib", "pickle",
           "sqlite3", "threading", "zipfile", "inspect", "shutil", "calendar", "fractions", "bisect"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small real-English JSONL corpus: docstring paragraphs of stdlib modules and classes."""
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    rows = []
    for name in MODULES:
        mod = importlib.import_module(name)
        for obj_name, obj in [(name, mod)] + [(f"{name}.{k}", v) for k, v in sorted(vars(mod).items())
                                               if not k.startswith("_") and inspect.isclass(v)]:
            for i, para in enumerate(re.split(r"\n\s*\n", inspect.getdoc(obj) or "")):
                para = " ".join(para.split())
                if len(para.split()) >= 12 and ">>>" not in para:
                    rows.append({"id": f"{obj_name}#{i}", "title": obj_name, "text": para})
    assert len(rows) > 150
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(corpus, output, **kw) -> PretrainConfig:
    base = dict(corpus=str(corpus), init="scratch", output=str(output), generator="unigram", config_overrides=TINY,
                max_length=48, batch_size=4, lr=2e-3, warmup_steps=2, max_steps=4, save_steps=2,
                logging_steps=1, seed=7, progress=False, threads=None)
    base.update(kw)
    return PretrainConfig(**base)


def test_data_order_is_a_function_of_seed_and_step_and_shards_ranks():
    one = DataOrder(10, seed=1, batch_size=4)
    assert one.indices(3) == DataOrder(10, seed=1, batch_size=4).indices(3)
    first_epoch = one.indices(0) + one.indices(1) + one.indices(2)[:2]
    assert sorted(first_epoch) == list(range(10))
    r0, r1 = DataOrder(10, 1, 2, rank=0, world=2), DataOrder(10, 1, 2, rank=1, world=2)
    assert r0.indices(0) + r1.indices(0) == one.indices(0)


@pytest.mark.slow
def test_loss_goes_down_on_real_text(corpus, tmp_path):
    result = pretrain(tiny_config(corpus, tmp_path / "run", max_steps=12, warmup_steps=2, lr=5e-3,
                                  save_steps=100))
    losses = list(result.losses.values())
    assert len(losses) == 12
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 1.5, f"loss did not go down: {first:.2f} -> {last:.2f}"
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert log[0]["tokens_per_s"] > 0


def test_resume_reproduces_the_losses_of_an_uninterrupted_run(corpus, tmp_path):
    # mlm-warmup also exercises the generator that is trained first and reloaded on resume.
    kw = dict(generator="mlm-warmup", generator_warmup_steps=2, generator_config_overrides="hidden_size=32")
    kw["batch_size"] = 2
    full = pretrain(tiny_config(corpus, tmp_path / "full", **kw))

    part_dir = tmp_path / "part"
    first = pretrain(tiny_config(corpus, part_dir, max_steps=2, **kw))
    assert [p.name for p in checkpoints(part_dir)] == ["checkpoint-2"]
    with pytest.raises(SimLMIRError, match="--resume"):
        pretrain(tiny_config(corpus, part_dir, **kw))
    with pytest.raises(SimLMIRError, match="seed"):
        pretrain(tiny_config(corpus, part_dir, resume=True, **{**kw, "seed": 8}))
    rest = pretrain(tiny_config(corpus, part_dir, resume=True, **kw))

    assert first.losses == {s: full.losses[s] for s in (1, 2)}
    assert set(rest.losses) == {3, 4}
    for step in (3, 4):
        assert rest.losses[step] == pytest.approx(full.losses[step], abs=1e-6)
    run_config = json.loads((part_dir / "run_config.json").read_text())
    assert run_config["generator"]["kind"] == "mlm-warmup"
    assert (part_dir / "generator" / "config.json").exists()


def test_cli_writes_a_bert_checkpoint_and_records_the_generator(corpus, tmp_path, capsys):
    from transformers import BertModel

    out = tmp_path / "cli"
    rc = main(["--corpus", str(corpus), "--init", "scratch", "--config-overrides", TINY, "--output", str(out),
               "--generator", "unigram", "--max-steps", "2", "--batch-size", "2", "--max-length", "48",
               "--save-steps", "1", "--save-total-limit", "1", "--no-progress"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["generator"]["kind"] == "unigram" and cfg["generator"]["ablation"] is True
    assert cfg["config"]["max_length"] == 48
    assert [p.name for p in checkpoints(out)] == ["checkpoint-2"]
    assert (out / "checkpoint-2" / "trainer_state.pt").exists()
    bert = BertModel.from_pretrained(str(out), add_pooling_layer=False)
    assert bert.config.hidden_size == 64


def test_bad_corpus_line_is_reported_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "contents": "A fine passage."}\n{"id": "b", "contents": "Also fine."}\n{"id": "c",\n')
    with pytest.raises(InputFormatError, match=r"bad\.jsonl:3"):
        pretrain(tiny_config(bad, tmp_path / "out"))
    rc = main(["--corpus", str(bad), "--init", "scratch", "--output", str(tmp_path / "out2"),
               "--generator", "unigram", "--no-progress"])
    assert rc == 2
    assert "bad.jsonl:3" in capsys.readouterr().err


def test_non_bert_init_is_a_checkpoint_error(corpus, tmp_path):
    ckpt = tmp_path / "gpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="gpt2"):
        pretrain(tiny_config(corpus, tmp_path / "out", init=str(ckpt)))


def test_missing_generator_checkpoint_suggests_the_fallbacks(corpus, tmp_path):
    with pytest.raises(CheckpointError, match="mlm-warmup"):
        pretrain(tiny_config(corpus, tmp_path / "out", generator=str(tmp_path / "no-such-generator-dir"),
                             max_steps=1))


def test_flags_are_validated():
    with pytest.raises(SimLMIRError, match="mask rates"):
        tiny_config("x", "y", encoder_mask_rate=0.6, decoder_mask_rate=0.5).validate()
    with pytest.raises(SimLMIRError, match="batch-size"):
        replace(tiny_config("x", "y"), batch_size=0).validate()


def test_runs_unchanged_under_torch_distributed(corpus, tmp_path):
    """DDP wrapper, no_sync accumulation, loss all-reduce and rank-0 writes, on a one-process gloo group."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plain = pretrain(tiny_config(corpus, tmp_path / "plain", grad_accum=2, max_steps=2, batch_size=2))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        ddp = pretrain(tiny_config(corpus, tmp_path / "ddp", grad_accum=2, max_steps=2, batch_size=2))
    finally:
        dist.destroy_process_group()
    assert ddp.losses == pytest.approx(plain.losses, abs=1e-6)
    assert json.loads((tmp_path / "ddp" / "run_config.json").read_text())["world_size"] == 1


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_then_resume_is_bit_identical(corpus, tmp_path):
    """``python -m simlm_ir.train.pretrain`` killed with SIGKILL inside its second checkpoint write
    (encoder and decoder saved, trainer state not), then resumed: encoder and decoder weights
    bit-identical to an uninterrupted run, each step logged once with the same values, no temp left."""
    from crash import hidden_entries, kill_at
    from safetensors.torch import load_file

    part, full = tmp_path / "part", tmp_path / "full"
    kw = dict(max_steps=8, save_steps=2, batch_size=2, threads=1)
    args = ["--corpus", str(corpus), "--init", "scratch", "--output", str(part), "--generator", "unigram",
            "--config-overrides", TINY, "--max-length", "48", "--batch-size", "2", "--lr", "2e-3",
            "--warmup-steps", "2", "--max-steps", "8", "--save-steps", "2", "--logging-steps", "1", "--seed", "7",
            "--threads", "1", "--no-progress"]
    kill_at("simlm_ir.train.pretrain", args, "torch:save", nth=2, match="trainer_state", tmp=tmp_path)
    assert [p.name for p in checkpoints(part)] == ["checkpoint-2"]
    assert any(name.startswith(".checkpoint-4.") for name in hidden_entries(part))
    steps = [json.loads(ln)["step"] for ln in (part / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]

    rest = pretrain(tiny_config(corpus, part, resume=True, **kw))
    pretrain(tiny_config(corpus, full, **kw))
    assert set(rest.losses) == set(range(3, 9))
    for name in ("model.safetensors", "decoder.safetensors"):
        a, b = load_file(str(part / name)), load_file(str(full / name))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name
    log = [json.loads(ln) for ln in (part / "train_log.jsonl").read_text().splitlines()]
    ref_log = [json.loads(ln) for ln in (full / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    drop = ("tokens_per_s", "seconds")  # wall-clock figures differ between runs
    assert [{k: v for k, v in r.items() if k not in drop} for r in log] == \
        [{k: v for k, v in r.items() if k not in drop} for r in ref_log]
    assert hidden_entries(part) == []
    assert [p.name for p in checkpoints(part)] == [p.name for p in checkpoints(full)]


def test_head_warmup_freezes_the_encoder_then_trains_it(corpus, tmp_path):
    """The first --head-warmup-steps move only the MLM head and the decoder; the encoder after."""
    import torch
    from transformers import BertForMaskedLM

    from simlm_ir.modeling.rlm import load_encoder

    start = tmp_path / "start"
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder("scratch", config_overrides=TINY)
    encoder.save_pretrained(start)
    tokenizer.save_pretrained(start)

    def encoder_body(path):
        return {k: v.clone() for k, v in BertForMaskedLM.from_pretrained(path).bert.state_dict().items()}

    before = encoder_body(start)
    warm = pretrain(tiny_config(corpus, tmp_path / "warm", init=str(start), max_steps=3, head_warmup_steps=2,
                                save_steps=1))
    assert len(warm.losses) == 3
    at2, at3 = encoder_body(tmp_path / "warm" / "checkpoint-2"), encoder_body(tmp_path / "warm")
    assert all(torch.equal(before[k], at2[k]) for k in before), "the encoder moved during the head warm-up"
    head2 = BertForMaskedLM.from_pretrained(tmp_path / "warm" / "checkpoint-2").cls.predictions.transform.dense
    head0 = BertForMaskedLM.from_pretrained(start).cls.predictions.transform.dense
    assert not torch.equal(head0.weight, head2.weight), "the head did not train during the warm-up"
    assert any(not torch.equal(at2[k], at3[k]) for k in at2), "the encoder stayed frozen after the warm-up"
    with pytest.raises(SimLMIRError, match="head-warmup-steps"):
        tiny_config(corpus, tmp_path / "x", head_warmup_steps=4).validate()
