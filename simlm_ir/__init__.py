"""simlm_ir: SimLM dense retrieval inside the Pyserini/Anserini ecosystem."""

__version__ = "0.1.0"
