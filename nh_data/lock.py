"""The folder lock of a build: one build writes into a dataset folder at a time.

`DIR/.nh_lock` is created atomically (``O_CREAT | O_EXCL``) and holds the builder's
pid, host, start time and command line as JSON. A second build into the folder finds
it and refuses at once (NHError: which process holds it, since when). A lock whose
process is gone (same host, pid not alive) is stale and taken over; taking over is
itself serialised by a short-lived ``.nh_lock.break`` file, so two builds that find the
same stale lock cannot both win. The lock is removed when the build ends, by an error
or Ctrl-C too (a SIGKILL leaves it stale, which the next build takes over). A lock of
another host cannot be checked from here and is always respected.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from .errors import NHError

LOCK = ".nh_lock"
BREAK = LOCK + ".break"
#: a lock file still empty after this long belonged to a process killed while creating it
_GRACE_S = 10.0


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _read(path: Path) -> tuple[str, dict | None]:
    """The lock file's text and its parsed content (None if unreadable or not ours)."""
    try:
        text = path.read_text()
    except OSError:
        return "", None
    try:
        info = json.loads(text)
    except ValueError:
        return text, None
    ok = isinstance(info, dict) and isinstance(info.get("pid"), int) and isinstance(info.get("host"), str)
    return text, info if ok else None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _stale(path: Path, info: dict | None) -> bool:
    if info is None:  # empty or garbled: its writer died right after creating it
        return _age(path) > _GRACE_S
    return info["host"] == socket.gethostname() and not pid_alive(info["pid"])


def _take_over(path: Path, stale_text: str) -> None:
    """Remove the stale lock `path` if it still reads `stale_text`, one breaker at a time."""
    brk = path.with_name(BREAK)
    try:
        os.close(os.open(brk, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        if _age(brk) > _GRACE_S:  # a breaker killed half-way
            brk.unlink(missing_ok=True)
        return
    try:
        if _read(path)[0] == stale_text:
            path.unlink(missing_ok=True)
    finally:
        brk.unlink(missing_ok=True)


class FolderLock:
    """``with FolderLock(dir):`` holds `dir`'s build lock (NHError if another build holds it)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": " ".join(sys.argv),
            "token": uuid.uuid4().hex,
        }
        self.held = False

    def acquire(self) -> FolderLock:
        text = json.dumps(self.info, indent=2) + "\n"
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                old_text, old = _read(self.path)
                if _stale(self.path, old):
                    _take_over(self.path, old_text)
                    time.sleep(0.01)
                    continue
                raise NHError(self._held_by(old)) from None
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return self
        raise NHError(self._held_by(_read(self.path)[1]))

    def _held_by(self, info: dict | None) -> str:
        if info is None:
            who = "another process (its lock file is being written)"
        else:
            who = f"process {info['pid']} on {info['host']} since {info.get('started', '?')}"
        return (
            f"{self.folder} is being built by {who}; wait for it to finish or choose another --out "
            f"(if that process is gone, remove {self.path})"
        )

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if self.held:
            self.held = False
            info = _read(self.path)[1]
            if info is not None and info.get("token") == self.info["token"]:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
