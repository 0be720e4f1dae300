"""The evaluation machinery judged on cases with known answers.

An oracle model (a converged integrator on the sensor interpolant) must score
near zero on every metric on harmonic data (the interpolant is exact there);
its chained long-time prediction must equal direct integration; integrator
curves must fall at their orders; det J must be 1 for area-preserving maps and
not for others.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import CubicSpline
from synthetic import write_synthetic_dataset

from nh_data.problem import SENSORS
from nh_models.evaluation import (
    WALL,
    Candidate,
    EvalSettings,
    TestSplit,
    autograd_jacobian_det,
    candidate_jacobian_det,
    chain,
    energy_error,
    equal_cost,
    evaluate_candidates,
    fit_order,
    float64_predictor,
    integrator_predictor,
    integrator_work_precision,
    jacobian_det,
    load_physics_cases,
    load_test,
    orbit_errors,
    stratum_labels,
    summarize,
    write_outputs,
)
from nh_models.evaluation.metrics import paired_comparison
from nh_models.evaluation.oracle import (
    OracleModel,
    integrator_native,
    integrator_predict,
    sensor_dV,
    sensor_spline,
    sensor_V,
)


@pytest.fixture(scope="module")
def harmonic(tmp_path_factory):
    """A synthetic dataset of exact harmonic orbits (the interpolant of a parabola is exact)."""
    d = tmp_path_factory.mktemp("harmonic")
    write_synthetic_dataset(d, n_train=8, n_val=8, n_test=160, seed=3)
    return d


@pytest.fixture(scope="module")
def sho_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("physics")
    return load_physics_cases(d, ["sho"], progress=False)


def _sho_exact(t, q0, p0, w=4.0):
    x0 = q0 - 0.5
    return 0.5 + x0 * np.cos(w * t) + p0 / w * np.sin(w * t), -x0 * w * np.sin(w * t) + p0 * np.cos(w * t)


# ---------------------------------------------------------------- the sensor interpolant


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_sensor_spline_equals_scipy_not_a_knot(seed):
    V = np.random.default_rng(seed).normal(size=(3, 100)) * 3.0
    ref = CubicSpline(SENSORS, V, axis=1, bc_type="not-a-knot")
    params = sensor_spline(V)
    q = np.random.default_rng(seed + 1).uniform(0, 1, 50)
    for b in range(3):
        got_V = np.array([sensor_V(x, params[b]) for x in q])
        got_dV = np.array([sensor_dV(x, params[b]) for x in q])
        scale = np.abs(V[b]).max() * 99**2
        np.testing.assert_allclose(got_V, ref(q)[b], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(got_dV, ref(q, 1)[b], rtol=0, atol=1e-12 * scale)


def test_sensor_spline_reproduces_cubics_and_nan():
    a, b, c, d = 1.5, -2.0, 0.7, 0.3
    params = sensor_spline(a * SENSORS**3 + b * SENSORS**2 + c * SENSORS + d)
    for x in (0.0, 0.013, 0.5, 0.987, 1.0):
        assert sensor_V(x, params) == pytest.approx(a * x**3 + b * x**2 + c * x + d, abs=1e-13)
        assert sensor_dV(x, params) == pytest.approx(3 * a * x**2 + 2 * b * x + c, abs=1e-11)
    assert math.isnan(sensor_dV(float("nan"), params))


# ---------------------------------------------------------------- per-orbit errors and strata


def test_orbit_errors_and_strata():
    q = np.array([[1.0, 1.0], [0.0, 2.0]])
    p = np.zeros((2, 2))
    err = orbit_errors(q + np.array([[0.1, 0.3], [0.0, 0.0]]), p, q, p)
    np.testing.assert_allclose(err["mse_q"], [(0.01 + 0.09) / 2, 0.0])
    np.testing.assert_allclose(err["loss"], [0.025, 0.0])
    np.testing.assert_allclose(err["rel_l2"], [math.sqrt(0.1) / math.sqrt(2), 0.0])
    u = np.array([0.1, 0.5, 0.7, 0.97, 1.0, np.nan, 0.01])
    assert list(stratum_labels(u)) == [
        "[0.05,0.35)",
        "[0.35,0.65)",
        "[0.65,0.95)",
        "[0.95,0.99)",
        WALL,
        WALL,
        "other",
    ]
    s = summarize({k: np.arange(7.0) for k in ("mse_q", "mse_p", "loss", "rel_l2")}, u)
    assert s["overall"]["n"] == 7 and s["overall"]["loss"] == 3.0
    assert s["strata"][WALL] == pytest.approx(
        {"n": 2, "mse_q": 4.5, "mse_p": 4.5, "loss": 4.5, "rel_l2": 4.5, "loss_median": 4.5}
    )


def test_paired_comparison_of_per_orbit_losses():
    theirs = np.random.default_rng(0).lognormal(0.0, 1.0, 500)
    exact = paired_comparison(2.0 * theirs, theirs)  # the same orbits, twice the loss everywhere
    assert exact["model_wins"] == 0.0 and exact["model_wins_se"] == 0.0
    assert exact["mean_ratio"] == pytest.approx(2.0)
    assert exact["mean_ratio_lo"] == pytest.approx(2.0) and exact["mean_ratio_hi"] == pytest.approx(2.0)
    # better on 499 orbits of 500, but one orbit carries the mean: the interval says so
    mine = 0.5 * np.ones(500)
    mine[7] = 2000.0
    tail = paired_comparison(mine, np.ones(500))
    assert tail["model_wins"] == pytest.approx(0.998) and tail["mean_ratio"] == pytest.approx(4.499)
    assert tail["mean_ratio_lo"] < 1.0 < tail["mean_ratio_hi"]
    assert tail == paired_comparison(mine, np.ones(500))  # seeded: the same interval each time
    assert "mean_ratio" not in paired_comparison(np.array([np.inf, 1.0]), np.ones(2))
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_comparison(np.ones(3), np.ones(4))


def test_paired_bootstrap_interval_covers_the_ratio_of_population_means():
    rng = np.random.default_rng(5)
    hits = 0
    for k in range(100):  # lognormal losses, population means in the ratio 1.5
        r = paired_comparison(1.5 * rng.lognormal(0.0, 1.0, 400), rng.lognormal(0.0, 1.0, 400), boots=400, seed=k)
        hits += r["mean_ratio_lo"] <= 1.5 <= r["mean_ratio_hi"]
    assert 88 <= hits <= 100  # 95 % nominal; 88 is 3.2 standard errors below


# ---------------------------------------------------------------- the oracle


def test_oracle_scores_near_zero_on_every_metric(harmonic, sho_case, tmp_path):
    test = load_test(harmonic)
    assert test.V.shape == (160, 100) and test.q.shape == (160, 100)
    oracle = Candidate.from_model("oracle", OracleModel())
    s = EvalSettings(n_sub=64, n_detj=16, repeats=1, dts=(0.1, 0.05, 0.02), t_long=6.0)
    metrics, curves = evaluate_candidates([oracle], test, sho_case, s, progress=False)
    r = metrics["runs"]["oracle"]
    assert r["test"]["overall"]["n"] == 160
    assert r["test"]["overall"]["loss"] < 1e-20
    assert r["test"]["overall"]["rel_l2"] < 1e-9
    assert sum(v["n"] for v in r["test"]["strata"].values()) == 160
    assert all(v["loss"] < 1e-20 for v in r["test"]["strata"].values())
    assert r["energy"]["mean_max_abs_dH"] < 1e-9
    assert r["detJ"]["max_abs_detJ_minus_1"] < 1e-7
    assert r["work_precision"]["loss"] < 1e-20
    assert r["physics"]["sho"]["loss"] < 1e-20
    assert r["physics"]["sho"]["max_abs_dH"] < 1e-9
    assert r["physics"]["sho"]["long_time_err_max"] < 1e-9
    assert r["physics"]["sho"]["long_time_dH_max"] < 1e-9  # energy along the chained windows
    leap = metrics["integrators"]["physics"]["sho"]["leapfrog"]  # straight through, t_long = 6
    assert 1e-6 < leap["long_time_dH_max"] < 0.1 and leap["long_time_err_max"] >= leap["long_time_err_end"]
    # the baselines are judged by the same code and are visibly worse at their dt
    assert metrics["integrators"]["physics"]["sho"]["leapfrog"]["loss"] > 1e-8
    assert metrics["integrators"]["test"]["rk4"]["detJ"]["max_abs_detJ_minus_1"] > 1e-9
    # the outputs: JSON without NaN, a report with the comparison table, the plots
    report = write_outputs(metrics, curves, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["runs"]["oracle"]["test"]["overall"]["n"] == 160
    text = report.read_text()
    assert "| oracle |" in text and "## Work-precision" in text and "oracle: max err, max abs(dH)" in text
    tables = [[line for line in block.splitlines() if line.startswith("|")] for block in text.split("\n\n")]
    for rows in (t for t in tables if t):
        assert len({row.count("|") for row in rows}) == 1, rows[0]  # no cell text breaks a table
    for name in (
        "physics_sho.png",
        "physics_error.png",
        "work_precision.png",
        "energy_drift.png",
        "long_time.png",
        "long_time_energy.png",
        "strata.png",
    ):
        assert (tmp_path / name).stat().st_size > 10_000, name
        assert f"({name})" in text


def test_chained_oracle_equals_direct_integration(sho_case):
    case = sho_case[0]
    ic = np.array([[0.2, 1.1], [case.q_ref[0], case.p_ref[0]]])
    V = np.stack([case.V, case.V])
    oracle = OracleModel({"method": "yoshida8", "dt": 1e-3})
    predict = Candidate.from_model("oracle", oracle).predict
    t, q, p = chain(predict, V, ic, n_windows=10, window=2.0)
    assert t.shape == (991,) and t[-1] == pytest.approx(20.0) and np.all(np.diff(t) > 0)
    q_direct, p_direct = integrator_predict(V, t[None].repeat(2, 0), ic, "yoshida8", 1e-3)
    np.testing.assert_allclose(q, q_direct, rtol=0, atol=1e-11)
    np.testing.assert_allclose(p, p_direct, rtol=0, atol=1e-11)
    q_exact, p_exact = _sho_exact(t, ic[:, :1], ic[:, 1:])
    np.testing.assert_allclose(q, q_exact, rtol=0, atol=1e-10)
    np.testing.assert_allclose(p, p_exact, rtol=0, atol=1e-10)


def test_chain_feeds_the_end_state_forward():
    """A predictor that shifts q by 1 per window: chaining accumulates exactly k shifts."""

    def shift(V, t, ic):
        return ic[:, :1] + t / 2.0, np.broadcast_to(ic[:, 1:], t.shape).copy()

    t, q, p = chain(shift, np.zeros((1, 100)), np.array([[0.0, 3.0]]), n_windows=4, window=2.0, W=5)
    np.testing.assert_allclose(q[0], t / 2.0, atol=1e-15)
    assert np.all(p == 3.0)


# ---------------------------------------------------------------- work-precision


def test_integrator_curves_fall_at_their_orders(harmonic):
    test = load_test(harmonic, max_orbits=48)
    dts = (0.1, 0.05, 0.025, 0.0125)
    wp = integrator_work_precision(test.V, test.t, test.ic, test.q, test.p, dts=dts, repeats=1)
    for method, order in (("leapfrog", 2), ("rk4", 4), ("yoshida4", 4)):
        rows = wp[method]
        assert [r["dt"] for r in rows] == sorted(dts, reverse=True)
        assert [r["steps"] for r in rows] == [20, 40, 80, 160]
        # loss is a mean square: error ~ dt^order -> loss ~ dt^(2 order)
        slope = fit_order(np.array([r["dt"] for r in rows]), np.sqrt([r["loss"] for r in rows]))
        assert abs(slope - order) < 0.25, (method, slope)
        assert all(r["time_per_traj_s"] > 0 for r in rows)


def test_native_grid_matches_landing_integration_at_grid_times(harmonic):
    """At times on the native grid the Hermite output is the integrator's own state."""
    test = load_test(harmonic, max_orbits=4)
    t = np.broadcast_to(np.linspace(0, 2, 21), (4, 21))
    for method in ("rk4", "leapfrog"):
        q1, p1 = integrator_native(test.V, t, test.ic, method, 0.1)
        q2, p2 = integrator_predict(test.V, t, test.ic, method, 0.1)
        np.testing.assert_allclose(q1, q2, atol=1e-13)
        np.testing.assert_allclose(p1, p2, atol=1e-13)


