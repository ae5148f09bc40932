"""Encoders: SimLM (:mod:`.encoder`), its Pyserini classes (:mod:`.pyserini`), mean pooling (:mod:`.mean_pooling`).

``simlm_ir.encode.SimLMQueryEncoder`` and ``SimLMDocumentEncoder`` are the names Pyserini's encoder
class maps hold (registered by the start-up hook); they, and ``SimLMEncoder``, are imported on first
access so that ``import simlm_ir.encode`` stays cheap.
"""

_EXPORTS = {
    "SimLMEncoder": "simlm_ir.encode.encoder",
    "SimLMQueryEncoder": "simlm_ir.encode.pyserini",
    "SimLMDocumentEncoder": "simlm_ir.encode.pyserini",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
