"""nh_models.runtime.retain_freed_memory: freed heap stays in the process (glibc only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys

import pytest

from nh_models import runtime


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


# Allocate and free 8 MB blocks, then report the heap ("arena") glibc still holds.
PROBE = r"""
import ctypes, ctypes.util, json, sys
from nh_models.runtime import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
MB = 1 << 20

def touch(ptr, n):
    ctypes.memset(ptr, 1, n)

warm = libc.malloc(8 * MB); touch(warm, 8 * MB); libc.free(warm)  # glibc adapts its thresholds to 8 MB
blocks = [libc.malloc(8 * MB) for _ in range(4)]
for b in blocks:
    touch(b, 8 * MB)
for b in reversed(blocks):
    libc.free(b)
print(json.dumps({"applied": applied, "arena_mb": libc.mallinfo2().arena / MB}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc(), reason="glibc malloc only")
def test_freed_heap_is_kept_only_when_retained():
    kept = _probe("retain")
    default = _probe("default")
    assert kept["applied"] is True
    assert kept["arena_mb"] >= 32  # the four freed 8 MB blocks stay for reuse
    assert default["arena_mb"] < 32  # glibc's default gives the top of the heap back


def test_idempotent_and_no_op_off_linux(monkeypatch):
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setattr(runtime.sys, "platform", "darwin")
    assert runtime.retain_freed_memory() is False
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    assert runtime.retain_freed_memory() is False  # the first answer stands
