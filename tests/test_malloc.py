"""retain_freed_memory: glibc keeps freed blocks; nothing breaks where the C library is another."""

import ctypes.util

from simlm_ir.util import malloc


def test_takes_effect_on_this_glibc_and_is_idempotent():
    assert malloc.retain_freed_memory() is True
    assert malloc.retain_freed_memory() is True


def test_an_older_glibc_that_refuses_1_gib_gets_32_mib(monkeypatch):
    calls = []

    class FakeLibc:
        def __init__(self, name):
            pass

        class mallopt:  # noqa: N801 - stands in for the C function
            argtypes = restype = None

            def __new__(cls, param, value):
                calls.append((param, value))
                return 0 if (param == -3 and value > 32 << 20) else 1

    monkeypatch.setattr(malloc.ctypes, "CDLL", FakeLibc)
    assert malloc.retain_freed_memory() is True
    assert calls == [(-3, 1 << 30), (-3, 32 << 20), (-1, (1 << 31) - 1)]


def test_no_c_library_found_is_a_quiet_false(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert malloc.retain_freed_memory() is False
