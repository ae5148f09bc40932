"""Index building: FAISS dense indexes (:mod:`.faiss`, ``python -m simlm_ir.index``) and ColBERT token indexes."""
