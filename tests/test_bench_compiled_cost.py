"""bench/compiled_cost.py runs end to end on a tiny trained processed SympONet (issue 21): every
row, the compiled model equal to the torch one, the phase breakdown adding up."""

from __future__ import annotations

import json

import pytest
from benches import TINY_PROCESSED, load_bench
from synthetic import write_synthetic_dataset

from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_compiled_cost_bench_runs_on_a_tiny_run(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / "data", n_train=64, n_val=32, n_test=12, seed=7)
    train("symponet", TINY_PROCESSED, tmp_path / "data", tmp_path / "run", progress=False)
    out = tmp_path / "rows.json"
    assert (
        load_bench("compiled_cost").main(
            [str(tmp_path / "run"), "--n", "0", "--repeats", "1", "--json", str(out)]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["n_orbits"] == 12 and res["agreement"]["q"] < 1e-10 and res["agreement"]["p"] < 1e-10
    rows = res["rows"]
    for label in ("model", "prior alone", "classical coefficients", "rk4 dt=0.02", "rk4 (equal time)",
                  "processed (equal time)"):  # fmt: skip
        assert rows[label]["us_per_orbit"] > 0
    for method in ("leapfrog", "yoshida4", "rk4", "processed"):
        assert rows[f"{method} (equal evaluations)"]["evaluations"] <= res["evaluations_per_orbit"]
    phases = res["phases_us"]["model"]
    assert phases["setup"] + phases["stepping"] + phases["readout"] == pytest.approx(phases["total"])
    r = rows["rk4 dt=0.02"]  # the ratio of the means on the same orbits, with its bootstrap interval
    assert r["mean_ratio"] == pytest.approx(rows["model"]["loss"] / r["loss"])
    assert r["mean_ratio_lo"] <= r["mean_ratio"] <= r["mean_ratio_hi"]
    printed = capsys.readouterr().out
    assert "time by phase" in printed and "model/row mean [95 %]" in printed
    # the same weights with the scaled read-out and another step count: stated cost, agreement
    assert load_bench("compiled_cost").main([str(tmp_path / "run"), "--n", "0", "--repeats", "1", "--json", str(out),
                          "--readout", "scaled", "--steps", "20"]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert (res["readout"], res["steps"]) == ("scaled", 20)
    assert res["split"] == "test" and res["n_orbits"] == 12
    assert res["evaluations_per_orbit"] == 5 + 20 + 21 + res["n_times"]  # chi^-1, steps, grid states, times
    assert res["agreement"]["q"] < 1e-10 and res["agreement"]["p"] < 1e-10
    # the validation split, to choose a recipe on it
    assert load_bench("compiled_cost").main([str(tmp_path / "run"), "--n", "0", "--repeats", "1", "--json", str(out),
                          "--split", "val"]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert res["split"] == "val" and res["n_orbits"] == 32
    assert "32 val orbits of" in capsys.readouterr().out
    # orbits side by side: every row's losses those of one orbit at a time (the same bytes)
    assert load_bench("compiled_cost").main([str(tmp_path / "run"), "--n", "0", "--repeats", "1", "--json", str(out),
                          "--split", "val", "--lanes", "4"]) == 0  # fmt: skip
    side = json.loads(out.read_text())
    assert side["lanes"] == 4 and res["lanes"] == 1
    for label in ("model", "prior alone", "rk4 dt=0.02", "leapfrog (equal evaluations)", "processed (equal evaluations)"):
        assert side["rows"][label]["loss"] == res["rows"][label]["loss"], label
    assert "4 orbits side by side" in capsys.readouterr().out
    assert load_bench("compiled_cost").main([str(tmp_path / "run"), "--n", "0", "--repeats", "1",
                          "--readout", "scaled", "--lanes", "4"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: lanes > 1 needs readout step or corrected") and "\n" not in err
    # each method's own error: scored against fine RK4 on the same interpolant, the floor printed
    assert load_bench("compiled_cost").main([str(tmp_path / "run"), "--n", "0", "--repeats", "1", "--json", str(out),
                          "--split", "val", "--reference", "interpolant"]) == 0  # fmt: skip
    own = json.loads(out.read_text())
    assert own["reference"] == "interpolant" and res["reference"] == "data"
    floor = own["interpolation_floor"]
    assert 0 < floor < res["rows"]["prior alone"]["loss"]  # the spline of 100 sensors is not the potential
    for label in ("model", "rk4 dt=0.02", "processed (equal evaluations)"):
        a, b = own["rows"][label]["loss"], res["rows"][label]["loss"]
        assert a != b and abs(a**0.5 - b**0.5) <= floor**0.5 * 1.0001, label  # the triangle inequality, per mean
    assert "the interpolation floor" in capsys.readouterr().out


def test_compiled_cost_bench_refuses_a_model_it_cannot_compile(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / "data", n_train=64, n_val=32, n_test=8, seed=8)
    cfg = {
        "model": {**TINY_PROCESSED["model"], "local_layers": 1, "local_width": 4},
        "train": TINY_PROCESSED["train"],
    }
    train("symponet", cfg, tmp_path / "data", tmp_path / "run", progress=False)
    assert load_bench("compiled_cost").main([str(tmp_path / "run"), "--n", "0", "--repeats", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: cannot compile") and "local_layers" in err and "\n" not in err
