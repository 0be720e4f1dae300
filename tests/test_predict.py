"""`nh predict` (issue 12): potentials from names, files and formulas, chained windows, bands,
--check and --plot; every bad input a one-line error with exit status 2 that writes nothing."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_data.errors import NHError
from nh_data.physics import POTENTIALS
from nh_data.problem import SENSORS
from nh_models.calibration import load_calibration
from nh_models.evaluation.predictors import model_predictor
from nh_models.evaluation.structure import chain
from nh_models.inference import Formula, check_inputs, predict, read_potential_file, resolve_potential
from nh_models.training.checkpoint import load_run
from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = {"model": {"nodes": 16, "layers": 2, "branches": 4}, "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny DeepONet trained on harmonic orbits; `train` calibrates it at its end."""
    root = tmp_path_factory.mktemp("predict")
    write_synthetic_dataset(root / "data", n_train=128, n_val=64, n_test=16, seed=5)
    train("deeponet", TINY, root / "data", root / "run", progress=False)
    return root / "run"


def _predict(*args):
    return CliRunner().invoke(nh, ["predict", *map(str, args)])


# ---------------------------------------------------------------- the formula parser


def test_formula_evaluates_and_differentiates_exactly():
    q = np.linspace(0, 1, 7)
    f = Formula("2*cos(3*q) + abs(q - 0.3) - sqrt(q + 1) / exp(q) + pi*tanh(q)**2")
    expected = 2 * np.cos(3 * q) + np.abs(q - 0.3) - np.sqrt(q + 1) / np.exp(q) + np.pi * np.tanh(q) ** 2
    np.testing.assert_allclose(f(q), expected, rtol=1e-14)
    h = 1e-6
    np.testing.assert_allclose(f.dV(q), (f(q + h) - f(q - h)) / (2 * h), rtol=1e-6, atol=1e-6)
    assert Formula("-q**2").dV(np.array([0.5]))[0] == -1.0
    assert Formula("3").__call__(q).shape == q.shape  # a constant broadcasts


@pytest.mark.parametrize(
    "text, message",
    [
        ("8*(q-", "malformed"),
        ("x + 1", "unknown name 'x'"),
        ("os.system('ls')", "not allowed"),
        ("__import__('os').system('touch PWNED')", "not allowed"),
        ("q.__class__", "Attribute is not allowed"),
        ("(lambda: 1)()", "not allowed"),
        ("[q for q in (1,)]", "not allowed"),
        ("'a' * 3", "only numbers"),
        ("open('f')", "function 'open' is not allowed"),
        ("sin(q, 2)", "exactly one argument"),
        ("sin(x=q)", "exactly one argument"),
        ("q if q else 1", "IfExp is not allowed"),
        ("q < 1", "Compare is not allowed"),
        ("9**99", "too large"),
        ("", "empty"),
    ],
)
def test_formula_whitelist_refuses(text, message):
    with pytest.raises(NHError, match=message):
        Formula(text)


# ---------------------------------------------------------------- the potential SPEC


def test_name_formula_and_files_give_the_same_sensors(tmp_path):
    by_name = resolve_potential("sho").V
    by_formula = resolve_potential("8*(q-0.5)**2").V
    np.testing.assert_allclose(by_formula, by_name, rtol=0, atol=1e-14)
    np.testing.assert_allclose(by_name, POTENTIALS["sho"].sensors(), rtol=0, atol=0)

    np.save(tmp_path / "v.npy", by_name)
    np.savetxt(tmp_path / "v.csv", by_name)
    pq.write_table(pa.table({"V": by_name}), tmp_path / "v.parquet")
    x = np.sort(np.concatenate([[0.0, 1.0], np.random.default_rng(0).uniform(0, 1, 60)]))
    pcsv.write_csv(pa.table({"q": x, "V": 8 * (x - 0.5) ** 2}), tmp_path / "qv.csv")  # header q, V
    pq.write_table(pa.table({"q": x, "V": 8 * (x - 0.5) ** 2}), tmp_path / "qv.parquet")
    np.save(tmp_path / "qv.npy", np.column_stack([x, 8 * (x - 0.5) ** 2]))
    for name in ("v.npy", "v.csv", "v.parquet"):
        np.testing.assert_array_equal(resolve_potential(str(tmp_path / name)).V, by_name)
    for name in ("qv.csv", "qv.parquet", "qv.npy"):  # a cubic spline reproduces the quadratic
        np.testing.assert_allclose(resolve_potential(str(tmp_path / name)).V, by_name, atol=1e-12)


