"""Training drivers: SimLM pre-training (``simlm_ir.train.pretrain``)."""
