"""Progress output (issue 24, 2): a bar on a terminal; off one (CI, `> log`, nohup) no bar and no
carriage return, a line at most every `every` seconds and one per phase."""

from __future__ import annotations

import io

import pytest

from nh_data import progress as P


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_a_tqdm_bar_redrawn_in_place():
    tty = Terminal()
    with P.bar(50, desc="work", unit="it", file=tty, mininterval=0) as b:
        for _ in range(50):
            b.update(1)
    assert type(b).__name__ == "tqdm"
    out = tty.getvalue()
    assert "\r" in out and "it/s" in out and "50/50" in out


def test_off_a_terminal_a_line_every_so_often_and_one_at_the_end(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(P.time, "perf_counter", clock)
    log = io.StringIO()
    with P.bar(100, desc="work", unit="it", file=log, every=30.0) as b:
        for _ in range(100):
            clock.now += 1.0
            b.update(1)
            if b.n == 50:
                b.set_postfix(loss="1.2e-03")
    assert isinstance(b, P.Lines)
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == [
        "work: 30/100 it (30 %), 1.0 it/s, ETA 1m10s",
        "work: 60/100 it (60 %), 1.0 it/s, ETA 40 s, loss 1.2e-03",
        "work: 90/100 it (90 %), 1.0 it/s, ETA 10 s, loss 1.2e-03",
        "work: 100 it in 1m40s, 1.0 it/s, loss 1.2e-03",
    ]


@pytest.mark.parametrize("file", [Terminal(), io.StringIO()], ids=["terminal", "log"])
def test_disabled_is_silent_and_final_false_leaves_the_closing_line_to_the_caller(file):
    assert list(P.iterate(range(3), desc="x", enabled=False, file=file)) == [0, 1, 2]
    with P.bar(3, desc="x", enabled=False, file=file) as b:
        b.update(3)
    assert file.getvalue() == ""
    log = io.StringIO()
    with P.bar(3, desc="epoch 1/2", file=log, final=False) as b:
        b.update(3)
    assert log.getvalue() == ""


def test_iterate_counts_and_write_prints_whole_lines():
    log = io.StringIO()
    assert list(P.iterate(["a", "b"], desc="files", unit="file", file=log)) == ["a", "b"]
    assert log.getvalue().startswith("files: 2 file in ")
    log = io.StringIO()
    P.write("epoch 1/3  train 1e-3", file=log)
    assert log.getvalue() == "epoch 1/3  train 1e-3\n"
    assert [P.format_seconds(s) for s in (0.04, 9.2, 42, 185, 7620)] == ["0.0 s", "9.2 s", "42 s", "3m05s", "2h07m"]


def test_nh_data_and_nh_models_use_no_tqdm_but_the_helper():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    users = sorted(
        str(p.relative_to(root))
        for pkg in ("nh_data", "nh_models")
        for p in (root / pkg).rglob("*.py")
        if "tqdm" in p.read_text()
    )
    assert users == ["nh_data/progress.py"]
