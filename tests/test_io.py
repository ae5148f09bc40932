"""Atomic writes: a failed or killed write leaves the previous version under the final name, and no
temp file or directory survives the next write."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simlm_ir.util.io import atomic_directory, atomic_write, remove_stale_temps


def listing(d):
    return sorted(p.name for p in d.iterdir())


def test_exception_inside_atomic_directory_keeps_the_old_directory(tmp_path):
    target = tmp_path / "checkpoint-2"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text("new, half")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "more").write_text("x")
            raise RuntimeError("disk full")
    assert listing(tmp_path) == ["checkpoint-2"]  # no temp directory, no .old
    assert listing(target) == ["weights"] and (target / "weights").read_text() == "old"


def test_exception_inside_a_first_atomic_directory_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(tmp_path / "shard") as tmp:
            (tmp / "embeddings.f32").write_bytes(b"\0" * 16)
            raise KeyboardInterrupt
    assert listing(tmp_path) == []


def test_successful_atomic_directory_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "index"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("2")
    assert listing(tmp_path) == ["index"]
    assert listing(target) == ["a"] and (target / "a").read_text() == "2"


def test_exception_inside_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "run.trec"
    target.write_text("old\n")
    with pytest.raises(ValueError):
        with atomic_write(target) as fh:
            fh.write("new, half")
            raise ValueError("bad row")
    assert listing(tmp_path) == ["run.trec"] and target.read_text() == "old\n"


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from simlm_ir.util.io import atomic_directory, atomic_write

    kind, target = sys.argv[1], Path(sys.argv[2])
    if kind == "dir":
        with atomic_directory(target) as tmp:
            (tmp / "part").write_text("half")
            print("writing", flush=True)
            time.sleep(60)
    else:
        with atomic_write(target) as fh:
            fh.write("half")
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)
""")


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_temp_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path, kind):
    target = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(p) for p in sys.path if p])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(target)], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
    (left,) = tmp_path.iterdir()  # what the killed writer leaves: its temp, never the final name
    assert left.name.startswith(".out.") and left.name.endswith(".tmp") and not target.exists()
    # A temp of a writer that is still running (this process) is not touched.
    live = tmp_path / f".out.{os.getpid()}@{socket.gethostname()}.live.tmp"
    live.mkdir()
    if kind == "dir":
        with atomic_directory(target) as tmp:
            (tmp / "part").write_text("whole")
        assert (target / "part").read_text() == "whole"
    else:
        with atomic_write(target) as fh:
            fh.write("whole")
        assert target.read_text() == "whole"
    assert listing(tmp_path) == sorted(["out", live.name])
    assert remove_stale_temps(target) == []


def test_atomic_directory_carries_named_entries_and_puts_them_back_if_the_swap_fails(tmp_path, monkeypatch):
    from simlm_ir.util import io as io_mod

    d = tmp_path / "idx"
    (d / "shards").mkdir(parents=True)
    (d / "shards" / "s0").write_text("vectors")
    (d / "stale").write_text("old index")
    with io_mod.atomic_directory(d, carry=("shards",)) as tmp:
        (tmp / "index").write_text("new index")
    assert (d / "shards" / "s0").read_text() == "vectors"
    assert (d / "index").read_text() == "new index" and not (d / "stale").exists()

    real_replace = io_mod.os.replace

    def failing_swap(src, dst):
        if Path(dst) == d and Path(src).name.endswith(".tmp"):  # the rename of the new directory into place
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", failing_swap)
    with pytest.raises(OSError, match="disk full"):
        with io_mod.atomic_directory(d, carry=("shards",)) as tmp:
            (tmp / "index").write_text("newer index")
    monkeypatch.undo()
    assert (d / "shards" / "s0").read_text() == "vectors"  # carried back: encoding is not lost
    assert (d / "index").read_text() == "new index"  # the previous directory is back in place
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