def test_equal_cost_on_an_ideal_rk4_curve():
    """Cost ~ 1/dt and loss ~ dt^8: the interpolation recovers both exactly in log-log."""
    rows = [{"dt": dt, "time_per_traj_s": 1e-7 / dt, "loss": dt**8} for dt in (0.1, 0.05, 0.02, 0.01)]
    eq = equal_cost(rows, 1e-7 / 0.03)
    assert eq["dt"] == pytest.approx(0.03, rel=1e-12)
    assert eq["loss"] == pytest.approx(0.03**8, rel=1e-9)
    assert not eq["extrapolated"]
    cheap = equal_cost(rows, 1e-7 / 0.2)  # cheaper than RK4's largest step
    assert cheap["extrapolated"] and cheap["dt"] == pytest.approx(0.2, rel=1e-12)
    assert cheap["loss"] == pytest.approx(0.2**8, rel=1e-9)
    dear = equal_cost(rows, 1e-7 / 0.001)  # dearer than the smallest: error stays at its last value
    assert (
        dear["extrapolated"] and dear["dt"] == pytest.approx(0.001) and dear["loss"] == pytest.approx(0.01**8)
    )


# ---------------------------------------------------------------- energy and area preservation


def test_energy_error_of_exact_and_perturbed_orbits(harmonic):
    test = load_test(harmonic, max_orbits=16)
    assert energy_error(test.V, test.q, test.p, test.ic).max() < 1e-12
    assert energy_error(test.V, test.q, test.p * 1.01, test.ic).max() > 1e-4


