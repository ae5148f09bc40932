"""ColBERT late interaction (the model): per-token vectors, MaxSim scoring, colbert-ai's checkpoint layout.

The model is ColBERTv2's (Khattab & Zaharia 2020; Santhanam et al. 2022) as its reference code
(``colbert-ai``) builds it: a BERT encoder, a bias-free linear projection to ``dim`` (128), the
``[Q]``/``[D]`` markers (``[unused0]``/``[unused1]``) written over position 1, queries padded with
``[MASK]`` to ``query_maxlen`` (32) and encoded with those positions masked out of attention but kept
as query vectors ("query augmentation"), documents truncated to ``doc_maxlen`` (180) with padding and
punctuation dropped, every vector L2-normalised, and score(q, d) = sum over query tokens of the max
cosine over document tokens. Checkpoints use colbert-ai's layout (``bert.*`` and ``linear.weight``
weights, ``artifact.metadata``), so a real ColBERTv2 checkpoint (e.g. ``colbert-ir/colbertv2.0``, by
local path or hub id) loads here, and ours load there.

Why the model is ours: ``colbert-ai`` 0.2.22 needs ``transformers<5`` (with 5.x its indexer fails
on ``all_tied_weights_keys`` and hangs), and our stack pins transformers 5.24 for everything else;
PyLate's model class (``pylate.models``) needs sentence-transformers 5.3 (we have 6.x). Changing the
project pins for a baseline was ruled out, so this module is a compact re-implementation that keeps
the checkpoint format compatible with both. The *index* is the field's: PyLate's port of colbert-ai's
PLAID engine takes our token vectors (:mod:`simlm_ir.index.plaid`).
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from simlm_ir.errors import CheckpointError
from simlm_ir.modeling.checkpoints import check_bert_like, resolve_checkpoint

METADATA_FILE = "artifact.metadata"  # colbert-ai's name for the ColBERT settings of a checkpoint
WEIGHTS_FILE = "model.safetensors"
CPU_BATCH_TOKENS = 4096  # padded document tokens per forward pass when encoding on CPU


@dataclass
class ColBERTConfig:
    """ColBERT's settings; saved in ``artifact.metadata`` under colbert-ai's key names."""

    dim: int = 128
    query_maxlen: int = 32
    doc_maxlen: int = 180
    mask_punctuation: bool = True
    attend_to_mask_tokens: bool = False
    query_token_id: str = "[unused0]"  # colbert-ai's names: these are tokens, not ids
    doc_token_id: str = "[unused1]"
    similarity: str = "cosine"

    @classmethod
    def from_metadata(cls, meta: Mapping) -> "ColBERTConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in known})

    def __post_init__(self):
        if self.similarity != "cosine":
            raise CheckpointError(f"ColBERT similarity {self.similarity!r} is not supported (only 'cosine')")


def maxsim(q: torch.Tensor, d: torch.Tensor, d_mask: torch.Tensor) -> torch.Tensor:
    """Late-interaction scores (nq, nd): for every query and document, the sum over query token
    vectors ``q`` (nq, Lq, dim) of their best dot product with the document's token vectors ``d``
    (nd, Ld, dim); document positions where ``d_mask`` (nd, Ld) is False never count."""
    sim = torch.einsum("qid,njd->qnij", q, d)
    sim = sim.masked_fill(~d_mask.bool()[None, :, None, :], float("-inf"))
    return sim.max(dim=-1).values.sum(dim=-1)


def _resolve_files(checkpoint: str) -> Path:
    """A local directory for ``checkpoint`` (hub ids via the Hugging Face cache/download)."""
    path = resolve_checkpoint(checkpoint)
    if Path(path).is_dir():
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.bin",
                                                            METADATA_FILE, "*.model"]))
    except Exception as exc:  # offline, unknown id, gated repo...
        raise CheckpointError(f"{checkpoint}: cannot fetch this hub checkpoint ({type(exc).__name__}: {exc}); "
                              "download it where the hub is reachable and pass the local directory") from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    st = sorted(path.glob("*.safetensors"))
    if st:
        from safetensors.torch import load_file

        out = {}
        for f in st:
            out.update(load_file(str(f)))
        return out
    bins = sorted(path.glob("pytorch_model*.bin"))
    if bins:
        out = {}
        for f in bins:
            out.update(torch.load(f, map_location="cpu", weights_only=True))
        return out
    raise CheckpointError(f"{path}: no model weights (*.safetensors or pytorch_model*.bin)")


class ColBERT(torch.nn.Module):
    """BERT + linear projection; query/document token vectors as ColBERTv2 makes them."""

    def __init__(self, bert, tokenizer, config: ColBERTConfig, linear: torch.nn.Linear | None = None,
                 seed: int = 0):
        super().__init__()
        self.bert, self.tokenizer, self.config = bert, tokenizer, config
        hidden = int(bert.config.hidden_size)
        if linear is None:
            gen = torch.Generator().manual_seed(seed)
            linear = torch.nn.Linear(hidden, config.dim, bias=False)
            with torch.no_grad():  # nn.Linear's default init, from an explicit seed
                bound = 1 / hidden ** 0.5
                linear.weight.copy_(torch.rand(config.dim, hidden, generator=gen) * 2 * bound - bound)
        self.linear = linear
        vocab = tokenizer.get_vocab()
        for token in (config.query_token_id, config.doc_token_id):
            if token not in vocab:
                raise CheckpointError(f"the tokenizer has no {token!r} token for ColBERT's [Q]/[D] markers")
        self.q_marker = vocab[config.query_token_id]
        self.d_marker = vocab[config.doc_token_id]
        self.pad_id = tokenizer.pad_token_id or 0
        if tokenizer.mask_token_id is None:
            raise CheckpointError("the tokenizer has no [MASK] token (ColBERT pads queries with it)")
        self.mask_id = tokenizer.mask_token_id
        skip = set()
        if config.mask_punctuation:
            for symbol in string.punctuation:
                ids = tokenizer.encode(symbol, add_special_tokens=False)
                if ids:
                    skip.add(ids[0])
        self.register_buffer("skip_ids", torch.tensor(sorted(skip), dtype=torch.long), persistent=False)

    # -- loading and saving ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, checkpoint: str = "minilm", config: ColBERTConfig | None = None,
                        seed: int = 0) -> "ColBERT":
        """A ColBERT checkpoint (colbert-ai layout: ours or a real ColBERTv2, local or hub id), or
        any BERT checkpoint (e.g. ``minilm``) with a fresh projection seeded by ``seed``."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = _resolve_files(checkpoint)
        check_bert_like(path)
        meta_file = path / METADATA_FILE
        if config is None:
            config = ColBERTConfig()
            if meta_file.exists():
                try:
                    config = ColBERTConfig.from_metadata(json.loads(meta_file.read_text()))
                except json.JSONDecodeError as exc:
                    raise CheckpointError(f"{meta_file}: not valid JSON ({exc.msg})") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            bert_config = AutoConfig.from_pretrained(str(path))
        except OSError as exc:
            raise CheckpointError(f"{checkpoint}: cannot load tokenizer/config ({exc})") from None
        weights = _read_weights(path)
        linear_w = weights.pop("linear.weight", None)
        prefixed = any(k.startswith("bert.") for k in weights)
        bert_state = {k[len("bert."):]: v for k, v in weights.items() if k.startswith("bert.")} if prefixed else weights
        bert = AutoModel.from_config(bert_config)
        if getattr(bert, "pooler", None) is not None:
            bert.pooler = None  # ColBERT uses every last-layer token vector, never the pooler
        bert_state = {k: v for k, v in bert_state.items() if not k.startswith("pooler.")}
        missing, _ = bert.load_state_dict(bert_state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing:
            raise CheckpointError(f"{checkpoint}: checkpoint lacks encoder weights {missing[:3]} "
                                  f"({len(missing)} missing); is it a BERT/ColBERT checkpoint?")
        linear = None
        if linear_w is not None:
            if tuple(linear_w.shape) != (config.dim, bert_config.hidden_size):
                raise CheckpointError(f"{checkpoint}: linear.weight is {tuple(linear_w.shape)}, expected "
                                      f"({config.dim}, {bert_config.hidden_size}) for dim {config.dim}")
            linear = torch.nn.Linear(bert_config.hidden_size, config.dim, bias=False)
            with torch.no_grad():
                linear.weight.copy_(linear_w.float())
        model = cls(bert.float(), tokenizer, config, linear, seed)
        model.name = str(checkpoint)
        model.path = str(path)
        model.trained_projection = linear is not None
        return model.eval()

    def save_pretrained(self, path) -> Path:
        """colbert-ai's checkpoint layout: ``bert.*`` + ``linear.weight`` weights, BERT config,
        tokenizer and ``artifact.metadata``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {f"bert.{k}": v.detach().contiguous() for k, v in self.bert.state_dict().items()}
        state["linear.weight"] = self.linear.weight.detach().contiguous()
        save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
        cfg = self.bert.config
        cfg.architectures = ["HF_ColBERT"]
        cfg.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / METADATA_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return path

    # -- tokenisation ----------------------------------------------------------------------------
    def tokenize_queries(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``[CLS] [Q] query [SEP] [MASK]...`` to exactly ``query_maxlen`` tokens."""
        # as colbert-ai: a placeholder token at position 1 is overwritten by the marker
        enc = self.tokenizer([". " + t for t in texts], padding="max_length", truncation=True,
                             max_length=self.config.query_maxlen, return_tensors="pt",
                             return_token_type_ids=False)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        ids[:, 1] = self.q_marker
        ids[ids == self.pad_id] = self.mask_id
        if self.config.attend_to_mask_tokens:
            mask = torch.ones_like(mask)
        return {"input_ids": ids, "attention_mask": mask}

    def tokenize_docs(self, texts: Sequence[str], pad: bool = True) -> dict:
        """``[CLS] [D] text [SEP]`` truncated to ``doc_maxlen``; ``keep`` marks the vectors that
        count (not padding, not punctuation). ``pad=False`` returns unpadded id lists."""
        enc = self.tokenizer([". " + t for t in texts], truncation=True, max_length=self.config.doc_maxlen,
                             padding="longest" if pad else False, return_tensors="pt" if pad else None,
                             return_token_type_ids=False, return_attention_mask=pad)
        if not pad:
            for ids in enc["input_ids"]:
                ids[1] = self.d_marker
            return {"input_ids": enc["input_ids"]}
        ids, mask = enc["input_ids"], enc["attention_mask"]
        ids[:, 1] = self.d_marker
        return {"input_ids": ids, "attention_mask": mask, "keep": self.keep_mask(ids, mask)}

    def keep_mask(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.bool()
        if self.skip_ids.numel():
            keep &= ~torch.isin(ids, self.skip_ids.to(ids.device))
        return keep

    # -- vectors ---------------------------------------------------------------------------------
    def _token_vectors(self, ids: torch.Tensor, mask: torch.Tensor, micro_batch: int | None = None) -> torch.Tensor:
        """Unit vectors (n, L, dim). With ``micro_batch``, rows run in length-sorted groups, each
        trimmed to its longest member (same result: padding is masked out of attention), which
        halves the cost of a training batch of passages of mixed lengths."""
        if micro_batch is None or ids.shape[0] <= micro_batch:
            hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            return F.normalize(self.linear(hidden), p=2, dim=-1)
        lengths = mask.sum(dim=1)
        order = torch.argsort(-lengths, stable=True)
        width = ids.shape[1]
        parts = []
        for chunk in order.split(micro_batch):
            w = max(1, int(lengths[chunk].max()))
            v = self._token_vectors(ids[chunk, :w], mask[chunk, :w])
            parts.append(F.pad(v, (0, 0, 0, width - w)))
        return torch.cat(parts)[torch.argsort(order)]

    def query_vectors(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(n, query_maxlen, dim) unit vectors, [MASK] positions included."""
        return self._token_vectors(batch["input_ids"], batch["attention_mask"])

    def doc_vectors(self, batch: Mapping[str, torch.Tensor], micro_batch: int | None = None) -> torch.Tensor:
        """(n, L, dim) unit vectors, zero where ``keep`` is False."""
        vecs = self._token_vectors(batch["input_ids"], batch["attention_mask"], micro_batch)
        return vecs * batch["keep"].unsqueeze(-1)

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> torch.Tensor:
        """MaxSim scores (len(queries), len(docs)) of raw texts."""
        q = self.query_vectors(self.tokenize_queries(queries))
        d_batch = self.tokenize_docs(docs)
        return maxsim(q, self.doc_vectors(d_batch), d_batch["keep"])

    @torch.inference_mode()
    def encode_query(self, text: str) -> np.ndarray:
        return self.query_vectors(self.tokenize_queries([text]))[0].float().numpy()

    @torch.inference_mode()
    def encode_docs(self, texts: Sequence[str], max_batch_tokens: int = CPU_BATCH_TOKENS,
                    batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """The kept token vectors of every document, concatenated in input order (tokens, dim)
        float16, and each document's number of vectors. Length-sorted batches padded to their
        longest member, at most ``max_batch_tokens`` padded tokens each."""
        ids = self.tokenize_docs(texts, pad=False)["input_ids"]
        n = len(ids)
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        per_doc: list[np.ndarray | None] = [None] * n
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < n:
            width = int(lengths[order[start]])
            rows = max(1, min(batch_size, max_batch_tokens // max(width, 1)))
            idx = order[start:start + rows]
            batch_ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                batch_ids[r, :lengths[i]] = torch.tensor(ids[i])
                mask[r, :lengths[i]] = 1
            keep = self.keep_mask(batch_ids, mask)
            vecs = self._token_vectors(batch_ids, mask).to(torch.float16).numpy()
            keep_np = keep.numpy()
            for r, i in enumerate(idx):
                per_doc[i] = vecs[r][keep_np[r]]
            start += rows
        doclens = np.array([len(v) for v in per_doc], dtype=np.int64)
        dim = self.config.dim
        flat = np.concatenate(per_doc) if n else np.empty((0, dim), dtype=np.float16)
        return flat, doclens


def model_key(model: ColBERT) -> str:
    """Content hash of the model's weights and settings (keys cached indexes)."""
    h = hashlib.sha256(json.dumps(asdict(model.config), sort_keys=True).encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
