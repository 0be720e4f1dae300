"""bench/error_anatomy.py runs end to end on a tiny trained processed SympONet (issue 21): every
section, figures that hold by construction, and a one-line error for a model it cannot read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benches import TINY_PROCESSED, load_bench
from synthetic import write_synthetic_dataset

from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_top_share_counts_the_largest_entries():
    bench = load_bench("error_anatomy")
    x = np.array([1.0] * 99 + [99.0])
    assert bench.top_share(x) == pytest.approx(0.5)  # the worst 1 % is the one entry of 99
    assert bench.top_share(np.ones(10)) == pytest.approx(0.1)  # at least one entry


def test_error_anatomy_bench_runs_on_a_tiny_run(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / "data", n_train=64, n_val=32, n_test=12, seed=7)
    train("symponet", TINY_PROCESSED, tmp_path / "data", tmp_path / "run", progress=False)
    out, png = tmp_path / "anatomy.json", tmp_path / "anatomy.png"
    argv = [
        str(tmp_path / "run"),
        "--n",
        "0",
        "--ref-steps",
        "400",
        "--rk4-steps",
        "12",
        "--json",
        str(out),
        "--plot",
        str(png),
    ]
    assert load_bench("error_anatomy").main(argv) == 0
    res = json.loads(out.read_text())
    assert res["n_orbits"] == 12 and res["steps"] == 16 and png.stat().st_size > 10_000
    assert set(res["grid"]) == {
        "trained",
        "textbook",
        "trained, scaled read-out",
        "textbook, scaled read-out",
        "trained, corrected read-out",
        "textbook, corrected read-out",
    }
    # the corrected read-out of the textbook structure (the textbook generator) is flat in phase
    # where the step read-out has its hump: between grid points it is below the step read-out
    phase = res["phase"]
    assert max(phase["textbook, corrected read-out"][3:7]) < min(phase["textbook"][3:7])
    for row in res["grid"].values():
        for cell in row.values():
            assert 0.0 < cell["median"] and np.isfinite(cell["mean"])
    # init: classical and one epoch: the trained weights are near the textbook ones; the textbook
    # structure converges with the steps (fourth order: far more than 2x per doubling)
    textbook = res["carriers"]["textbook"]
    assert [r["steps"] for r in textbook] == [16, 32, 64]
    assert textbook[0]["mean"] > 8.0 * textbook[1]["mean"] > 64.0 * textbook[2]["mean"]
    assert [r["steps"] for r in res["carriers"]["rk4"]] == [12, 24, 48]
    assert all(0.0 < r["worst 1 % share"] <= 1.0 for rows in res["carriers"].values() for r in rows)
    who = res["who"]  # the worst 1 % (of the tiny split: one orbit) beside the rest
    assert who["worst 1 %"]["orbits"] + who["the rest"]["orbits"] == res["n_orbits"]
    assert all(0.0 <= r["near a wall"] <= 1.0 and 0.0 <= r["u >= 0.95"] <= 1.0 for r in who.values())
    assert all(len(c) == 10 for c in res["phase"].values())
    assert "the interpolant's floor" in capsys.readouterr().out


def test_error_anatomy_bench_refuses_bad_input(tmp_path, capsys):
    assert load_bench("error_anatomy").main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "\n" not in err
