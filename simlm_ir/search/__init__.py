"""Searching: shared result types (:mod:`.base`), dense (FAISS), BM25 (Lucene), ColBERT, fusion."""