def test_det_j_is_one_for_oracle_and_yoshida_not_for_rk4_or_a_damped_map(sho_case):
    case = sho_case[0]
    rng = np.random.default_rng(0)
    q0 = rng.uniform(0.2, 0.8, 6)
    ic = np.stack([np.r_[q0, 0.0, 1.0], np.r_[rng.uniform(-1, 1, 6), 0.0, 0.5]], axis=1)  # incl. both walls
    V = np.repeat(case.V[None], len(ic), 0)
    t = np.repeat(np.linspace(0, 2, 50)[None], len(ic), 0)
    oracle = Candidate.from_model("oracle", OracleModel()).predict
    for predict in (oracle, integrator_predictor("yoshida4", 0.02, native=False)):
        det = jacobian_det(predict, V, t, ic, eps=1e-5)
        assert np.abs(det - 1).max() < 1e-8
    det_rk4 = jacobian_det(integrator_predictor("rk4", 0.1, native=False), V, t, ic, eps=1e-5)
    assert np.abs(det_rk4 - 1).max() > 1e-5

    def damped(V, t, ic):  # q, p shrink by exp(-t / 2) each: det J = exp(-t)
        q, p = integrator_predict(V, t, ic, "yoshida8", 1e-2)
        return 0.5 + (q - 0.5) * np.exp(-t / 2), p * np.exp(-t / 2)

    det_damped = jacobian_det(damped, V, t, ic, eps=1e-5)
    np.testing.assert_allclose(det_damped, np.exp(-t), atol=1e-7)