def test_input_checks_errors_and_warnings():
    V = POTENTIALS["sho"].sensors()
    E0, u, label, warn = check_inputs(V, (0.5, 1.0))  # E0 = 0.5, u = 0.25
    assert E0 == pytest.approx(0.5) and u == pytest.approx(0.25) and label == "[0.05,0.35)" and warn == []
    assert check_inputs(V, (0.0, 0.0))[2] == "wall"  # the paper's wall start is allowed
    with pytest.raises(NHError, match="not confined"):
        check_inputs(V, (0.5, 2.0))  # E0 = 2 = V0
    with pytest.raises(NHError, match="outside the box"):
        check_inputs(V, (1.2, 0.0))
    with pytest.raises(NHError, match="not finite"):
        check_inputs(np.where(SENSORS > 0.5, np.nan, V), (0.5, 0.1))
    with pytest.raises(NHError, match="100 sensor values"):
        check_inputs(V[:99], (0.5, 0.1))
    assert any("outside the training strata" in w for w in check_inputs(V, (0.3, 0.0))[3])  # u = 0


@pytest.mark.parametrize(
    "formula, ic, needle",
    [
        ("3*(q-0.5)**2", (0.5, math.sqrt(0.75)), "walls not at 2"),
        ("2*cos(4*pi*q) + 0.5*sin(pi*q)", (0.25, 1.0), "V > 2 inside"),
        ("56*(q-0.5)**2 - 12", (0.5, 4.0), "|V| > 10"),
    ],
)
def test_out_of_distribution_warnings(run, tmp_path, formula, ic, needle):
    res = _predict(run, "--potential", formula, "--ic", f"{ic[0]},{ic[1]}", "--out", tmp_path / "o.csv")
    assert res.exit_code == 0, res.output
    assert f"Warning: {needle}" in res.stderr
    assert (tmp_path / "o.csv").is_file()


# ---------------------------------------------------------------- predictions


