"""Command lines generated from config dataclasses: flag names, a leading JSON config, errors."""

import json

import pytest

from simlm_ir.index.__main__ import IndexCommand
from simlm_ir.index.faiss import IndexConfig
from simlm_ir.train.colbert import ColBERTTrainConfig
from simlm_ir.train.finetune import FinetuneConfig
from simlm_ir.train.pretrain import PretrainConfig
from simlm_ir.util.cli import parse_config, parse_configs


def test_flags_are_the_fields_with_pyserini_style_names_and_documented_spellings():
    cfg = parse_config(FinetuneConfig, ["--kd-teacher", "t.jsonl", "--output", "out", "--dataset", "beir/scifact",
                                        "--batch-size", "8", "--lr", "1e-5", "--in-batch-only", "--no-progress"],
                       prog="finetune")
    assert (cfg.kd_teacher, cfg.output, cfg.corpus) == ("t.jsonl", "out", "beir/scifact")
    assert (cfg.batch_size, cfg.lr) == (8, 1e-5)
    assert cfg.in_batch_only is True and cfg.progress is False and cfg.distill
    assert parse_config(FinetuneConfig, ["--output", "o", "--max_steps", "3"], prog="f").max_steps == 3
    assert parse_config(ColBERTTrainConfig, ["--train-file", "t", "--output", "o", "--no-in-batch"],
                        prog="c").in_batch is False
    cmd, index = parse_configs([IndexCommand, IndexConfig], ["--index", "d", "--index-type", "hnsw", "--M", "16"],
                               prog="index")
    assert (cmd.index, index.index_type, index.hnsw_m) == ("d", "hnsw", 16)


def test_every_field_is_a_flag():
    for cls, required in ((PretrainConfig, ["--corpus", "c", "--init", "i", "--output", "o"]),
                          (FinetuneConfig, ["--output", "o"])):
        cfg = parse_config(cls, required, prog="x")
        assert cfg == cls(**{k.lstrip("-").replace("-", "_"): v for k, v in zip(required[::2], required[1::2])})


def test_a_json_config_comes_first_and_flags_override_it(tmp_path):
    path = tmp_path / "stage1.json"
    path.write_text(json.dumps({"corpus": "c.jsonl", "init": "minilm", "output": "run", "max_steps": 7, "lr": 1e-3}))
    cfg = parse_config(PretrainConfig, [str(path), "--lr", "5e-4"], prog="pretrain")
    assert (cfg.corpus, cfg.output, cfg.max_steps, cfg.lr) == ("c.jsonl", "run", 7, 5e-4)


def test_config_file_errors_name_the_file(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"output": "o", "learning_rate": 1e-3}))
    with pytest.raises(SystemExit) as exc:
        parse_config(FinetuneConfig, [str(path)], prog="finetune")
    assert exc.value.code == 2
    assert "bad.json: unknown config field(s) learning_rate" in capsys.readouterr().err
    path.write_text("{not json")
    with pytest.raises(SystemExit):
        parse_config(FinetuneConfig, [str(path)], prog="finetune")
    assert "bad.json:1: not valid JSON" in capsys.readouterr().err


def test_missing_required_and_unknown_flags_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(PretrainConfig, ["--corpus", "c"], prog="pretrain")
    assert exc.value.code == 2 and "--init" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(FinetuneConfig, ["--output", "o", "--learning-rate", "1"], prog="finetune")
    assert "unrecognized arguments: --learning-rate" in capsys.readouterr().err
