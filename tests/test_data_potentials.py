"""GRF sampling, B-spline potentials, initial conditions and times (SPEC sections 2, 3, 5)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.interpolate as si

from nh_data.grf import grf_sample, se_kernel
from nh_data.initial import STRATA, sample_initial, sample_times
from nh_data.random_potentials import (
    HEADROOM,
    SENSORS,
    V0,
    potential_rejections,
    sample_potentials,
    stratified_abscissae,
)
from nh_data.spline import V_batch, clamped_knots, pack_params, spline_dV, spline_V


def test_grf_samples_match_kernel_covariance():
    rng = np.random.default_rng(0)
    M, b = 40_000, 5
    x = np.broadcast_to(np.array([0.1, 0.3, 0.45, 0.7, 0.9]), (M, b))
    l = np.full(M, 0.15)
    g = grf_sample(x, l, rng.standard_normal((M, b)))  # (M, b)
    emp = g.T @ g / M
    K = se_kernel(x[:1], l[:1])[0]
    # standard error of a covariance estimate is <= sqrt(2 / M) ~ 0.007
    assert np.abs(emp - K).max() < 0.03
    assert np.abs(g.mean(axis=0)).max() < 0.03


def test_se_kernel_values():
    K = se_kernel(np.array([[0.0, 0.1]]), np.array([0.1]))[0]
    assert K[0, 0] == 1.0 and np.isclose(K[0, 1], np.exp(-0.5))


@pytest.mark.parametrize("b", [2, 3, 5, 7])
def test_bspline_evaluation_matches_scipy(b):
    rng = np.random.default_rng(b)
    x = np.r_[0.0, np.sort(rng.uniform(0.05, 0.95, b)), 1.0]
    c = np.r_[V0, rng.uniform(-1.5, 1.9, b), V0]
    t = clamped_knots(x)
    assert t.shape == (b + 6,) and np.all(t[:4] == 0) and np.all(t[-4:] == 1)
    ref = si.BSpline(t, c, 3)  # extrapolate=True, as the schema promises
    q = np.linspace(-0.3, 1.3, 2001)  # inside and outside [0, 1]
    assert np.abs(spline_V(q, t, c) - ref(q)).max() < 1e-12
    assert np.abs(spline_dV(q, t, c) - ref.derivative()(q)).max() < 1e-11


def test_pack_params_rejects_bad_shapes():
    with pytest.raises(ValueError):
        pack_params(np.zeros(5), np.zeros(3))


def test_potentials_follow_spec():
    pots = sample_potentials(np.random.default_rng(1), 300)
    assert set(np.unique(pots.b)) == {2, 3, 4, 5, 6, 7}
    assert np.all((pots.l >= 0.01) & (pots.l <= 0.2))
    assert np.all((pots.depth >= 0.5) & (pots.depth <= 3.5))
    q = np.linspace(0.0, 1.0, 4001)
    Vq = V_batch(q, pots.params)  # (M, 4001)
    assert np.all(Vq <= V0 + 1e-12)  # convex hull: confined below the walls
    assert np.allclose(Vq[:, 0], V0, atol=1e-12) and np.allclose(Vq[:, -1], V0, atol=1e-12)
    for i in range(len(pots)):
        t, c, b = pots.knots[i], pots.coeffs[i], pots.b[i]
        assert t.shape == (b + 6,) and c.shape == (b + 2,)
        assert c[0] == V0 and c[-1] == V0
        inner = c[1:-1]  # v1.33 scaling: min-max mapped to [V0 - D, V0 - 0.1]
        assert np.isclose(inner.min(), V0 - pots.depth[i]) and np.isclose(inner.max(), V0 - HEADROOM)
        assert np.all(np.diff(np.unique(t)) >= 0.025 - 1e-12)  # knots kept apart (no near-kinks)
        ref = si.BSpline(t, c, 3)
        assert np.abs(ref(SENSORS) - pots.V[i]).max() < 1e-12
        assert np.abs(ref(q) - Vq[i]).max() < 1e-12
    assert np.all(potential_rejections(pots) == 0)


def test_stratified_abscissae_stay_in_their_strata():
    for b in range(2, 8):
        u = np.array([[0.0] * b, [np.nextafter(1.0, 0.0)] * b])
        x = stratified_abscissae(u, b)
        assert x[0, 0] >= 0.05 - 1e-15 and x[1, -1] <= 0.95 + 1e-15
        for j in range(b):
            assert j / b <= x[0, j] and x[1, j] <= (j + 1) / b
        assert np.all(x[0, 1:] - x[1, :-1] >= 0.025 - 1e-12)  # neighbours 0.025 apart at worst


def test_potential_rejection_codes():
    pots = sample_potentials(np.random.default_rng(2), 3)
    pots.V[1, 5] = 11.0
    pots.V[2, 0] = np.nan
    assert potential_rejections(pots).tolist() == [0, 2, 1]


def test_sampling_is_deterministic():
    a = sample_potentials(np.random.default_rng(5), 20)
    b = sample_potentials(np.random.default_rng(5), 20)
    assert np.array_equal(a.params, b.params) and np.array_equal(a.V, b.V)


def test_strata_initial_conditions():
    rng = np.random.default_rng(3)
    pots = sample_potentials(rng, 50)
    orb = sample_initial(rng, pots.params, "strata")
    assert orb.q0.shape == (200,) and np.array_equal(orb.pot, np.repeat(np.arange(50), 4))
    k = np.tile(np.arange(4), 50)
    assert np.all((orb.u >= STRATA[k, 0]) & (orb.u < STRATA[k, 1]))
    Vq = np.array([spline_V(orb.q0[i], pots.knots[orb.pot[i]], pots.coeffs[orb.pot[i]]) for i in range(200)])
    assert np.all(V0 - Vq >= 1e-3)
    assert np.allclose(orb.E0, Vq + orb.u * (V0 - Vq), atol=1e-14)
    assert np.allclose(0.5 * orb.p0**2 + Vq, orb.E0, atol=1e-13)
    assert (orb.p0 > 0).any() and (orb.p0 < 0).any()


def test_wall_initial_conditions():
    pots = sample_potentials(np.random.default_rng(4), 5)
    orb = sample_initial(np.random.default_rng(0), pots.params, "wall")
    assert np.all(orb.q0 == 0) and np.all(orb.p0 == 0) and np.all(orb.E0 == V0)


def test_times():
    t = sample_times(np.random.default_rng(0), 7, "random")
    assert t.shape == (7, 100)
    assert np.all(t[:, 0] == 0) and np.all(t[:, -1] == 2) and np.all(np.diff(t, axis=1) >= 0)
    assert np.array_equal(sample_times(None, 3, "uniform")[1], np.linspace(0, 2, 100))