def test_predict_on_sho_writes_the_table_and_the_plot(run, tmp_path):
    out = tmp_path / "sho.parquet"
    res = _predict(run, "--potential", "sho", "--ic", "0.5,1", "--times", "50", "--check", "--plot", "--out", out)
    assert res.exit_code == 0, res.output
    t = pq.read_table(out)
    assert t.column_names[:9] == ["t", "q", "p", "H", "q_lo", "q_hi", "p_lo", "p_hi", "calibrated"]
    cols = {k: t[k].to_numpy() for k in t.column_names}
    assert len(cols["t"]) == 50 and cols["t"][-1] == 2.0
    for k in ("q", "p", "H", "q_lo", "q_hi", "p_lo", "p_hi", "q_exact", "p_sensors"):
        assert np.all(np.isfinite(cols[k])), k
    np.testing.assert_allclose(cols["H"], 0.5 * cols["p"] ** 2 + 8 * (cols["q"] - 0.5) ** 2, rtol=1e-12)
    assert np.all(cols["q_lo"] < cols["q"]) and np.all(cols["p"] < cols["p_hi"])
    # the check's references: the exact sho orbit, and the certified integrator on the sensors
    w = 4.0
    np.testing.assert_allclose(cols["q_exact"], 0.5 + np.sin(w * cols["t"]) / w, atol=1e-9)
    np.testing.assert_allclose(cols["q_sensors"], cols["q_exact"], atol=1e-6)
    assert "check vs exact potential: max |dq|" in res.stdout and "band +-" in res.stdout
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chained_prediction_equals_nh_evals_chaining(run):
    model, _ = load_run(run)
    V = POTENTIALS["morse"].sensors()
    ic = np.array([0.4, 0.5])
    t, q_chain, p_chain = chain(model_predictor(model), V[None], ic[None], 3)  # what nh eval does
    q, p, _ = predict(model, V, ic, t)
    np.testing.assert_allclose(q, q_chain[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(p, p_chain[0], rtol=0, atol=1e-6)
    # and any other times: t in (2k, 2k + 2] is predicted from the start of window k
    q2, _, _ = predict(model, V, ic, np.array([0.0, 1.0, 3.0, 5.5]))
    assert q2[0] == ic[0]
    start = np.array([[q_chain[0, 99], p_chain[0, 99]]])
    np.testing.assert_allclose(q2[2], model_predictor(model)(V[None], np.array([[1.0]]), start)[0][0, 0], atol=1e-6)


def test_bands_come_from_the_calibration(run):
    model, _ = load_run(run)
    cal = load_calibration(run)
    assert cal.windows == 1  # `train` calibrates one window
    V = POTENTIALS["sho"].sensors()
    q, p, b = predict(run, V, (0.5, 1.0), np.linspace(0, 2, 21), level=0.9)
    assert b.stratum == "[0.05,0.35)"
    hq, hp = cal.half_widths("[0.05,0.35)", 0.9)
    assert (b.half_q, b.half_p) == (hq, hp) and hq > 0
    np.testing.assert_allclose(b.q_hi - q, np.full(21, hq), rtol=0, atol=1e-12)  # q + hq - q: round-off
    assert b.calibrated.all() and b.windows == 1 and b.notes == []
    # past the calibrated window: refused, or (allow_uncalibrated) no band there
    with pytest.raises(NHError, match=r"calibrated for 1 chained window \(t <= 2\).*--windows 2"):
        predict(run, V, (0.5, 1.0), np.linspace(0, 4, 41), level=0.9)
    q, p, b = predict(run, V, (0.5, 1.0), np.linspace(0, 4, 41), level=0.9, allow_uncalibrated=True)
    assert b.calibrated.tolist() == [True] * 21 + [False] * 20
    assert np.isfinite(b.q_lo[:21]).all() and np.isnan(b.q_lo[21:]).all() and np.isnan(b.p_hi[21:]).all()
    assert any("no band past t = 2" in n for n in b.notes)
    assert predict(run, V, (0.5, 1.0), np.linspace(0, 4, 41))[2] is None  # no band asked: any time
    with pytest.raises(NHError, match="no calibration"):
        predict(model, V, (0.5, 1.0), [1.0], level=0.9)


def test_nh_predict_refuses_times_past_the_calibrated_windows(run, tmp_path):
    out = tmp_path / "o.csv"
    res = _predict(run, "--potential", "sho", "--ic", "0.5,1", "--t-max", "10", "--out", out)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and not out.exists(), res.output
    assert "calibrated for 1 chained window (t <= 2) and the times reach 10" in res.stderr
    assert f"nh calibrate {run} --windows 5" in res.stderr and "--allow-uncalibrated" in res.stderr
    res = _predict(run, "--potential", "sho", "--ic", "0.5,1", "--t-max", "10", "--allow-uncalibrated",
                   "--check", "--out", out)  # fmt: skip
    assert res.exit_code == 0 and out.is_file(), res.output
    assert "Note: no band past t = 2" in res.stderr and "in the first window" in res.stdout


def _orbits():
    """Four potentials, their starts, and per-orbit times spread over 4 windows (various counts per window)."""
    names = ("sho", "morse", "quartic", "mff")
    V = np.stack([POTENTIALS[n].sensors() for n in names])
    ic = np.array([[0.5, 1.0], [0.4, 0.3], [0.5, 0.5], [0.45, -0.2]])
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 7.5, (4, 37)), axis=1)
    t[:, 0] = 0.0
    t[1, 5] = 2.0  # a window's end
    return V, ic, t


