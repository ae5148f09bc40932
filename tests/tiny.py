"""Shared test material: a few real package descriptions, queries about them, and a tiny BERT."""

from __future__ import annotations

import json
from pathlib import Path

DOCS = {
    "apt": "APT is the command-line package manager of Debian; it downloads and installs packages.",
    "dpkg": "dpkg is the low-level tool that installs, removes and inspects .deb package files.",
    "vim": "Vim is a highly configurable text editor built to make creating and changing text efficient.",
    "emacs": "GNU Emacs is an extensible, customizable text editor with a Lisp interpreter at its core.",
    "curl": "curl transfers data to or from a server using URLs, with support for HTTP and FTP.",
    "wget": "GNU Wget retrieves files from the web over HTTP, HTTPS and FTP, non-interactively.",
    "gzip": "gzip compresses files with the Lempel-Ziv coding used in the deflate format.",
    "xz": "XZ Utils compress files with the LZMA2 algorithm at a high compression ratio.",
    "htop": "htop is an interactive process viewer that shows CPU and memory use per process.",
    "rsync": "rsync copies files locally or over a network, sending only the differences.",
    "git": "Git is a fast, scalable, distributed revision control system.",
    "sqlite3": "SQLite is a small C library that implements a self-contained SQL database engine.",
}
QUERIES = {"q1": "package manager for Debian", "q2": "text editor", "q3": "download files from the web",
           "q4": "file compression tool", "q5": "process viewer", "q6": "copy files over the network",
           "q7": "version control", "q8": "embedded SQL database"}
QRELS = {"q1": {"apt": 1}, "q2": {"vim": 1}, "q3": {"wget": 1}, "q4": {"gzip": 1}, "q5": {"htop": 1},
         "q6": {"rsync": 1}, "q7": {"git": 1}, "q8": {"sqlite3": 1}}


def save_tiny_bert(path: Path, dropout: float = 0.1) -> Path:
    """A 2-layer, hidden-32 BERT with MiniLM's vocabulary (random weights, seeded), saved to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from simlm_ir.modeling.checkpoints import minilm_dir

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=256, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout)).save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def write_training_data(d: Path, docs=DOCS, queries=QUERIES, qrels=QRELS, depth: int = 6,
                        tiebreak: float = 0.01) -> None:
    """``d/corpus.jsonl`` and ``d/train.jsonl`` with negatives mined by word overlap (ties by doc
    order when ``tiebreak`` > 0, else by doc id)."""
    from simlm_ir.train.data import build_examples, negatives_from_run, write_train_file

    with open(d / "corpus.jsonl", "w") as fh:
        for i, t in docs.items():
            fh.write(json.dumps({"id": i, "contents": t}) + "\n")
    run = {q: {doc: float(len(set(queries[q].lower().split()) & set(docs[doc].lower().split()))) + i * tiebreak
               for i, doc in enumerate(docs)} for q in queries}
    write_train_file(build_examples(queries, qrels, negatives_from_run(run, qrels, depth=depth)), d / "train.jsonl")
