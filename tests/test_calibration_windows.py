"""Bands that hold over long times (issue 22, part 4): long certified orbits from the engine,
one split-conformal band per chained window (`nh calibrate --windows K`), window k's band in
window k and the refusal past K (`nh predict`), per-window coverage (`nh eval`)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pytest
from benches import load_bench
from click.testing import CliRunner

from cli import nh
from nh_data.errors import NHError
from nh_data.initial import sample_long_times, sample_times
from nh_data.integrators import integrate
from nh_data.spline import V_pp, dV_pp, pack_params
from nh_data.stream import MAX_WINDOWS, check_windows, fresh_chunk, fresh_rng, read_build_config
from nh_data.validate import REF_DT, REF_MARGIN, REF_METHOD
from nh_models import calibration as calmod
from nh_models.calibration import (
    FILE,
    POOLED,
    calibrate_predictor,
    from_dict,
    load_calibration,
    long_orbit_errors,
    nonconformity,
    scores_from_errors,
    window_errors,
)
from nh_models.evaluation.cases import load_test
from nh_models.evaluation.coverage import long_window_coverage, window_coverage
from nh_models.evaluation.metrics import stratum_labels
from nh_models.evaluation.oracle import integrator_predict
from nh_models.evaluation.report import coverage_table
from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

POTS = 6
W = 100
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def config(tiny_dataset):
    return read_build_config(tiny_dataset)


# ---------------------------------------------------------------- the engine: long certified orbits


def test_long_times_are_windows_end_to_end():
    one = sample_times(fresh_rng(1, 0), 5, "random")
    assert np.array_equal(sample_long_times(fresh_rng(1, 0), 5, "random", 1), one)  # same draws
    t3 = sample_long_times(fresh_rng(1, 0), 5, "random", 3)
    assert t3.shape == (5, 3 * (W - 1) + 1) and np.all(np.diff(t3, axis=1) > 0)
    assert np.array_equal(t3[:, :W], one)  # window 1 is the one-window draw
    assert np.all(t3[:, [0, 99, 198, 297]] == [0.0, 2.0, 4.0, 6.0])
    # the first windows do not depend on how many follow
    assert np.array_equal(sample_long_times(fresh_rng(1, 0), 5, "random", 2), t3[:, : 2 * (W - 1) + 1])
    u = sample_long_times(fresh_rng(1, 0), 2, "uniform", 2)
    np.testing.assert_allclose(u[0], np.linspace(0, 4, 2 * (W - 1) + 1), rtol=0, atol=1e-15)
    for bad in (0, MAX_WINDOWS + 1, True, 2.5, "3"):
        with pytest.raises(NHError, match="--windows must be an integer"):
            check_windows(bad)


def test_long_orbits_are_certified_to_t_2K(config):
    one = fresh_chunk(config, 0, 0, POTS, stream="calibration")
    assert all(np.array_equal(one[k], v) if not isinstance(v, list) else True
               for k, v in fresh_chunk(config, 0, 0, POTS, stream="calibration", windows=1).items())  # fmt: skip
    d = fresh_chunk(config, 0, 0, POTS, stream="calibration", windows=3)
    R = len(d["q0"])
    assert R >= 4 * POTS - 2 and d["t"].shape == d["q"].shape == (R, 3 * (W - 1) + 1)
    # the same potentials and initial conditions as the one-window chunk: only the times go on
    assert np.isin(d["q0"], one["q0"]).all() and np.isin(d["V"][:, 40], one["V"][:, 40]).all()
    assert np.all(d["t"][:, -1] == 6.0) and np.all(d["err_est"] <= config["cert_tol"])
    for i in range(R):  # energy along the whole orbit, on the exact spline
        params = pack_params(d["knots"][i], d["coeffs"][i])
        H = 0.5 * d["p"][i] ** 2 + np.array([V_pp(float(x), params) for x in d["q"][i]])
        assert np.abs(H - d["E0"][i]).max() < 1e-9
    for i in (0, R - 1):  # independent re-integration (Kahan-Li 8 at dt = 2e-5) to t = 6
        q, p = integrate(dV_pp, pack_params(d["knots"][i], d["coeffs"][i]), d["q0"][i], d["p0"][i], d["t"][i],
                         REF_DT, REF_METHOD)  # fmt: skip
        assert max(np.abs(q - d["q"][i]).max(), np.abs(p - d["p"][i]).max()) <= config["cert_tol"] + REF_MARGIN
    # the evaluation stream is another stream: no potential of the calibration one
    ev = fresh_chunk(config, 0, 0, POTS, stream="evaluation", windows=3)
    assert not np.isin(ev["V"][:, 40], d["V"][:, 40]).any()


# ---------------------------------------------------------------- a predictor with known, growing errors


def noisy_leapfrog(V, t, ic):
    """Leapfrog at dt = 0.01 on the sensor interpolant plus an error whose size is drawn per orbit
    from its initial condition (so a chained window, which starts from a predicted state, draws a
    new one): deterministic, and its chained errors grow window after window."""
    q, p = integrator_predict(V, t, ic, "leapfrog", 0.01)
    seed = np.frombuffer(np.ascontiguousarray(ic).tobytes(), dtype=np.uint32)[::4]
    eps = np.array([np.random.default_rng(int(s)).exponential(0.01) for s in seed])[:, None]
    return q + eps * np.sin(3 * t), p - 2 * eps * np.cos(2 * t)


def test_window_errors_are_the_nonconformity_of_each_window(config):
    d = fresh_chunk(config, 0, 0, POTS, stream="calibration", windows=3)
    ic = np.stack([d["q0"], d["p0"]], axis=1)
    err = window_errors(noisy_leapfrog, d["V"], ic, d["t"], d["q"], d["p"], 3)
    from nh_models.inference.predict import chained

    q_hat, p_hat = chained(noisy_leapfrog, d["V"], ic, d["t"])
    s = scores_from_errors(err, 0.1, 0.7)
    for k, cols in enumerate((slice(0, 100), slice(100, 199), slice(199, 298))):  # (2(k-1), 2k], 0 in window 1
        expect = nonconformity(q_hat[:, cols], p_hat[:, cols], d["q"][:, cols], d["p"][:, cols], 0.1, 0.7)
        assert np.array_equal(s[:, k], expect)  # bit for bit
    assert np.all(np.diff(np.median(s, axis=0)) > 0)  # chained errors grow
    part = window_errors(noisy_leapfrog, d["V"], ic, d["t"][:, :150], d["q"][:, :150], d["p"][:, :150], 3)
    assert np.isnan(part[:, 2]).all() and np.isfinite(part[:, :2]).all()  # no time in window 3: absent


def test_per_window_coverage_on_fresh_orbits(tiny_dataset):
    """Calibrated per window on the calibration stream, scored on other fresh orbits (the evaluation
    stream): every window covers at least 0.9 - 2 SE at 0.9, and the bands widen with k."""
    cal = from_dict(calibrate_predictor(noisy_leapfrog, tiny_dataset, kind="max", fresh=200, windows=3))
    assert cal.windows == 3 and cal.meta["version"] == 2 and cal.meta["n"] >= 790
    (err,), u = long_orbit_errors([noisy_leapfrog], tiny_dataset, 200, 3, stream="evaluation", seed=1)
    rows = window_coverage(cal, err, u)
    assert [r["window"] for r in rows] == [1, 2, 3] and all(r["n"] == len(u) >= 790 for r in rows)
    for r in rows:
        assert r["coverage"] >= 0.9 - 2 * r["se"], rows
        assert r["coverage"] <= 0.91 + 3 * r["se"], rows  # and not far above the aim (0.91)
        assert abs(r["se"] - math.sqrt(r["coverage"] * (1 - r["coverage"]) / r["n"])) < 1e-15
    assert rows[0]["width_q"] < rows[1]["width_q"] < rows[2]["width_q"]
    # the one-window band of window 1 would not hold in window 3
    one = np.array([cal.quantile(s, 0.9, 1) for s in stratum_labels(u)])
    assert np.mean(scores_from_errors(err[:, 2]) <= one) < 0.85


# ---------------------------------------------------------------- a trained run: nh calibrate, nh predict, nh eval


@pytest.fixture(scope="module")
def engine_run(tiny_dataset, tmp_path_factory):
    """A tiny DeepONet trained on a copy of the engine-built tiny dataset (`train` calibrates K = 1)."""
    root = tmp_path_factory.mktemp("calwin")
    shutil.copytree(tiny_dataset, root / "data")
    cfg = {"model": {"nodes": 16, "layers": 2, "branches": 4}, "train": {"epochs": 1, "batch_size": 8}}
    train("deeponet", cfg, root / "data", root / "run", progress=False)
    return root


def _cli(*args):
    return CliRunner().invoke(nh, [str(a) for a in args])


def _read(path) -> dict[str, np.ndarray]:
    table = pcsv.read_csv(path)
    return {k: table[k].to_numpy() for k in table.column_names}


def test_windows_calibration_is_deterministic_for_any_workers(engine_run, monkeypatch):
    run = engine_run / "run"
    path = run / FILE
    one = path.read_bytes()  # K = 1, written by train
    assert json.loads(one)["version"] == 1 and "windows" not in json.loads(one)
    res = _cli("calibrate", run, "--windows", "3", "--fresh", "12")
    assert res.exit_code == 0, res.output
    first = path.read_bytes()
    assert _cli("calibrate", run, "--windows", "3", "--fresh", "12").exit_code == 0
    assert path.read_bytes() == first  # same seed, same bytes
    obj = json.loads(first)
    assert obj["version"] == 2 and obj["windows"] == 3 and obj["window_length"] == 2.0
    assert [w["window"] for w in obj["later_windows"]] == [2, 3] and obj["later_windows"][1]["t"] == [4.0, 6.0]
    assert obj["fresh"] == {"potentials": 12, "stream": "calibration", "seed": 0, "rejected": 48 - obj["n"],
                            "certificate": {"cert_tol": 1e-8, "adaptive_tols": [1e-12, 1e-13, 1e-14]}}  # fmt: skip
    for strata in [obj["strata"]] + [w["strata"] for w in obj["later_windows"]]:
        s = strata[POOLED]["scores"]
        assert len(s) == obj["n"] and s == sorted(s)
    assert "3 windows (to t = 6" in res.stdout
    # the file does not depend on the number of worker processes (three chunks of 5 potentials)
    monkeypatch.setattr(calmod, "FRESH_CHUNK", 5)
    assert _cli("calibrate", run, "--windows", "3", "--fresh", "12").exit_code == 0
    by_one = path.read_bytes()
    assert _cli("calibrate", run, "--windows", "3", "--fresh", "12", "--workers", "2").exit_code == 0
    assert path.read_bytes() == by_one != first
    monkeypatch.undo()
    # --windows 1 (the default) is the one-window file, byte for byte
    assert _cli("calibrate", run).exit_code == 0 and path.read_bytes() == one
    for args, message in ((["--windows", "0"], "--windows must be an integer"),
                          (["--windows", "2", "--workers", "0"], "--workers must be a positive integer")):  # fmt: skip
        res = _cli("calibrate", run, *args)
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.output
        assert path.read_bytes() == one  # nothing written


@pytest.fixture(scope="module")
def three_windows(engine_run):
    """The run calibrated for 3 windows (a copy)."""
    run = engine_run / "run3"
    shutil.copytree(engine_run / "run", run)
    res = _cli("calibrate", run, "--windows", "3", "--fresh", "12")
    assert res.exit_code == 0, res.output
    return run


def test_predict_uses_window_ks_band_and_refuses_past_K(three_windows, tmp_path):
    run = three_windows
    cal = load_calibration(run)
    out = tmp_path / "o.csv"
    res = _cli("predict", run, "--potential", "sho", "--ic", "0.5,1", "--t-max", "8", "--out", out)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert "calibrated for 3 chained windows (t <= 6)" in res.stderr and "--windows 4" in res.stderr
    assert "--allow-uncalibrated" in res.stderr and not out.exists()
    res = _cli("predict", run, "--potential", "sho", "--ic", "0.5,1", "--t-max", "6", "--times", "61", "--out", out)
    assert res.exit_code == 0, res.output
    cols = _read(out)
    t = cols["t"]
    assert np.all(cols["calibrated"]) and "in window 3 (3 windows calibrated)" in res.stdout
    for k in (1, 2, 3):  # window k (t in (2(k-1), 2k]) gets window k's band
        sel = (t > 2 * (k - 1)) & (t <= 2 * k) if k > 1 else t <= 2
        hq, hp = cal.half_widths("[0.05,0.35)", 0.9, k)
        np.testing.assert_allclose(cols["q_hi"][sel] - cols["q"][sel], hq, rtol=1e-12)
        np.testing.assert_allclose(cols["p"][sel] - cols["p_lo"][sel], hp, rtol=1e-12)
    res = _cli("predict", run, "--potential", "sho", "--ic", "0.5,1", "--t-max", "8", "--times", "81",
               "--allow-uncalibrated", "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Note: no band past t = 6: the run is calibrated for 3 chained windows" in res.stderr
    cols = _read(out)
    past = cols["t"] > 6
    assert past.sum() == 20 and not cols["calibrated"][past].any() and cols["calibrated"][~past].all()
    assert np.isnan(cols["q_lo"][past]).all() and np.isfinite(cols["q_lo"][~past]).all()
    assert np.isfinite(cols["q"]).all()


def test_old_single_window_files_still_load(engine_run, three_windows):
    v1 = json.loads((engine_run / "run" / FILE).read_text())  # as every file before issue 22
    assert v1["version"] == 1
    cal = from_dict(v1)
    assert cal.windows == 1 and cal.later == []
    assert cal.quantile(POOLED, 0.9) == cal.quantile(POOLED, 0.9, window=1)
    with pytest.raises(NHError, match="window 2 is not calibrated"):
        cal.quantile(POOLED, 0.9, window=2)
    older = {k: v for k, v in v1.items() if k != "margin"}  # before the margin: the plain band
    assert from_dict(older).margin == 0.0
    v2 = json.loads((three_windows / FILE).read_text())
    cal3 = from_dict(v2)
    assert cal3.windows == 3 and np.array_equal(cal3.window_scores(1)[POOLED], cal3.scores[POOLED])
    with pytest.raises(NHError, match="malformed"):
        from_dict(dict(v2, windows=4))
    with pytest.raises(NHError, match="not a Neural Hamilton calibration"):
        from_dict(dict(v2, version=3))


def test_eval_reports_per_window_coverage(three_windows, engine_run, tmp_path):
    from nh_models.evaluation.predictors import model_predictor
    from nh_models.training.checkpoint import load_run

    cal = load_calibration(three_windows)
    model, _ = load_run(three_windows)
    test = load_test(engine_run / "data")
    out = long_window_coverage(cal, model_predictor(model), test, potentials=10, seed=0)
    rows = out["windows"]
    assert [r["window"] for r in rows] == [1, 2, 3] and out["windows_source"]["orbits"] == "evaluation stream"
    assert all(r["n"] == out["windows_source"]["n"] >= 36 and 0 <= r["coverage"] <= 1 for r in rows)
    strata = {"overall": {"n": 9, "coverage": {"0.9": 0.9}, "width_q": {}, "width_p": {}}}
    table = coverage_table({"settings": {"window": 2.0}, "runs": {"r": {"coverage": {"strata": strata} | out}}})
    assert "Each chained window's own 0.9 band" in table and "| r | " in table and "t <= 6" in table
    # a folder without a build configuration: a note, not an error
    synthetic = type(test)(*[getattr(test, f) for f in ("V", "t", "ic", "q", "p", "u")], source=str(tmp_path))
    assert "no per-window coverage" in long_window_coverage(cal, model_predictor(model), synthetic, 10)["windows_note"]
    # `nh eval` end to end: the table in the report, the rows in metrics.json
    res = _cli("eval", three_windows, "--data", engine_run / "data", "--physics", "none", "--n-sub", "8",
               "--out", tmp_path / "eval", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    rows = metrics["runs"]["run3"]["coverage"]["windows"]
    assert [r["window"] for r in rows] == [1, 2, 3] and rows[0]["n"] >= 450
    assert "Each chained window's own 0.9 band" in (tmp_path / "eval" / "report.md").read_text()


def test_a_test_splits_orbits_integrated_again_to_t_2K(tiny_dataset, config):
    from nh_data.ground_truth import REASONS
    from nh_data.stream import long_orbits

    rows = fresh_chunk(config, 3, 0, 2, stream="evaluation")  # a dataset's columns
    out = long_orbits(config, rows, fresh_rng(9, 0), 2)
    R = len(rows["q0"])
    assert out["t"].shape == out["q"].shape == (R, 2 * (W - 1) + 1) and np.all(out["t"][:, -1] == 4.0)
    assert [REASONS[c] for c in out["code"]] == ["kept"] * R and np.all(out["err_est"] <= config["cert_tol"])
    assert np.array_equal(out["q"][:, 0], rows["q0"]) and np.array_equal(out["p"][:, 0], rows["p0"])
    i = R - 1
    q, p = integrate(dV_pp, pack_params(rows["knots"][i], rows["coeffs"][i]), rows["q0"][i], rows["p0"][i],
                     out["t"][i], REF_DT, REF_METHOD)  # fmt: skip
    assert max(np.abs(q - out["q"][i]).max(), np.abs(p - out["p"][i]).max()) <= config["cert_tol"] + REF_MARGIN
    again = long_orbits(config, rows, fresh_rng(9, 0), 2)
    assert all(np.array_equal(out[k], again[k]) for k in out)  # a pure function of the generator


def test_window_coverage_bench_runs_and_saves_what_nh_calibrate_writes(three_windows, engine_run, tmp_path):
    import sys

    bench = load_bench("window_coverage")
    run = tmp_path / "run"
    shutil.copytree(three_windows, run)
    written = (three_windows / FILE).read_bytes()  # `nh calibrate RUN --windows 3 --fresh 12`
    (run / FILE).unlink()
    out, png = tmp_path / "wc.json", tmp_path / "wc.png"
    argv = ["window_coverage.py", str(run), "--data", str(engine_run / "data"), "--windows", "3", "--fresh", "12",
            "--save", "--out", str(out), "--png", str(png)]  # fmt: skip
    old, sys.argv = sys.argv, argv
    try:
        bench.main()
    finally:
        sys.argv = old
    assert (run / FILE).read_bytes() == written  # byte for byte
    res = json.loads(out.read_text())
    ((label, per),) = res["runs"].items()
    rows = per[str(engine_run / "data")]["windows"]
    assert [r["window"] for r in rows] == [1, 2, 3] and all(0 <= r["coverage"] <= 1 for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_refusal_names_k_and_how_to_calibrate_more():
    from nh_models.inference.predict import uncalibrated_message

    msg = uncalibrated_message(3, 9.5, "runs/x")
    assert "\n" not in msg and "calibrated for 3 chained windows (t <= 6)" in msg and "reach 9.5" in msg
    assert "`nh calibrate runs/x --windows 5` for bands to t = 10" in msg and "--allow-uncalibrated" in msg
    shipped = uncalibrated_message(1, 4.0, "zoo:deeponet-strata")  # a shipped entry is no folder to calibrate
    assert "1 chained window (t <= 2)" in shipped and "`nh models build deeponet-strata`" in shipped
