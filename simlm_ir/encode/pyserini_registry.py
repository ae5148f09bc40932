"""Registers the SimLM encoder classes in pyserini's encoder class maps.

Pyserini has no plugin mechanism: ``pyserini.encode`` / ``pyserini.search.faiss`` pick an encoder
class by *substring* of the ``--encoder`` value over the keys of these two dicts. Adding ``"simlm"``
to them (called from the start-up hook right after ``pyserini.encode`` is imported) makes
``--encoder simlm`` and any checkpoint path containing ``simlm`` use our classes.
"""


def register(encode_module) -> None:
    from simlm_ir.encode.simlm import SimLMDocumentEncoder, SimLMQueryEncoder

    encode_module.document_encoder_class_map["simlm"] = SimLMDocumentEncoder
    encode_module.query_encoder_class_map["simlm"] = SimLMQueryEncoder
