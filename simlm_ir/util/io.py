"""Atomic file writing: nothing half-written is ever left under the final name.

Temp names carry the writer's pid and host (``.NAME.PID@HOST.XXXX.tmp``): a process killed while
writing (SIGKILL, OOM, power loss) cannot clean up after itself, so the next write of the same
path removes the temp siblings that a dead process on this host left, and never a live writer's.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Sequence

_TMP_SUFFIX = ".tmp"


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}@{socket.gethostname()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(path) -> list[Path]:
    """Remove the temp files/directories of ``path`` left by writers on this host that have died;
    returns what was removed. Temps of live processes and of other hosts are left alone."""
    path = Path(path)
    host = socket.gethostname()
    removed = []
    for tmp in path.parent.glob(glob.escape(f".{path.name}.") + "*@*" + _TMP_SUFFIX):
        owner = tmp.name[len(path.name) + 2:-len(_TMP_SUFFIX)]  # PID@HOST.RANDOM
        pid, _, rest = owner.partition("@")
        if not pid.isdigit() or rest.rpartition(".")[0] != host or _pid_alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, carry: Sequence[str] = ()):
    """Build a directory under a temp name; swap it in as ``path`` only if the block succeeds.

    ``carry`` names entries of the old ``path`` (e.g. encoded shards) that move into the new
    directory at the swap, and move back if the swap fails, so work they hold is never lost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent))
    moved: list[str] = []
    old = path.with_name(f".{path.name}.old")
    try:
        yield tmp
        for name in carry:
            if (path / name).exists() and not (tmp / name).exists():
                os.replace(path / name, tmp / name)
                moved.append(name)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if not path.exists() and old.exists():  # the swap failed half-way: the old directory comes back
            os.replace(old, path)
        if moved:  # and so do the entries carried out of it
            path.mkdir(parents=True, exist_ok=True)
            for name in moved:
                if (tmp / name).exists() and not (path / name).exists():
                    os.replace(tmp / name, path / name)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dir_size_bytes(path) -> int:
    """Total size of the files under ``path``."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