class _RotationNet(torch.nn.Module):
    """A float32 'network' whose flow is an exact rotation about (0.5, 0): det J = 1 exactly."""

    name = "rotation"

    def __init__(self):
        super().__init__()
        self.omega = torch.nn.Parameter(torch.tensor(3.0))  # float32

    def forward(self, V, t, ic):
        x0, p0 = ic[:, :1] - 0.5, ic[:, 1:]  # (B, 1)
        c, s = torch.cos(self.omega * t), torch.sin(self.omega * t)  # (B, W)
        return 0.5 + x0 * c + p0 / self.omega * s, -x0 * self.omega * s + p0 * c


def test_det_j_of_a_float32_network_is_resolved_in_float64():
    net = _RotationNet()
    cand = Candidate.from_model("rotation", net)
    V = np.zeros((5, 100))
    t = np.repeat(np.linspace(0, 2, 20)[None], 5, 0)
    ic = np.stack([np.linspace(0.1, 0.9, 5), np.linspace(-1, 1, 5)], axis=1)
    det32 = jacobian_det(cand.predict, V, t, ic, eps=1e-6)
    assert np.abs(det32 - 1).max() > 1e-3  # float32 round-off swamps a 1e-6 step
    det64 = jacobian_det(float64_predictor(cand, "cpu", 64), V, t, ic, eps=1e-6)
    assert np.abs(det64 - 1).max() < 1e-8
    assert net.omega.dtype == torch.float32  # the evaluated network itself is untouched


