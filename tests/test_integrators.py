"""Integrators: convergence orders, knot-aware adaptive DOP853, energy behaviour, the 1e-8 certificate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from naive import integrate_fixed, interior_breaks
from numba import njit

from nh_data.adaptive import DOP853, integrate_adaptive
from nh_data.ground_truth import CERT_TOL, certified_orbits
from nh_data.initial import sample_initial, sample_times
from nh_data.integrators import METHODS, integrate
from nh_data.jit_options import JIT
from nh_data.random_potentials import V0, sample_potentials
from nh_data.spline import V_rows, dV_pp


@njit(**JIT)
def dV_sho(q, params):
    """Harmonic oscillator V = w^2 q^2 / 2, params = [w^2]."""
    return params[0] * q


SHO = np.array([1.0])


def sho_exact(t, q0=1.0, p0=0.0):
    return q0 * np.cos(t) + p0 * np.sin(t), -q0 * np.sin(t) + p0 * np.cos(t)


def fitted_order(dts, errs):
    return np.polyfit(np.log(dts), np.log(errs), 1)[0]


# step ranges chosen so that errors stay well above round-off and in the asymptotic regime
ORDER_CASES = {
    "leapfrog": [0.1, 0.05, 0.025, 0.0125],
    "yoshida4": [0.1, 0.05, 0.025, 0.0125],
    "rk4": [0.2, 0.1, 0.05, 0.025],
    "yoshida8": [0.2, 0.1, 0.05],
    "kahanli8": [0.5, 0.25, 0.125],
}


@pytest.mark.parametrize("name", list(METHODS))
def test_convergence_order_on_harmonic_oscillator(name):
    m = METHODS[name]
    t = np.array([0.0, 10.0])
    q_ex, p_ex = sho_exact(t)
    dts = np.array(ORDER_CASES[name])
    errs = []
    for dt in dts:
        q, p = integrate(dV_sho, SHO, 1.0, 0.0, t, dt, name)
        errs.append(max(abs(q[-1] - q_ex[-1]), abs(p[-1] - p_ex[-1])))
    errs = np.array(errs)
    assert errs.min() > 1e-13, "steps too small: round-off would spoil the fit"
    order = fitted_order(dts, errs)
    assert abs(order - m.order) <= 0.1 * m.order + 0.2, (name, order, errs)


def test_dop853_main_formula_is_eighth_order():
    t = np.array([0.0, 10.0])
    q_ex, p_ex = sho_exact(t)
    dts = np.array([0.5, 0.25, 0.125])
    errs = []
    for dt in dts:
        q, p = integrate_fixed(dV_sho, SHO, 1.0, 0.0, t, dt)
        errs.append(max(abs(q[-1] - q_ex[-1]), abs(p[-1] - p_ex[-1])))
    assert abs(fitted_order(dts, np.array(errs)) - 8) <= 0.8


def test_dop853_tableau_checks_itself():
    assert abs(DOP853.b.sum() - 1) < 1e-14
    assert np.allclose(DOP853.a.sum(axis=1), DOP853.c, atol=1e-14)
    # the error weights annihilate constants: sum(e) = 0 for both estimators
    assert abs(DOP853.e5.sum()) < 1e-13 and abs(DOP853.e3.sum()) < 1e-13


@pytest.mark.parametrize("dense", [False, True])
def test_adaptive_output_times_and_tolerance(dense):
    t = np.sort(np.r_[0.0, np.random.default_rng(0).uniform(0, 20, 98), 20.0])
    q_ex, p_ex = sho_exact(t, 0.3, 0.7)
    errs, nfevs = [], []
    for tol in (1e-6, 1e-9, 1e-12):
        q, p, status, nfev = integrate_adaptive(dV_sho, SHO, 0.3, 0.7, t, tol, tol, dense=dense)
        assert status == 0 and q[0] == 0.3 and p[0] == 0.7
        errs.append(max(np.abs(q - q_ex).max(), np.abs(p - p_ex).max()))
        nfevs.append(nfev)
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-10
    if dense:  # steps no longer stop at each of the 100 output times
        _, _, _, nfev_clip = integrate_adaptive(dV_sho, SHO, 0.3, 0.7, t, 1e-12, 1e-12, dense=False)
        assert nfevs[2] < 0.8 * nfev_clip


def test_symplectic_no_secular_drift_rk4_drifts():
    t = np.linspace(0.0, 2000.0, 201)
    H0 = 0.5
    drift = {}
    for name in ("leapfrog", "yoshida4", "rk4"):
        q, p = integrate(dV_sho, SHO, 1.0, 0.0, t, 0.25, name)
        dH = np.abs(0.5 * p**2 + 0.5 * q**2 - H0)
        drift[name] = (dH[1:101].max(), dH[101:].max(), dH[-1])
    for name in ("leapfrog", "yoshida4"):
        first, second, _ = drift[name]
        assert second < 1.5 * first, (
            name,
            drift[name],
        )  # bounded: no growth from the first half to the second
    first, second, last = drift["rk4"]
    assert second > 1.8 * first  # grows about linearly in time
    # linear growth: error at t = 2000 about twice that at t = 1000
    q, p = integrate(dV_sho, SHO, 1.0, 0.0, np.array([0.0, 1000.0]), 0.25, "rk4")
    mid = abs(0.5 * p[-1] ** 2 + 0.5 * q[-1] ** 2 - H0)
    assert 1.7 < last / mid < 2.3


def _spline_batch(seed, n_pot):
    rng = np.random.default_rng(seed)
    pots = sample_potentials(rng, n_pot)
    orb = sample_initial(rng, pots.params, "strata")
    t = sample_times(rng, orb.q0.shape[0], "random")
    return pots, orb, t


def test_certified_orbits_within_1e8_of_independent_reference():
    """The 1e-8 claim: stored orbits vs Kahan-Li 8 at dt = 2e-5 (a different method and code path;
    its own error on these potentials is ~1e-11, from dt = 2e-5 vs 1e-5)."""
    pots, orb, t = _spline_batch(11, 6)
    escale = V0 - pots.V.min(axis=1)
    out = certified_orbits(pots.params, orb.pot, orb.q0, orb.p0, t, orb.E0, escale)
    assert np.all(out["code"] == 0)
    worst = 0.0
    for r in range(orb.q0.shape[0]):
        params = pots.params[orb.pot[r]]
        q, p = integrate(dV_pp, params, orb.q0[r], orb.p0[r], t[r], 2e-5, "kahanli8")
        err = max(np.abs(q - out["q"][r]).max(), np.abs(p - out["p"][r]).max())
        assert err <= CERT_TOL
        assert err <= out["err_est"][r] + 1e-11  # the stored estimate bounds the true error
        worst = max(worst, err)
    assert worst < 1e-9


def test_knot_awareness_restores_accuracy():
    """Without stopping at the knots DOP853's error stalls far above its tolerance; with it, it does not."""
    pots, orb, t = _spline_batch(3, 8)
    plain, aware = [], []
    for r in range(orb.q0.shape[0]):
        params = pots.params[orb.pot[r]]
        ref_q, ref_p = integrate(dV_pp, params, orb.q0[r], orb.p0[r], t[r], 2e-5, "kahanli8")
        for kinks, acc in ((None, plain), (interior_breaks(params), aware)):
            q, p, status, _ = integrate_adaptive(
                dV_pp, params, orb.q0[r], orb.p0[r], t[r], 1e-12, 1e-12, kinks=kinks
            )
            acc.append(max(np.abs(q - ref_q).max(), np.abs(p - ref_p).max()))
    assert max(aware) < 1e-9
    assert max(plain) > 10 * max(aware)


