"""Process-level settings for CPU training and inference.

    from nh_models.runtime import retain_freed_memory
    retain_freed_memory()      # once per process; train() and evaluate_runs() call it for you

PyTorch's CPU tensors come from glibc malloc. A tensor of a few megabytes (one activation of
a batch of 100 orbits x 100 times x 128 features is 5 MB) is carved from the heap, and when
a step frees its activations glibc gives the top of the heap back to the kernel once more
than twice the largest freed block is free there. The next step then faults every page in
again: on a 2-core machine that has cost DeepONet 20-30 % of its training throughput and
made inference times vary 2.5x between identical runs; how much depends on the kernel's
state at the time (docs/benchmarks.md). `retain_freed_memory` keeps
up to `trim_bytes` of freed heap in the process for reuse, with blocks under `mmap_bytes`
served from the heap (32 MB is glibc's own ceiling for its adaptive threshold). The cost is
that a process keeps its peak heap until it exits, which suits a training or evaluation
process. PyTorch's CPU tuning guide suggests jemalloc or tcmalloc for the same reason;
this needs no extra library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3

_applied: bool | None = None


def retain_freed_memory(trim_bytes: int = 1 << 30, mmap_bytes: int = 32 << 20) -> bool:
    """Tell glibc malloc to keep freed memory for reuse (see the module docstring).

    Returns True when the settings are in force, False where they do not apply (not Linux,
    not glibc). Idempotent: later calls return the first call's result and change nothing.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the mmap threshold first: setting either one ends glibc's adaptive thresholds
    _applied = mallopt(M_MMAP_THRESHOLD, mmap_bytes) == 1 and mallopt(M_TRIM_THRESHOLD, trim_bytes) == 1
    return _applied
