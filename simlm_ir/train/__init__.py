"""Training drivers, one ``python -m simlm_ir.train.<stage>`` each: pretrain, mine, finetune, rerank,
teacher_scores, colbert; the shared loop (:mod:`.loop`), data (:mod:`.data`) and torchrun helpers."""