@settings(max_examples=25, deadline=None)
@example(seed=0, q0=1e-15, u=0.0, sign=-1.0)  # at rest next to the wall: the starting step once collapsed
@given(
    seed=st.integers(0, 2**31 - 1),
    q0=st.floats(0.0, 1.0),
    u=st.floats(0.0, 0.99),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_energy_conserved_property(seed, q0, u, sign):
    """Any random potential and any confined initial condition: H stays at E0 along the certified orbit."""
    pots = sample_potentials(np.random.default_rng(seed), 1)
    params = pots.params
    Vq = V_rows(np.array([q0]), params)[0]
    E0 = Vq + u * (V0 - Vq)
    p0 = sign * np.sqrt(max(0.0, 2 * (E0 - Vq)))  # Vq may exceed V0 by round-off at the walls
    t = np.linspace(0.0, 2.0, 100)[None]
    out = certified_orbits(
        params, np.array([0]), np.array([q0]), np.array([p0]), t, np.array([E0]), V0 - pots.V.min(1)
    )
    if out["code"][0] == 0:
        H = 0.5 * out["p"][0] ** 2 + V_rows(out["q"][0], np.repeat(params, 100, axis=0))
        assert np.abs(H - E0).max() < 1e-8
        assert np.all((out["q"][0] >= -1e-9) & (out["q"][0] <= 1 + 1e-9))
    else:  # only the certificate may refuse an orbit here, and then it says so
        assert out["code"][0] == 5
    # the paper's integrator conserves energy to O(dt^8) bounded, even where it is not certified
    q, p = integrate(dV_pp, params[0], q0, p0, t[0], 1e-3, "yoshida8")
    H8 = 0.5 * p**2 + V_rows(q, np.repeat(params, 100, axis=0))
    assert np.abs(H8 - E0).max() < 1e-4 * (V0 - pots.V.min())


def test_paper_way_is_stored_as_is_and_certified_honestly():
    """yoshida8 at dt = 1e-3: the stored orbit is exactly that integration; err_est bounds its true error."""
    pots, orb, t = _spline_batch(21, 5)
    escale = V0 - pots.V.min(axis=1)
    out = certified_orbits(pots.params, orb.pot, orb.q0, orb.p0, t, orb.E0, escale, "yoshida8", 1e-3)
    assert set(out["code"].tolist()) <= {0, 5} and (out["code"] == 0).any() and (out["code"] == 5).any()
    for r in range(orb.q0.shape[0]):
        params = pots.params[orb.pot[r]]
        q8, p8 = integrate(dV_pp, params, orb.q0[r], orb.p0[r], t[r], 1e-3, "yoshida8")
        assert np.array_equal(out["q"][r], q8) and np.array_equal(out["p"][r], p8)
        ref_q, ref_p = integrate(dV_pp, params, orb.q0[r], orb.p0[r], t[r], 2e-5, "kahanli8")
        true = max(np.abs(q8 - ref_q).max(), np.abs(p8 - ref_p).max())
        assert true <= out["err_est"][r] + 1e-11
        assert (out["code"][r] == 0) == (out["err_est"][r] <= CERT_TOL)
