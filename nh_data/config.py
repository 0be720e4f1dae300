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
