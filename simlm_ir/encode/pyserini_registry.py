"""Registers the SimLM encoder classes in pyserini's encoder class maps.

Pyserini has no plugin mechanism: ``pyserini.encode`` / ``pyserini.search.faiss`` pick an encoder
class by *substring* of the ``--encoder`` value over the keys of these two dicts, first match
wins. ``"simlm"`` is put *first* in both (called from the start-up hook right after
``pyserini.encode`` is imported), so ``--encoder simlm``, ``simlm:PATH`` and any checkpoint path
containing ``simlm`` use our classes even when the path also contains ``ance``, ``auto``, ``dpr``...
"""


def _put_first(mapping: dict, key: str, value) -> None:
    # the dict objects are shared with pyserini's __main__ modules: reorder them in place
    rest = [(k, v) for k, v in mapping.items() if k != key]
    mapping.clear()
    mapping[key] = value
    mapping.update(rest)


def register(encode_module) -> None:
    from simlm_ir.encode.simlm import SimLMDocumentEncoder, SimLMQueryEncoder

    _put_first(encode_module.document_encoder_class_map, "simlm", SimLMDocumentEncoder)
    _put_first(encode_module.query_encoder_class_map, "simlm", SimLMQueryEncoder)