def test_batch_prediction_equals_one_orbit_predictions(run):
    import nh_models

    V, ic, t = _orbits()
    warnings: list[str] = []
    q, p, b = nh_models.predict(run, V, ic, t, level=0.9, allow_uncalibrated=True, warnings=warnings)
    assert q.shape == p.shape == t.shape and b.q_lo.shape == t.shape and len(b.stratum) == 4
    for i in range(4):
        one = []
        qi, pi, bi = predict(run, V[i], ic[i], t[i], level=0.9, allow_uncalibrated=True, warnings=one)
        np.testing.assert_allclose(q[i], qi, rtol=0, atol=1e-6)  # float32 network: round-off
        np.testing.assert_allclose(p[i], pi, rtol=0, atol=1e-6)
        assert b.stratum[i] == bi.stratum and b.half_q[i] == bi.half_q
        np.testing.assert_array_equal(b.calibrated[i], bi.calibrated)
        np.testing.assert_allclose(b.q_hi[i], bi.q_hi, rtol=0, atol=1e-6)
        assert [f"orbit {i}: {w}" for w in one] == [w for w in warnings if w.startswith(f"orbit {i}: ")]
    # the same times for every orbit: t (N,)
    q2, _, _ = predict(run, V, ic, t[0])
    np.testing.assert_allclose(q2[2], predict(run, V[2], ic[2], t[0])[0], rtol=0, atol=1e-6)
    for bad_ic, bad_t, message in ((ic[:3], t, r"ic of shape \(4, 2\)"), (ic, t[:3], r"t of shape \(4, N\)")):
        with pytest.raises(NHError, match=message):
            predict(run, V, bad_ic, bad_t)
    with pytest.raises(NHError, match="calibrated for 1 chained window"):  # checked before the network runs
        predict(run, V, ic, t, level=0.9)


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


def _bad_files(tmp_path):
    short = tmp_path / "short.csv"
    np.savetxt(short, np.zeros(99))
    nan = tmp_path / "nan.npy"
    v = POTENTIALS["sho"].sensors().copy()
    v[40] = np.nan
    np.save(nan, v)
    return short, nan


@pytest.mark.parametrize(
    "spec, ic, message",
    [
        ("8*(q-", "0.5,1", "malformed"),
        ("8*(x-0.5)**2", "0.5,1", "unknown name 'x'"),
        ("__import__('os').system('touch PWNED')", "0.5,1", "not allowed"),
        ("getattr(q, '__class__')", "0.5,1", "not allowed"),
        ("sho.__globals__", "0.5,1", "not allowed"),
        ("log(q - 0.5)", "0.7,0.1", "not finite"),
        ("SHORT", "0.5,1", "expected 100 sensor values"),
        ("NAN", "0.5,1", "not finite"),
        ("missing.csv", "0.5,1", "does not exist"),
        ("sho", "0.5,2", "not confined"),
        ("sho", "1.5,0", "outside the box"),
        ("sho", "nan,0", "must be finite"),
        ("sho", "0.5", "--ic must be Q0,P0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run, tmp_path, monkeypatch, spec, ic, message):
    monkeypatch.chdir(tmp_path)
    short, nan = _bad_files(tmp_path)
    spec = {"SHORT": str(short), "NAN": str(nan)}.get(spec, spec)
    out = tmp_path / "o.parquet"
    res = _predict(run, "--potential", spec, "--ic", ic, "--out", out, "--plot")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1 and message in res.stderr
    assert not out.exists() and not out.with_suffix(".png").exists()
    assert not (tmp_path / "PWNED").exists()


def test_other_bad_options(run, tmp_path):
    for args, message in (
        (["--out", tmp_path / "o.txt"], "must end in .parquet or .csv"),
        (["--band", "1.5"], "--band must lie in (0, 1)"),
        (["--t-max", "-1"], "--t-max must be in"),
        (["--times", "1"], "--times must be in"),
    ):
        res = _predict(run, "--potential", "sho", "--ic", "0.5,1", *args)
        assert res.exit_code == 2 and message in res.stderr, res.output
    res = _predict(tmp_path / "nope", "--potential", "sho", "--ic", "0.5,1", "--out", tmp_path / "o.csv")
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_read_potential_file_refuses_a_foreign_file(tmp_path):
    bad = tmp_path / "v.parquet"
    bad.write_text("not parquet")
    with pytest.raises(NHError, match="not a readable Parquet file"):
        read_potential_file(bad)


def test_a_long_formula_is_not_mistaken_for_a_file():
    text = "0.6" + "0" * 300 + "*q"  # 305 characters: longer than a file name may be
    np.testing.assert_allclose(resolve_potential(text).V, 0.6 * SENSORS, atol=1e-12)
