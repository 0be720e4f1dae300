"""bench/physics_energies.py runs end to end on a tiny trained processed SympONet (issue 21's
target 6 over many energies): one row per potential, orbits inside the well, the figures
consistent, bad input refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benches import TINY_PROCESSED, load_bench
from synthetic import write_synthetic_dataset

from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_initial_conditions_lie_strictly_inside_the_well():
    bench = load_bench("physics_energies")
    V = (np.linspace(0.0, 1.0, 100) - 0.3) ** 2
    ics = bench.initial_conditions(V, E0=float(V[0]), n=4)
    k = int(np.argmin(V))
    E = V[k] + 0.5 * ics[:, 1] ** 2
    assert np.allclose(ics[:, 0], k / 99) and np.all(np.diff(E) > 0)
    assert E[0] > V[k] and E[-1] < V[0]


def test_physics_energies_bench_runs_on_a_tiny_run(tmp_path, capsys):
    bench = load_bench("physics_energies")
    write_synthetic_dataset(tmp_path / "data", n_train=64, n_val=32, n_test=8, seed=2)
    train("symponet", TINY_PROCESSED, tmp_path / "data", tmp_path / "run", progress=False)
    out = tmp_path / "rows.json"
    argv = [str(tmp_path / "run"), "--potentials", "sho,atw", "--energies", "3", "--t-long", "4",
            "--physics-dir", str(tmp_path / "physics"), "--json", str(out), "--shifts", "1e-3,0.01"]  # fmt: skip
    assert bench.main(argv) == 0
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {"sho", "atw"} and res["steps"] == 16
    for r in res["rows"].values():
        assert r["orbits"] == 3 and 0.0 <= r["above_2x"] <= 1.0
        assert r["ratio_end"] == pytest.approx(r["model_end"] / r["prior_end"])
        assert r["case_ratio_end"] == pytest.approx(r["case_model_end"] / r["case_prior_end"])  # nh eval's orbit
        assert r["model_max"] >= r["model_end"] and r["prior_max"] >= r["prior_end"]
    assert res["dtype"] == "float64" and res["shifts"] == [1e-3, 0.01]
    for r in res["rows"].values():  # the case orbit started further inside: its own figures, per shift
        assert [x["shift"] for x in r["shifted"]] == [1e-3, 0.01]
        assert all(x["ratio_end"] == pytest.approx(x["model_end"] / x["prior_end"]) for x in r["shifted"])
        assert r["shifted"][0]["model_end"] != r["case_model_end"]
    # the textbook correction on the smooth sho: far below plain leapfrog's error
    assert res["rows"]["sho"]["ratio_max"] < 0.5
    out_text = capsys.readouterr().out
    assert "orbits above 2x" in out_text and "q0 + d" in out_text
    assert bench.main([*argv[:-2], "--steps", "24"]) == 0  # the same weights at another step count
    assert json.loads(out.read_text())["steps"] == 24
    capsys.readouterr()
    assert bench.main([*argv[:4], "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: --energies") and "\n" not in err
    assert bench.main([*argv[:-1], "0.01,x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: --shifts must be numbers") and "\n" not in err
    assert bench.main([*argv[:-1], "0.7"]) == 2
    assert "(0, 0.5)" in capsys.readouterr().err
