"""Models: SimLM pre-training (masking, generators, the RLM model), losses, the re-ranker, ColBERT, checkpoints.

The pre-training pieces are re-exported here."""

from simlm_ir.modeling.generators import Generator, MLMGenerator, UnigramGenerator
from simlm_ir.modeling.masking import MaskPair, WholeWordMasker, extra_mask_rate
from simlm_ir.modeling.rlm import SimLMConfig, SimLMForPretraining, SimLMOutput, load_encoder, load_tokenizer

__all__ = [
    "Generator", "MLMGenerator", "MaskPair", "SimLMConfig", "SimLMForPretraining", "SimLMOutput",
    "UnigramGenerator", "WholeWordMasker", "extra_mask_rate", "load_encoder", "load_tokenizer",
]
