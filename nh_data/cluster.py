"""Shards as Dask tasks: `nh data build --scheduler ADDRESS | local[:N]` or `--scheduler-file FILE`.

The client (the `nh data build` process) keeps the plan, the progress bar and the
manifest; each shard is one task that runs the very function the process pool runs
(`nh_data.build.build_shard`, passed in by the caller), so the bytes are the same by
construction. Workers write into the output folder, which they and the client must see
as one shared filesystem at the same path. Dask itself retries the task of a worker that
died; a task that fails for a reason of its own ends the build with one line.

Dask (`dask.distributed`) is an optional extra, imported only here and only when a
scheduler is given: ``pip install "neural-hamilton[cluster]"``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NHError
from .fileio import sha256_file

EXTRA = 'pip install "neural-hamilton[cluster]"'
#: seconds to reach a scheduler before giving up (a bad address fails this fast)
CONNECT_TIMEOUT_S = 5
#: seconds between two looks for finished shards (and for a Ctrl-C)
POLL_S = 0.05
_LOCAL_RE = re.compile(r"local(?::(\d+))?")
#: a local cluster's background work, sampled less often: each worker's statistical profiler
#: (a stack sample every 10 ms), the system and GIL monitors; the shards' tasks need none of it
LOCAL_QUIET = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
}


def parse_scheduler(scheduler: str | None, scheduler_file: str | os.PathLike | None) -> dict | None:
    """Validate --scheduler / --scheduler-file without importing Dask.

    Returns None (no cluster: the process pool), {"local": N} or {"address": A, "where": text}.
    """
    if scheduler is None and scheduler_file is None:
        return None
    if scheduler is not None and scheduler_file is not None:
        raise NHError("give --scheduler or --scheduler-file, not both")
    if scheduler_file is not None:
        path = Path(scheduler_file)
        if not path.is_file():
            raise NHError(f"--scheduler-file {path}: no such file (the scheduler writes it when it starts)")
        try:
            address = json.loads(path.read_text()).get("address")
        except (OSError, ValueError, AttributeError):
            address = None
        if not isinstance(address, str) or not address:
            raise NHError(
                f'--scheduler-file {path}: not a Dask scheduler file (JSON with an "address", as written by '
                "`dask scheduler --scheduler-file`)"
            )
        return {"address": address, "where": f"from {path}"}
    text = str(scheduler).strip()
    m = _LOCAL_RE.fullmatch(text)
    if m:
        n = int(m.group(1)) if m.group(1) is not None else (os.cpu_count() or 1)
        if n <= 0:
            raise NHError(f"--scheduler local:N needs N >= 1, got {text!r}")
        return {"local": n}
    if not text or any(c.isspace() for c in text):
        raise NHError(
            f"--scheduler must be a scheduler address (tcp://host:8786) or local[:N], got {scheduler!r}"
        )
    return {"address": text, "where": ""}


_preload: threading.Thread | None = None


def preload() -> None:
    """Start importing `distributed` in a background thread. The import costs about half a
    second of one core, as much as Dask's whole overhead on a small build; the caller's own
    start-up work (compiling or loading the kernels, which run without the GIL) overlaps it.
    `connect` waits for it; a missing extra is reported there."""
    global _preload
    if _preload is not None:
        return

    def work() -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            pass

    _preload = threading.Thread(target=work, name="nh-import-dask", daemon=True)
    _preload.start()


def _distributed():
    if _preload is not None:
        _preload.join()
    try:
        import distributed
    except ImportError:
        raise NHError(f"--scheduler needs Dask, an optional extra: {EXTRA}") from None
    return distributed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a local cluster forks its workers: they inherit it, so Ctrl-C (to the
    whole process group) reaches the client alone, which cancels the tasks and closes the cluster
    (its workers' tracebacks would bury the one line the client prints)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextmanager
def connect(target: dict) -> Iterator[object]:
    """A `distributed.Client` for `target` (from `parse_scheduler`), closed on exit.

    {"local": N} starts a LocalCluster of N single-threaded worker processes on this
    machine (stopped on exit), forked on Linux like the process pool: they inherit the
    kernels this process compiled (a spawned worker spends seconds importing and loading
    them) and ignore SIGINT; an address is reached within CONNECT_TIMEOUT_S or NHError.
    """
    distributed = _distributed()
    cluster = None
    if "local" in target:
        import dask

        method = "fork" if sys.platform.startswith("linux") else "spawn"
        try:
            with dask.config.set({"distributed.worker.multiprocessing-method": method, **LOCAL_QUIET}), \
                    _sigint_ignored(), warnings.catch_warnings():  # fmt: skip
                # its scheduler's HTTP server (no dashboard here) takes another port when 8787 is taken
                warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
                cluster = distributed.LocalCluster(
                    n_workers=target["local"], threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR,
                )  # fmt: skip
        except Exception as exc:
            raise NHError(f"could not start a local Dask cluster: {_first_line(exc)}") from None
        client = distributed.Client(cluster)
    else:
        address, where = target["address"], target["where"]
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            at = f"{address} ({where})" if where else address
            raise NHError(f"cannot reach the Dask scheduler at {at}: {_first_line(exc)}") from None
    try:
        yield client
    except KeyboardInterrupt:  # Ctrl-C: a local cluster's shutdown chatter (lost data, closed comms) is noise
        if cluster is not None:
            logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def describe_failure(file: str, exc: BaseException) -> str:
    """One line for a shard task that failed: which shard, and why."""
    name = type(exc).__name__
    if name == "KilledWorker":
        return f"shard {file}: every worker that ran it died (out of memory? see the workers' logs)"
    if name == "CancelledError":
        return f"shard {file}: cancelled by the cluster (did the scheduler stop?)"
    if isinstance(exc, OSError):
        path = exc.filename2 or exc.filename  # os.replace(tmp, final): the final name
        where = f" ({path})" if path else ""
        return f"shard {file}: cannot write{where}: {exc.strerror or _first_line(exc)}"
    return f"shard {file}: {name}: {_first_line(exc)}"


def check_shard(out_dir: Path, record: dict) -> None:
    """NHError unless the shard a worker reported has, seen from here, the sha256 it reported."""
    path = out_dir / record["file"]
    try:
        sha = sha256_file(path)
    except FileNotFoundError:
        sha = None
    if sha != record["sha256"]:
        state = "is missing" if sha is None else "holds other bytes than the worker wrote"
        raise NHError(
            f"shard {record['file']}: a worker wrote it but {path} {state} here; the output folder must be "
            "one shared filesystem that every worker and this client see at the same path"
        )


def run_shards(client, task: Callable, out_dir: Path, config: dict, todo: list, done: Callable) -> None:
    """Submit `task(out_dir, config, spec)` for every spec of `todo`; as each finishes, check
    its shard here (`check_shard`) and call `done(spec, record)`, in this process. NHError
    (one line) on the first task that fails; unfinished tasks are cancelled however the loop ends."""
    distributed = _distributed()
    run = uuid.uuid4().hex[:8]
    where = str(Path(out_dir).resolve())  # the workers' working folders differ from ours
    futures: dict = {}
    with _sigint_flag() as hit:
        try:
            for spec in todo:
                key = f"nh-shard-{spec.file}-{run}"
                futures[client.submit(task, where, config, spec, key=key, retries=0)] = spec
            for fut in _completed(distributed.as_completed(futures), hit):
                spec = futures[fut]
                try:
                    record = fut.result()
                except Exception as exc:
                    raise NHError(describe_failure(spec.file, exc)) from None
                check_shard(Path(out_dir), record)
                done(spec, record)
        finally:
            client.cancel(list(futures))


@contextmanager
def _sigint_flag() -> Iterator[threading.Event]:
    """SIGINT sets the yielded event instead of raising KeyboardInterrupt (in the main thread).
    Raised by the default handler, the interrupt can land in one of Dask's garbage-collection
    callbacks and be swallowed there; the flag is checked between polls (`_completed`)."""
    import signal

    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit
        return
    old = signal.signal(signal.SIGINT, lambda *_: hit.set())
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, old)


def _completed(ac, hit: threading.Event) -> Iterator:
    """The futures of the `distributed.as_completed` `ac` as they finish; KeyboardInterrupt within
    POLL_S once `hit` is set."""
    while not ac.is_empty():
        if hit.is_set():
            raise KeyboardInterrupt
        if not ac.has_ready():
            hit.wait(POLL_S)
            continue
        yield from ac.next_batch(block=False)
    if hit.is_set():
        raise KeyboardInterrupt
