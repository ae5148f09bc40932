"""SimLM encoders for Pyserini and FAISS index building."""