def test_autograd_det_j_is_exact_where_finite_differences_are_not(monkeypatch):
    net = _RotationNet()
    V = np.zeros((5, 100))
    t = np.repeat(np.linspace(0, 2, 20)[None], 5, 0)
    ic = np.stack([np.linspace(0.1, 0.9, 5), np.linspace(-1, 1, 5)], axis=1)
    det = autograd_jacobian_det(net, V, t, ic, batch_size=2)  # batches of 2, 2 and 1 orbits
    assert det.shape == (5, 20) and np.abs(det - 1).max() < 1e-13
    assert net.omega.dtype == torch.float32  # a float64 copy was differentiated

    class Damped(torch.nn.Module):  # q - 0.5 and p shrink by exp(-t / 2): det J = exp(-t)
        def forward(self, V, t, ic):
            return 0.5 + (ic[:, :1] - 0.5) * torch.exp(-t / 2), ic[:, 1:] * torch.exp(-t / 2)

    np.testing.assert_allclose(autograd_jacobian_det(Damped(), V, t, ic), np.exp(-t), rtol=1e-14)

    # the same numbers in reverse mode (a network with an operation forward mode lacks) ...
    def no_jvp(*a, **k):
        raise NotImplementedError("no forward AD rule")

    monkeypatch.setattr(torch.func, "jvp", no_jvp)
    np.testing.assert_allclose(autograd_jacobian_det(Damped(), V, t, ic), np.exp(-t), rtol=1e-14)
    assert np.abs(autograd_jacobian_det(net, V, t, ic) - 1).max() < 1e-13
    # ... and with one backward pass per query time (a network vmap cannot batch)
    grad = torch.autograd.grad

    def no_vmap(*a, **k):
        if k.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return grad(*a, **k)

    # a module computing outside torch has no gradient: None (nh eval then uses finite differences)
    assert autograd_jacobian_det(OracleModel(), V, t, ic) is None
    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    np.testing.assert_allclose(autograd_jacobian_det(Damped(), V, t, ic), np.exp(-t), rtol=1e-14)


def test_det_j_falls_back_to_finite_differences_where_a_network_is_not_differentiable():
    class Kinked(torch.nn.Module):  # a rotation whose rate has sqrt|q0 - 0.3|: no derivative at q0 = 0.3
        def forward(self, V, t, ic):
            w = 3.0 + (ic[:, :1] - 0.3).abs().sqrt()
            x0, p0 = ic[:, :1] - 0.5, ic[:, 1:]
            return 0.5 + x0 * torch.cos(w * t), p0 * torch.cos(w * t)

    net = Kinked()
    V = np.zeros((3, 100))
    t = np.repeat(np.linspace(0, 2, 10)[None], 3, 0)
    ic = np.array([[0.3, 0.2], [0.6, 0.1], [0.8, -0.4]])
    assert not np.isfinite(autograd_jacobian_det(net, V, t, ic)[0, 1:]).any()
    fd = float64_predictor(Candidate.from_model("kinked", net), "cpu", 64)
    det, info = candidate_jacobian_det(net, fd, V, t, ic, eps=1e-6)
    assert np.isfinite(det).all() and info == {"method": "autograd", "finite_difference_orbits": 1, "eps": 1e-6}
    np.testing.assert_array_equal(det[1:], autograd_jacobian_det(net, V[1:], t[1:], ic[1:]))
    np.testing.assert_array_equal(det[:1], jacobian_det(fd, V[:1], t[:1], ic[:1], eps=1e-6))
    # a predictor without a network: finite differences throughout
    det, info = candidate_jacobian_det(None, fd, V, t, ic, eps=1e-6)
    assert info == {"method": "finite differences", "eps": 1e-6} and np.isfinite(det).all()


def test_streamed_test_split_equals_the_loaded_one(harmonic):
    split = TestSplit(harmonic, max_orbits=50, seed=1)
    full = load_test(harmonic, max_orbits=50, seed=1)
    parts = list(split.batches(16))
    assert [len(b.u) for b in parts] == [16, 16, 16, 2]
    for name in ("V", "t", "ic", "q", "p", "u"):
        np.testing.assert_array_equal(np.concatenate([getattr(b, name) for b in parts]), getattr(full, name))
    assert not np.array_equal(load_test(harmonic, max_orbits=50, seed=2).u, full.u)
    everything = load_test(harmonic)
    assert len(everything.u) == 160 and set(np.round(full.u, 15)) <= set(np.round(everything.u, 15))
