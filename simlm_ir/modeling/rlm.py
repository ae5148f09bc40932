"""SimLM pre-training model: replaced language modelling (RLM) through a [CLS] bottleneck.

This module holds the pre-training model so it can be read top to bottom:

* a frozen **generator** (:mod:`simlm_ir.modeling.generators`) fills the masked positions of each
  corrupted copy by *sampling* from its distribution (a masked-LM checkpoint, our own MLM-warmed-up
  generator, or a unigram ablation);
* the **encoder** (``BertForMaskedLM``) reads the 30%-corrupted copy and recovers every original token;
* the **decoder** (2 BERT layers copied from the encoder's last 2) reads the encoder's last-layer
  [CLS] vector at position 0 and the *embeddings* of the 50%-corrupted copy at positions 1.., and
  recovers every original token through the encoder's MLM head. [CLS] is the only path from the
  encoder to the decoder, so the decoder loss can only be lowered by a better [CLS] vector.

``L = L_enc + L_dec`` (the generator is frozen, so its loss term is 0). ``save_pretrained`` writes the
encoder as a normal BERT directory (loadable with ``BertModel``/``AutoModel``) plus its tokenizer, with
the decoder weights and this model's settings beside it so pre-training can resume.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from simlm_ir.errors import CheckpointError
from simlm_ir.modeling.checkpoints import check_bert_like, minilm_dir, quiet_transformers, resolve_checkpoint
from simlm_ir.modeling.generators import Generator

logger = logging.getLogger(__name__)

SIMLM_CONFIG_NAME = "simlm_pretrain.json"
DECODER_WEIGHTS_NAME = "decoder.safetensors"


OBJECTIVES = ("rlm", "mlm", "enc-dec-mlm", "condenser")


@dataclass
class SimLMConfig:
    """Settings of the pre-training model that are saved with it.

    ``objective`` selects SimLM's RLM or one of the paper's ablation baselines, all on the same
    encoder so that only the objective differs between arms:

    * ``rlm``: generator-replaced copies, encoder + [CLS]-bottleneck decoder, loss at every position;
    * ``mlm``: plain BERT MLM, encoder only, ``[MASK]`` at ``encoder_mask_rate``, loss at masked positions;
    * ``enc-dec-mlm``: the same bottleneck decoder as RLM but ``[MASK]``-ed copies, loss at masked positions;
    * ``condenser``: encoder MLM plus a head that reads the last-layer [CLS] and the token states of
      encoder layer ``condenser_layer`` (Gao & Callan 2021), loss at masked positions.
    """

    encoder_mask_rate: float = 0.3
    decoder_mask_rate: float = 0.5
    decoder_layers: int = 2
    objective: str = "rlm"
    condenser_layer: int = 0  # 0: half the encoder's depth

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SimLMConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class SimLMOutput:
    """What one forward pass returns; ``loss`` is what training minimises."""

    loss: torch.Tensor
    encoder_loss: torch.Tensor
    decoder_loss: torch.Tensor
    encoder_input_ids: torch.Tensor
    decoder_input_ids: torch.Tensor
    encoder_last_hidden_state: torch.Tensor


def parse_config_overrides(overrides: str | dict | None) -> dict:
    """``"hidden_size=64,num_hidden_layers=2"`` (as HF's ``--config_overrides``) → dict of typed values."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    out = {}
    for item in str(overrides).split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"config override {item!r} is not key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_tokenizer(name_or_path: str | os.PathLike | None = None):
    """A tokenizer from a checkpoint name/path; ``None`` means the offline MiniLM (bert-base-uncased vocab)."""
    from transformers import AutoTokenizer

    if name_or_path is None:
        path = str(minilm_dir())
    elif Path(name_or_path).is_dir() and any((Path(name_or_path) / f).exists()
                                             for f in ("tokenizer.json", "vocab.txt")):
        path = str(name_or_path)  # a tokenizer directory of its own (e.g. a vocabulary trained for --init scratch)
    else:
        path = resolve_checkpoint(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot load a tokenizer ({exc})") from None


def check_bert_encoder(path: str) -> None:
    """Raise CheckpointError unless ``path`` holds a BERT model (the encoder must be a BertForMaskedLM)."""
    if Path(path).is_dir():
        model_type = check_bert_like(path).get("model_type")
    else:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(path).model_type
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot load the checkpoint config ({exc})") from None
    if model_type != "bert":
        raise CheckpointError(
            f"{path}: checkpoint is a {model_type!r} model; the SimLM encoder must be a BERT checkpoint "
            "(config.json model_type 'bert'), or pass 'scratch'")


def load_encoder(init: str | os.PathLike, tokenizer=None, config_overrides: str | dict | None = None):
    """The encoder ``BertForMaskedLM`` and its tokenizer.

    ``init`` is a local BERT directory, a hub id, a name ``resolve_checkpoint`` knows (``minilm``), or
    ``"scratch"`` for a fresh model from ``BertConfig(**config_overrides)`` with ``tokenizer``'s vocab
    (MiniLM's bert-base-uncased vocab by default). A checkpoint with no MLM head (e.g. MiniLM, saved
    as ``BertModel``) gets a new head whose output projection is tied to the word embeddings.
    """
    from transformers import BertConfig, BertForMaskedLM

    overrides = parse_config_overrides(config_overrides)
    if str(init) == "scratch":
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(None)
        overrides.setdefault("vocab_size", len(tokenizer))
        overrides.setdefault("pad_token_id", tokenizer.pad_token_id)
        config = BertConfig(**overrides)
        return BertForMaskedLM(config), tokenizer

    path = resolve_checkpoint(init)
    check_bert_encoder(path)
    try:
        with quiet_transformers():
            encoder, info = BertForMaskedLM.from_pretrained(path, output_loading_info=True, **overrides)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot load as a BERT masked LM ({exc})") from None
    head_missing = sorted(k for k in info["missing_keys"] if k.startswith("cls."))
    if head_missing:
        logger.info("%s has no MLM head; built one tied to the word embeddings (%d new tensors)",
                    path, len(head_missing))
    other_missing = sorted(k for k in info["missing_keys"] if not k.startswith("cls."))
    if other_missing:
        raise CheckpointError(f"{path}: BERT checkpoint lacks encoder weights, e.g. {other_missing[:3]}")
    if encoder.get_output_embeddings().weight is not encoder.get_input_embeddings().weight:
        # SimLM's MLM head projects onto the word embeddings; keep that true whatever the config said.
        encoder.get_output_embeddings().weight = encoder.get_input_embeddings().weight
    if tokenizer is None:
        tokenizer = load_tokenizer(path)
    if len(tokenizer) > encoder.config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {len(tokenizer)} tokens but the model only {encoder.config.vocab_size}")
    return encoder, tokenizer


# --------------------------------------------------------------------------------------------------
# The pre-training model
# --------------------------------------------------------------------------------------------------


class SimLMForPretraining(nn.Module):
    """Encoder + 2-layer bottleneck decoder + frozen generator; ``forward`` returns L_enc + L_dec."""

    def __init__(self, encoder, tokenizer, config: SimLMConfig | None = None,
                 generator: Generator | None = None, decoder: nn.ModuleList | None = None):
        super().__init__()
        self.config = config or SimLMConfig()
        self.encoder = encoder
        self.tokenizer = tokenizer
        n_layers = len(encoder.bert.encoder.layer)
        if not 1 <= self.config.decoder_layers <= n_layers:
            raise ValueError(f"decoder_layers must be in 1..{n_layers} (the encoder's depth), "
                             f"got {self.config.decoder_layers}")
        if decoder is None:
            decoder = copy.deepcopy(encoder.bert.encoder.layer[-self.config.decoder_layers:])
        self.decoder = decoder
        self.generator = generator
        self.register_buffer("special_ids", torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long),
                             persistent=False)

    # ---- construction / persistence ---------------------------------------------------------------

    @classmethod
    def from_encoder(cls, init, config: SimLMConfig | None = None, generator: Generator | None = None,
                     tokenizer=None, config_overrides: str | dict | None = None) -> "SimLMForPretraining":
        """A fresh pre-training model around an encoder from ``init`` (see :func:`load_encoder`)."""
        encoder, tokenizer = load_encoder(init, tokenizer, config_overrides)
        return cls(encoder, tokenizer, config, generator)

    @classmethod
    def from_pretrained(cls, path, generator: Generator | None = None) -> "SimLMForPretraining":
        """Reload what :meth:`save_pretrained` wrote (encoder, tokenizer, decoder, settings)."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg_file = path / SIMLM_CONFIG_NAME
        if not cfg_file.exists():
            raise CheckpointError(f"{path}: not a SimLM pre-training checkpoint (no {SIMLM_CONFIG_NAME}); "
                                  "to start pre-training from a BERT checkpoint use from_encoder")
        config = SimLMConfig.from_dict(json.loads(cfg_file.read_text()))
        encoder, tokenizer = load_encoder(path)
        model = cls(encoder, tokenizer, config, generator)
        dec_file = path / DECODER_WEIGHTS_NAME
        if not dec_file.exists():
            raise CheckpointError(f"{path}: {DECODER_WEIGHTS_NAME} is missing")
        model.decoder.load_state_dict(load_file(str(dec_file)), strict=True)
        return model

    def save_pretrained(self, path) -> None:
        """Encoder as a normal BERT dir + tokenizer; decoder weights and settings beside them."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
            self.encoder.save_pretrained(str(path))
            self.tokenizer.save_pretrained(str(path))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.decoder.state_dict().items()},
                  str(path / DECODER_WEIGHTS_NAME))
        (path / SIMLM_CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.generator is not None:
            self.generator.eval()
        return self

    # ---- the RLM objective ------------------------------------------------------------------------

    def label_positions(self, input_ids, attention_mask) -> torch.Tensor:
        """Every non-special, non-padding position is a target (not only the replaced ones)."""
        return ~torch.isin(input_ids, self.special_ids) & attention_mask.bool()

    def _mlm_loss(self, hidden, targets, positions) -> torch.Tensor:
        # Project only the target positions through the (vocab-sized) head: padding never costs logits.
        logits = self.encoder.cls(hidden[positions])
        return F.cross_entropy(logits.float(), targets[positions])

    def decode(self, cls_vector: torch.Tensor, decoder_input_ids, attention_mask, token_states=None):
        """Decoder hidden states: position 0 = ``cls_vector``, positions 1.. = token embeddings.

        The decoder's embeddings get no token_type_ids (all segment 0), as in the reference RLM: its
        input is a corrupted token sequence, not a (title, passage) pair. ``token_states`` replaces the
        embeddings at positions 1.. (Condenser's early-layer states).
        """
        from transformers.masking_utils import create_bidirectional_mask

        if token_states is None:
            token_states = self.encoder.bert.embeddings(input_ids=decoder_input_ids,
                                                        token_type_ids=torch.zeros_like(decoder_input_ids))
        hidden = torch.cat([cls_vector.unsqueeze(1).to(token_states.dtype), token_states[:, 1:]], dim=1)
        mask = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden,
                                         attention_mask=attention_mask)
        for layer in self.decoder:
            hidden = layer(hidden, mask)
        return hidden

    def forward(self, input_ids, attention_mask, encoder_mask, decoder_mask, token_type_ids=None,
                rng: torch.Generator | None = None,
                uniforms: tuple[torch.Tensor, torch.Tensor] | None = None) -> SimLMOutput:
        """Corrupt the copies, then the objective's loss (RLM: L = L_enc + L_dec over every non-special token).

        ``encoder_mask``/``decoder_mask`` come from :class:`~simlm_ir.modeling.masking.WholeWordMasker`;
        ``rng`` (on the model's device) makes the generator's samples reproducible; ``uniforms``
        (one draw per position for the encoder copy, one for the decoder copy) replaces it with
        per-position inverse-CDF sampling (see :meth:`Generator.fill`). The MLM-style objectives
        (``config.objective``) score only the masked positions, as MLM does.
        """
        if self.generator is None:
            raise RuntimeError("SimLMForPretraining has no generator; pass generator= to build or load it")
        objective = self.config.objective
        u_enc, u_dec = uniforms if uniforms is not None else (None, None)
        enc_ids = self.generator.fill(input_ids, attention_mask, token_type_ids, encoder_mask, rng, u_enc)
        every = self.label_positions(input_ids, attention_mask)
        # RLM recovers every token (replaced or not); the MLM-style ablations only the masked ones.
        enc_targets = every if objective == "rlm" else encoder_mask & every

        enc_out = self.encoder.bert(input_ids=enc_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                    output_hidden_states=objective == "condenser")
        enc_hidden = enc_out.last_hidden_state
        encoder_loss = self._mlm_loss(enc_hidden, input_ids, enc_targets)

        dec_ids = enc_ids
        if objective == "mlm":
            decoder_loss = torch.zeros((), device=encoder_loss.device, dtype=encoder_loss.dtype)
        elif objective == "condenser":
            # hidden_states[0] is the embedding output, so layer k's output is hidden_states[k].
            k = self.config.condenser_layer or len(self.encoder.bert.encoder.layer) // 2
            dec_hidden = self.decode(enc_hidden[:, 0], None, attention_mask, token_states=enc_out.hidden_states[k])
            decoder_loss = self._mlm_loss(dec_hidden, input_ids, enc_targets)
        else:
            dec_ids = self.generator.fill(input_ids, attention_mask, token_type_ids, decoder_mask, rng, u_dec)
            dec_hidden = self.decode(enc_hidden[:, 0], dec_ids, attention_mask)
            dec_targets = every if objective == "rlm" else decoder_mask & every
            decoder_loss = self._mlm_loss(dec_hidden, input_ids, dec_targets)

        return SimLMOutput(loss=encoder_loss + decoder_loss, encoder_loss=encoder_loss, decoder_loss=decoder_loss,
                           encoder_input_ids=enc_ids, decoder_input_ids=dec_ids,
                           encoder_last_hidden_state=enc_hidden)
