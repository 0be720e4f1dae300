"""A process pool that stops at once: the worker processes of `nh data build --workers N`.

`run_tasks(fn, tasks, workers, done)` runs ``fn(*args)`` for every `args` of `tasks` on
`workers` processes and calls ``done(i, result)`` here as each task finishes. The workers
ignore SIGINT: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) reaches
this process alone, which then cancels the tasks not yet started and terminates the
workers, whatever they are computing (a Numba kernel does not look at signals), so the
build stops within a moment instead of finishing every queued task. The first task that
fails stops the pool the same way. What a terminated task had started (a temporary file)
is the caller's to remove.

Workers are forked on Linux: they inherit the compiled kernels and never re-import the
caller's __main__ (scripts and notebooks need no `if __name__ == "__main__"` guard).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

#: seconds to wait for a terminated worker to be gone
JOIN_TIMEOUT_S = 5.0


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_tasks(fn: Callable, tasks: Sequence[tuple], workers: int, done: Callable[[int, Any], None]) -> None:
    """``fn(*tasks[i])`` on up to `workers` processes; ``done(i, result)`` in this process as each ends.

    An exception of a task, of `done` or a KeyboardInterrupt cancels what has not started,
    terminates the workers and propagates; on success the pool is shut down cleanly."""
    ctx = get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(tasks))), mp_context=ctx,
                               initializer=_ignore_sigint)  # fmt: skip
    try:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(tasks)}
        for fut in as_completed(futures):
            done(futures[fut], fut.result())
    except BaseException:
        stop(pool)
        raise
    pool.shutdown(wait=True)


def stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the pool's pending tasks and terminate its worker processes now."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(JOIN_TIMEOUT_S)
