"""Multi-process training equals one process with the global batch (torchrun, CPU gloo, 2 ranks).

Fine-tuning: 2 processes x batch B with gathered in-batch negatives give the loss curve (and weights)
of 1 process x batch 2B, write logs/checkpoints once (rank 0) and resume to the same losses.
Pre-training: the same for the RLM loss (shared masks/generator samples, token-weighted loss).
Tiny BERTs with dropout off, so the runs are comparable step by step.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tiny as tiny_data
import torch

ROOT = Path(__file__).resolve().parent.parent

DOCS, QUERIES, QRELS = tiny_data.DOCS, tiny_data.QUERIES, tiny_data.QRELS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, module: str, args: list[str], timeout: int = 600) -> None:
    """``torchrun --nproc_per_node nproc -m module args`` on 127.0.0.1, one CPU thread per rank. The
    timeout only catches a deadlock: on a shared 2-core machine a healthy run can take minutes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", module, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer hidden-32 BERT with dropout off (so ranks and runs are comparable), corpus, train file."""
    d = tmp_path_factory.mktemp("ddp")
    tiny_data.save_tiny_bert(d / "bert", dropout=0.0)
    tiny_data.write_training_data(d, depth=6)
    return d


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]


FT_STEPS = 6


def _ft_args(tiny, out, batch_size: int) -> list[str]:
    return ["--train-file", str(tiny / "train.jsonl"), "--init", str(tiny / "bert"), "--corpus",
            str(tiny / "corpus.jsonl"), "--output", str(out), "--group-size", "3", "--batch-size", str(batch_size),
            "--lr", "1e-2", "--max-steps", str(FT_STEPS), "--warmup-steps", "1", "--save-steps", "3",
            "--log-every", "1", "--device", "cpu", "--no-progress"]


@pytest.mark.slow
def test_finetune_two_processes_match_one_process_with_the_global_batch(tiny, tmp_path):
    from simlm_ir.train.finetune import main

    torch.set_num_threads(1)
    assert main(_ft_args(tiny, tmp_path / "one", batch_size=4)) == 0
    torchrun(2, "simlm_ir.train.finetune", _ft_args(tiny, tmp_path / "two", batch_size=2))

    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in two] == list(range(1, FT_STEPS + 1))  # rank 0 alone writes the log
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)
    assert one[-1]["loss"] < one[0]["loss"] - 0.1  # it learns, so a wrong gradient would show
    cfg = json.loads((tmp_path / "two" / "finetune_config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["global_batch_size"] == 4

    # The trained weights agree too, to a small fraction of how far training moved them. (Scoring
    # only each rank's own queries, as the paper's code does, misses the gradient other ranks'
    # queries send to this rank's passages: its curve departs from step 2 and the weights by ~100%.)
    from safetensors.torch import load_file

    w0, w1, w2 = (load_file(str(d / "model.safetensors")) for d in (tiny / "bert", tmp_path / "one", tmp_path / "two"))
    assert set(w1) == set(w2)
    moved = sum(float(((w1[k] - w0[k]) ** 2).sum()) for k in w1) ** 0.5
    apart = sum(float(((w2[k] - w1[k]) ** 2).sum()) for k in w1) ** 0.5
    assert moved > 0 and apart < 1e-2 * moved, (apart, moved)

    # resumed under torchrun from checkpoint-3: the same losses for steps 4..6
    torchrun(2, "simlm_ir.train.finetune", _ft_args(tiny, tmp_path / "two", batch_size=2) + ["--resume"])
    resumed = _log(tmp_path / "two")
    assert [r["step"] for r in resumed] == list(range(1, FT_STEPS + 1))
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in two], rel=1e-5)


def _pt_args(tiny, out, batch_size: int) -> list[str]:
    no_dropout = "hidden_dropout_prob=0.0,attention_probs_dropout_prob=0.0"
    return ["--corpus", str(tiny / "corpus.jsonl"), "--init", "scratch", "--output", str(out),
            "--config-overrides",
            f"hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,{no_dropout}",
            "--generator", "mlm-warmup", "--generator-warmup-steps", "2",
            "--generator-config-overrides", "hidden_size=32,num_attention_heads=2,intermediate_size=64",
            "--max-length", "48", "--batch-size", str(batch_size), "--lr", "2e-3", "--warmup-steps", "1",
            "--max-steps", "4", "--save-steps", "2", "--logging-steps", "1", "--seed", "7", "--device", "cpu",
            "--no-progress"]


@pytest.mark.slow
def test_pretrain_two_processes_match_one_process_with_the_global_batch(tiny, tmp_path):
    """Same data, masks and generator samples per step, token-weighted loss: the same curve."""
    from simlm_ir.train.pretrain import main

    torch.set_num_threads(1)
    assert main(_pt_args(tiny, tmp_path / "one", batch_size=4)) == 0
    torchrun(2, "simlm_ir.train.pretrain", _pt_args(tiny, tmp_path / "two", batch_size=2))

    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3, 4]  # rank 0 alone writes the log
    for key in ("loss", "encoder_loss", "decoder_loss"):
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], rel=1e-4), key
    assert one[-1]["loss"] < one[0]["loss"]
    assert json.loads((tmp_path / "two" / "run_config.json").read_text())["world_size"] == 2
    from safetensors.torch import load_file

    w1, w2 = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "one", tmp_path / "two"))
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4
