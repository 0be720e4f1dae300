"""bench/learned_correction.py runs end to end on a tiny trained processed SympONet (issue 21), in
torch and compiled: every curve, the stated costs, the compiled points timed and equal to the
torch ones, a plot, and a one-line error for a run it cannot use."""

from __future__ import annotations

import math

import numpy as np
import pytest
from benches import TINY_PROCESSED, load_bench
from synthetic import write_synthetic_dataset

from nh_models.evaluation import sensor_integrators as si
from nh_models.evaluation.cases import TestSplit
from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_learned_correction_curves_in_torch_and_compiled(tmp_path, monkeypatch):
    bench = load_bench("learned_correction")
    monkeypatch.setattr(bench, "STEPS", (16, 32))
    write_synthetic_dataset(tmp_path / "data", n_train=64, n_val=32, n_test=10, seed=3)
    train("symponet", TINY_PROCESSED, tmp_path / "data", tmp_path / "run", progress=False)
    split = TestSplit(tmp_path / "data", None, 0)
    data = split.take(np.arange(len(split.u)))
    runs = [str(tmp_path / "run")]
    torch_curves = bench.curves(runs, bench.Evaluator(data, compiled=False, repeats=1))
    compiled = bench.curves(runs, bench.Evaluator(data, compiled=True, repeats=1))
    assert set(torch_curves) == {*si.METHODS, "prior alone", "classical coefficients", "trained: run, 16 steps"}
    assert set(compiled) == set(torch_curves) | {"classical coefficients, scaled read-out"}
    for label, rows in torch_curves.items():
        for (ev, mean, median, us), (ev2, mean2, median2, us2) in zip(rows, compiled[label], strict=True):
            assert ev == ev2 and math.isnan(us) and us2 > 0
            assert mean2 == pytest.approx(mean, rel=1e-6) and median2 == pytest.approx(median, rel=1e-6)
    assert [r[0] for r in torch_curves["rk4"]] == [si.evaluations("rk4", n) for n in (16, 32)]
    # the classical correction helps, and more steps help every fixed structure
    assert compiled["classical coefficients"][1][1] < compiled["prior alone"][1][1]
    for label in ("prior alone", "classical coefficients", "classical coefficients, scaled read-out", "rk4"):
        assert compiled[label][1][1] < compiled[label][0][1]
    png = tmp_path / "curve.png"
    bench.plot(compiled, str(png), "tiny")
    assert png.stat().st_size > 20_000
    # side by side: the same points (bit-identical outputs), timed; no scaled read-out in lanes
    side = bench.curves(runs, bench.Evaluator(data, compiled=True, repeats=1, lanes=4))
    assert set(side) == set(torch_curves)
    for label, rows in side.items():
        assert [r[:3] for r in rows] == [r[:3] for r in compiled[label]] and all(r[3] > 0 for r in rows), label


def test_learned_correction_refuses_a_run_of_another_grid(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / "data", n_train=32, n_val=16, n_test=4, seed=4)
    cfg = {"model": {"grid": "fixed", "steps": 4, "shears": 0}, "train": TINY_PROCESSED["train"]}
    train("symponet", cfg, tmp_path / "data", tmp_path / "run", progress=False)
    argv = ["--data", str(tmp_path / "data"), "--runs", str(tmp_path / "run"), "--max-test", "0"]
    assert load_bench("learned_correction").main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "grid: processed" in err and "\n" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lanes", "16"], "Error: --lanes 16 times compiled code: pass --compiled as well"),
        (["--compiled", "--lanes", "0"], "Error: lanes must be an integer in 1..64, got 0"),
    ],
)
def test_learned_correction_refuses_lanes_it_cannot_use(tmp_path, capsys, extra, message):
    argv = ["--data", str(tmp_path / "none"), "--runs", str(tmp_path / "run"), *extra]
    assert load_bench("learned_correction").main(argv) == 2
    assert capsys.readouterr().err.strip() == message
