"""Kill a real ``python -m simlm_ir...`` process with SIGKILL at a chosen point, for crash-resume tests.

The child runs the module exactly as ``python -m MODULE ARGS`` would, with one function wrapped: on
its ``nth`` call whose arguments mention ``match``, the wrapper writes a marker file and stops
(before the real call), and the test kills the process with SIGKILL. The crash therefore lands at
the same place in every run (e.g. inside a checkpoint directory being written), not wherever a timer
happened to fire, and nothing in the package knows it is being tested.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_CHILD = r"""
import functools, importlib, json, runpy, sys, time
spec = json.loads(sys.argv.pop(1))
owner_name, _, attr_path = spec["target"].partition(":")
owner = importlib.import_module(owner_name)
*parents, attr = attr_path.split(".")
for p in parents:
    owner = getattr(owner, p)
real = getattr(owner, attr)
calls = 0

@functools.wraps(real)
def tripwire(*args, **kwargs):
    global calls
    if spec["match"] in repr((args, kwargs)):
        calls += 1
        if calls == spec["nth"]:
            open(spec["marker"], "w").close()
            time.sleep(3600)
    return real(*args, **kwargs)

setattr(owner, attr, staticmethod(tripwire) if isinstance(owner.__dict__.get(attr), staticmethod) else tripwire)
sys.argv = [spec["module"]] + sys.argv[1:]
runpy.run_module(spec["module"], run_name="__main__", alter_sys=True)
"""


def kill_at(module: str, args: list[str], target: str, nth: int, tmp: Path, match: str = "",
            timeout: float = 300) -> None:
    """Run ``python -m module *args``; SIGKILL it when ``target`` (``"pkg.mod:attr"`` or
    ``"pkg.mod:Class.method"``) is called for the ``nth`` time with ``match`` in its arguments.

    Fails if the process ends before reaching that point (so the test never passes vacuously).
    """
    marker = Path(tmp) / f"tripwire-{os.getpid()}-{time.monotonic_ns()}"
    spec = json.dumps({"module": module, "target": target, "nth": nth, "match": match, "marker": str(marker)})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "OMP_NUM_THREADS": "1"}
    log = Path(tmp) / f"{marker.name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, spec, *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
        try:
            deadline = time.monotonic() + timeout
            while not marker.exists():
                if proc.poll() is not None:
                    raise AssertionError(f"{module} ended (exit {proc.returncode}) before {target} call {nth}:\n"
                                         + log.read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise AssertionError(f"{module} did not reach {target} call {nth} in {timeout} s")
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    marker.unlink()
    log.unlink()


def hidden_entries(directory: Path) -> list[str]:
    """Names starting with ``.`` anywhere under ``directory``: temp files/dirs of an unfinished write."""
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob(".*"))


class torch_threads:
    """Run a block with ``n`` torch threads and restore the previous count (bit-identical results
    between a child process and this one need the same thread count)."""

    def __init__(self, n: int = 1):
        self.n = n

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)
