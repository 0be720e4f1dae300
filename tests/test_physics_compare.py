"""Integrator comparisons (orders, long-time energy), the files `nh physics` writes, and its CLI errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import nh
from nh_data.errors import NHError
from nh_data.integrators import integrate
from nh_data.physics import (
    COMPARE_METHODS,
    POTENTIALS,
    build_physics,
    compare,
    effective_step,
    load_physics,
    reference,
)

# ---------------------------------------------------------------- orders and energy


@pytest.mark.parametrize("method, order", [("rk4", 4), ("leapfrog", 2), ("yoshida4", 4)])
def test_convergence_order_on_sho(method, order):
    """Error on the native grid at dt = 2/50, 2/100, 2/200, 2/400: fitted log-log slope ~ order."""
    hs, errs = [], []
    for n in (50, 100, 200, 400):
        dt = 2.0 / n
        h, _ = effective_step(2.0, dt)
        assert h == pytest.approx(dt, rel=1e-12)
        r = compare("sho", 2.0, dt, methods=(method,), timing=False)["methods"][method]
        hs.append(h)
        errs.append(max(r["max_err_q"], r["max_err_p"]))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert slope == pytest.approx(order, abs=0.15 * order)


@pytest.mark.parametrize("name", ["sho", "quartic"])
def test_energy_bounded_for_symplectic_methods_and_growing_for_rk4(name):
    """t_max = 200: max |H - H0| over the last tenth vs the first tenth of the window."""
    pot = POTENTIALS[name]
    res = compare(name, 200.0, 0.02, timing=False)  # 10,000 steps on the native grid
    tenth = 1000
    ratio = {}
    for m, r in res["methods"].items():
        dH = np.abs(pot.energy(r["q_grid"], r["p_grid"]) - res["E0"])  # (10001,)
        assert r["energy_drift"] == dH.max()
        ratio[m] = dH[-tenth:].max() / dH[1 : tenth + 1].max()
    assert ratio["rk4"] > 5.0, ratio  # secular drift, about linear in t
    for m in ("leapfrog", "yoshida4", "yoshida8"):
        assert ratio[m] < 2.0, ratio  # bounded oscillation, no drift


# ---------------------------------------------------------------- files


EXPECTED_COLUMNS = ["t", "V", "q_ref", "p_ref"] + [f"{x}_{m}" for m in COMPARE_METHODS for x in ("q", "p")]


def test_build_physics_writes_parquet_and_json(tmp_path):
    summary = build_physics("smff", tmp_path, dt=0.02, t_max=2.0)
    table = pq.read_table(tmp_path / "smff.parquet")
    assert table.column_names == EXPECTED_COLUMNS
    assert table.num_rows == 100
    cols = {c: table.column(c).to_numpy() for c in table.column_names}
    np.testing.assert_array_equal(cols["t"], np.linspace(0, 2, 100))
    np.testing.assert_array_equal(cols["V"], POTENTIALS["smff"].sensors())
    q_ref, p_ref = reference("smff", cols["t"])
    np.testing.assert_array_equal(cols["q_ref"], q_ref)
    np.testing.assert_array_equal(cols["p_ref"], p_ref)

    meta = json.loads((tmp_path / "smff.json").read_text())
    assert meta == json.loads(json.dumps(summary))
    assert meta["formula"].startswith("V(q) = a (q - 0.5) / tanh(alpha (q - 0.5))")
    assert meta["ic"] == [0.0, 0.0] and meta["E0"] == pytest.approx(2.0, abs=1e-14)
    pot = POTENTIALS["smff"]
    for m in COMPARE_METHODS:
        r = meta["methods"][m]
        q, p = cols[f"q_{m}"], cols[f"p_{m}"]
        assert r["max_err_q_out"] == np.max(np.abs(q - cols["q_ref"]))
        assert r["max_err_p_out"] == np.max(np.abs(p - cols["p_ref"]))
        # on the native grid t = k dt, recomputed independently
        t_grid = np.arange(101) * 0.02
        qg, pg = integrate(pot.dV, pot.params, 0.0, 0.0, t_grid, 0.02, m)
        qr, pr = reference("smff", t_grid)
        assert r["max_err_q"] == np.max(np.abs(qg - qr))
        assert r["max_err_p"] == np.max(np.abs(pg - pr))
        assert r["energy_drift"] == np.max(np.abs(pot.energy(qg, pg) - meta["E0"]))
        # Hermite resampling adds at most a small interpolation error to the grid error
        assert r["max_err_q_out"] < r["max_err_q"] + 1e-5
        assert 0 < r["time_per_trajectory_s"] < 1.0
        assert r["n_steps"] == 100 and r["step"] == 0.02
    assert sorted(os.listdir(tmp_path)) == ["smff.json", "smff.parquet"]  # no temporary files left


def test_load_physics_round_trip_and_missing(tmp_path):
    summary = build_physics("pendulum", tmp_path, t_max=3.0, ic=(0.2, 0.5))
    data = load_physics(tmp_path, "pendulum")
    assert data.ic == (0.2, 0.5) and data.meta == json.loads(json.dumps(summary))
    assert data.t.shape == data.V.shape == data.q_ref.shape == (100,)
    assert list(data.methods) == list(COMPARE_METHODS)
    q, p = data.methods["yoshida8"]
    assert np.max(np.abs(q - data.q_ref)) == summary["methods"]["yoshida8"]["max_err_q_out"]
    with pytest.raises(NHError, match="no physics case 'morse'"):
        load_physics(tmp_path, "morse", build=False)
    built = load_physics(tmp_path, "morse")  # missing: built with the defaults
    assert built.meta["t_max"] == 2.0 and (tmp_path / "morse.parquet").exists()


def test_plot_writes_a_png(tmp_path):
    build_physics("mff", tmp_path, plot=True)
    png = (tmp_path / "mff.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert sorted(os.listdir(tmp_path)) == ["mff.json", "mff.parquet", "mff.png"]


def test_long_window_builds(tmp_path):
    summary = build_physics("quartic", tmp_path, t_max=200.0)
    assert summary["t_max"] == 200.0
    assert summary["reference"]["energy_drift"] < 1e-10
    assert summary["methods"]["rk4"]["energy_drift"] > summary["methods"]["yoshida8"]["energy_drift"]


# ---------------------------------------------------------------- CLI


def _run(args, tmp_path):
    return CliRunner().invoke(nh, ["physics", *args, "--out", str(tmp_path / "out")])


def test_cli_prints_table_and_writes(tmp_path):
    res = _run(["sho", "--dt", "0.01", "--t-max", "1.5", "--ic", "0.3,0.5", "--plot"], tmp_path)
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir(tmp_path / "out")) == ["sho.json", "sho.parquet", "sho.png"]
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["potential", "method", "max|dq|", "max|dp|", "max|dH|", "time/traj"]
    assert [ln.split()[1] for ln in lines[2:6]] == list(COMPARE_METHODS)
    meta = json.loads((tmp_path / "out" / "sho.json").read_text())
    assert meta["ic"] == [0.3, 0.5] and meta["t_max"] == 1.5 and meta["dt"] == 0.01


@pytest.mark.parametrize(
    "args, message",
    [
        (["harmonic"], "Error: unknown potential 'harmonic'; valid: sho, quartic, morse, mff, smff, "
         "unbounded, pendulum, atw, all"),
        (["sho", "--ic", "1.2,0"], "Error: initial q0=1.2 lies outside the box [0, 1]"),
        (["sho", "--ic", "-0.1,0"], "Error: initial q0=-0.1 lies outside the box [0, 1]"),
        (["quartic", "--ic", "0.5,1.9"], "Error: initial condition (q0=0.5, p0=1.9) has energy E0=2.43781 "
         "above the walls V0=2: the orbit is not confined to [0, 1]"),
        (["all", "--ic", "0.5,1.9"], "above the walls"),  # fine for sho, not for quartic: nothing written
        (["sho", "--ic", "0.5"], "Error: --ic must be Q0,P0 (two numbers separated by a comma), got '0.5'"),
        (["sho", "--ic", "a,b"], "--ic must be Q0,P0"),
        (["sho", "--t-max", "0"], "Error: t_max must be a positive number, got 0.0"),
        (["sho", "--t-max", "-1"], "Error: t_max must be a positive number, got -1.0"),
        (["sho", "--t-max", "nan"], "Error: t_max must be a positive number, got nan"),
        (["sho", "--t-max", "abc"], "Error: --t-max must be a number, got 'abc'"),
        (["sho", "--dt", "0"], "Error: dt must be a positive number, got 0.0"),
        (["sho", "--dt", "-0.1"], "Error: dt must be a positive number, got -0.1"),
        (["sho", "--t-max", "1e6"], "Error: t_max=1e+06 is above the limit 10000"),
    ],
)  # fmt: skip
def test_cli_bad_input_exits_2_with_one_line(args, message, tmp_path):
    res = _run(args, tmp_path)
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert message in res.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_parquet_bytes_are_reproducible(tmp_path):
    build_physics("sho", tmp_path / "a")
    build_physics("sho", tmp_path / "b")
    assert (tmp_path / "a" / "sho.parquet").read_bytes() == (tmp_path / "b" / "sho.parquet").read_bytes()
