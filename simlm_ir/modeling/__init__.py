"""SimLM pre-training model pieces: whole-word masking and the RLM encoder/bottleneck-decoder model."""

from simlm_ir.modeling.masking import MaskPair, WholeWordMasker, extra_mask_rate
from simlm_ir.modeling.simlm import (
    Generator,
    MLMGenerator,
    SimLMConfig,
    SimLMForPretraining,
    SimLMOutput,
    UnigramGenerator,
    load_encoder,
    load_tokenizer,
)

__all__ = [
    "Generator", "MLMGenerator", "MaskPair", "SimLMConfig", "SimLMForPretraining", "SimLMOutput",
    "UnigramGenerator", "WholeWordMasker", "extra_mask_rate", "load_encoder", "load_tokenizer",
]
