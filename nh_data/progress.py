"""Progress output: a bar on a terminal, plain lines off one (CI, `> log`, `nohup`).

Every command's progress goes through here (`nh_data` and `nh_models` alike; no torch):

    with bar(total, desc="nh data build", unit="pot", enabled=progress) as b:
        b.update(k)                       # and b.set_postfix(loss="1.2e-3")
    for item in iterate(items, desc="nh physics", unit="potential", enabled=progress): ...
    write("epoch 3/10  train ...")        # a line that does not break a running bar

On a terminal `bar` is a tqdm bar (rate and ETA, redrawn in place). Off one, a carriage-return
redraw several times a second would fill a log with megabytes of partial lines, so `bar`
returns `Lines` instead: no bar, one line at most every `every` seconds while it runs
(done/total, rate, ETA, the postfix) and one when it closes (count, time, rate); `final=False`
leaves the closing line to the caller (the trainer's own line per epoch). Whether the output
is a terminal is asked of the stream itself (`isatty`), each time a bar is made.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

#: off a terminal, the most frequent progress line of a running bar (seconds)
LINE_EVERY_S = 30.0


def on_terminal(file: Any) -> bool:
    """Whether `file` is an interactive terminal."""
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def format_seconds(seconds: float) -> str:
    """4.2 s, 12 s, 3m05s, 2h07m."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def write(text: str, file: TextIO | None = None) -> None:
    """Print one line to `file` (stderr), above a running bar when there is one."""
    file = sys.stderr if file is None else file
    if on_terminal(file):
        from tqdm import tqdm

        tqdm.write(text, file=file)
    else:
        print(text, file=file, flush=True)


class Lines:
    """The off-terminal stand-in of a tqdm bar (see the module docstring): update, set_postfix,
    close, `n`, `total`, `disable`, and use as a context manager."""

    def __init__(self, total: float | None, desc: str, unit: str, enabled: bool, file: TextIO,
                 every: float = LINE_EVERY_S, final: bool = True) -> None:  # fmt: skip
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.disable, self.every, self.final = not enabled, every, final
        self.n: float = 0
        self.postfix = ""
        self.start = self.last = time.perf_counter()
        self.closed = False

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.disable or now - self.last < self.every or (self.total is not None and self.n >= self.total):
            return
        self.last = now
        self._print(self.running_line(now - self.start))

    def running_line(self, elapsed: float) -> str:
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n:,.0f}/{self.total:,.0f} {self.unit} ({100 * self.n / self.total:.0f} %)" if self.total \
            else f"{self.n:,.0f} {self.unit}"  # fmt: skip
        eta = f", ETA {format_seconds((self.total - self.n) / rate)}" if self.total and rate > 0 else ""
        return f"{self.desc}: {done}, {rate:,.1f} {self.unit}/s{eta}" + (f", {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.disable or not self.final or not self.n:
            return
        elapsed = time.perf_counter() - self.start
        rate = f", {self.n / elapsed:,.1f} {self.unit}/s" if elapsed > 0 else ""
        tail = f", {self.postfix}" if self.postfix else ""
        self._print(f"{self.desc}: {self.n:,.0f} {self.unit} in {format_seconds(elapsed)}{rate}{tail}")

    def _print(self, line: str) -> None:
        print(line, file=self.file, flush=True)


def bar(total: float | None = None, *, desc: str = "", unit: str = "it", enabled: bool = True,
        file: TextIO | None = None, every: float = LINE_EVERY_S, final: bool = True, **tqdm_options: Any):  # fmt: skip
    """A progress bar of `total` `unit`s: tqdm on a terminal, `Lines` off one; silent when not
    `enabled`. `tqdm_options` (leave, unit_scale, smoothing, ...) apply to the tqdm bar only."""
    file = sys.stderr if file is None else file
    if enabled and on_terminal(file):
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: forked build workers must not inherit one
        return tqdm(total=total, desc=desc, unit=unit, file=file, dynamic_ncols=True, **tqdm_options)
    return Lines(total, desc, unit, enabled, file, every, final)


def iterate(items: Iterable, *, total: int | None = None, **options: Any) -> Iterator:
    """`items`, one by one, counted on a `bar` (options as there; total: len(items) when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(total, **options) as b:
        for item in items:
            yield item
            b.update(1)
