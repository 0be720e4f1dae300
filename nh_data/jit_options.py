"""Numba options for every kernel in one place (see ../shared/NOTES.md).

`fastmath` stays off: it reassociates floating-point sums, which would make
results depend on the compiler's choices and spoil energy-conservation checks.
`cache=True` keeps test suites and CLI calls from recompiling; set
``NUMBA_CACHE_DIR`` to move the cache (for instance when several processes
start at once).
"""

from __future__ import annotations

JIT = dict(cache=True, fastmath=False, nogil=True)
PARALLEL_JIT = dict(cache=True, fastmath=False, nogil=True, parallel=True)
# A loop meant to run vectorized (SIMD) over independent elements: numpy's error model drops
# the branch Python's puts before every division (a zero divisor gives inf or nan, as in numpy
# and torch, instead of raising), which otherwise keeps the compiler from vectorizing it.
JIT_VEC = dict(JIT, error_model="numpy")

# Kernels that take a jitted function (the force dV) as an argument must not be
# cached: Numba keys their cache entries on the function object's identity, so
# a new process never finds its entry and the on-disk index grows with every
# process until saving it fails. They compile once per process per force.
JIT_FN = dict(JIT, cache=False)
PARALLEL_JIT_FN = dict(PARALLEL_JIT, cache=False)
