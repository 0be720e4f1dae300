"""Reference orbits: closed forms (sho, mff, atw) and an independent SciPy integrator, to 1e-10."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from nh_data.errors import NHError
from nh_data.physics import POTENTIALS, reference, reference_numeric

TOL = 1e-10
NUMERIC = ["quartic", "morse", "smff", "unbounded", "pendulum"]


# ---------------------------------------------------------------- closed forms (SPEC section 7)


def sho_closed_form(t):
    return 0.5 - 0.5 * np.cos(4 * t), 2 * np.sin(4 * t)


def mff_closed_form(t):
    """SPEC's three pieces, extended with period 2."""
    t = np.mod(t, 2.0)
    q = np.where(t < 0.5, 2 * t**2, np.where(t < 1.5, -2 * t**2 + 4 * t - 1, 2 * (2 - t) ** 2))
    p = np.where(t < 0.5, 4 * t, np.where(t < 1.5, 4 - 4 * t, -4 * (2 - t)))
    return q, p


def atw_closed_form(t):
    """From rest at q = 0: accelerate at 8 to the kink (t = 1/4), decelerate at 8/3 to q = 1 (t = 1)."""
    t = np.mod(t, 2.0)
    s = t - 0.25
    q = np.where(t < 0.25, 4 * t**2, np.where(t < 1.75, 0.25 + 2 * s - 4 / 3 * s**2, 4 * (2 - t) ** 2))
    p = np.where(t < 0.25, 8 * t, np.where(t < 1.75, 2 - 8 / 3 * s, -8 * (2 - t)))
    return q, p


T_PIECES = np.array([0.0, 0.1, 0.25, 0.49, 0.5, 0.51, 0.75, 1.0, 1.3, 1.49, 1.5, 1.51, 1.75, 1.9, 2.0])


@pytest.mark.parametrize(
    "name, closed",
    [("sho", sho_closed_form), ("mff", mff_closed_form), ("atw", atw_closed_form)],
)
def test_reference_matches_closed_form(name, closed):
    t = np.unique(np.concatenate([T_PIECES, np.linspace(0, 2, 100), np.linspace(2, 20, 301)]))
    q, p = reference(name, t)
    q_ex, p_ex = closed(t)
    np.testing.assert_allclose(q, q_ex, rtol=0, atol=TOL)
    np.testing.assert_allclose(p, p_ex, rtol=0, atol=TOL)
    # and the points where SPEC's pieces join, one by one
    assert reference(name, [0.5])[0][0] == pytest.approx(closed(np.array([0.5]))[0][0], abs=TOL)


@pytest.mark.parametrize("name", ["mff", "atw"])
def test_kink_aware_composition_is_exact_on_piecewise_linear_potentials(name):
    """The numeric kernel (Newton-located kink crossings) against the exact event-driven one."""
    t = np.linspace(0, 6, 301)
    q, p = reference(name, t)
    qn, pn = reference_numeric(name, t, dt=0.01)  # constant force per piece: exact at any step
    np.testing.assert_allclose(qn, q, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pn, p, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- independent integrator (SciPy)


def scipy_orbit(name, t, q0=0.0, p0=0.0):
    """DOP853 (rtol 1e-13, atol 1e-14) on each piece's force, restarted at every kink crossing."""
    pot = POTENTIALS[name]
    kinks = list(pot.kinks)
    j = int(np.searchsorted(kinks, q0, side="right" if p0 > 0 else "left"))
    t0, y0 = 0.0, np.array([q0, p0])
    q_out, p_out = np.empty_like(t), np.empty_like(t)
    done = 0
    while done < len(t):
        events = []
        if j > 0:  # leave through the lower kink, moving left
            ev_lo = lambda _t, y, k=kinks[j - 1]: y[0] - k  # noqa: E731
            ev_lo.terminal, ev_lo.direction = True, -1
            events.append(ev_lo)
        if j < len(kinks):  # leave through the upper kink, moving right
            ev_hi = lambda _t, y, k=kinks[j]: y[0] - k  # noqa: E731
            ev_hi.terminal, ev_hi.direction = True, 1
            events.append(ev_hi)

        def rhs(_t, y, j=j):
            return [y[1], -pot.dV_branch(float(y[0]), pot.params, j)]

        t_eval = t[(t >= t0)]
        sol = solve_ivp(
            rhs,
            (t0, t[-1]),
            y0,
            method="DOP853",
            rtol=1e-13,
            atol=1e-14,
            t_eval=t_eval,
            events=events or None,
        )
        assert sol.success
        n = sol.t.shape[0]
        q_out[done : done + n], p_out[done : done + n] = sol.y
        done += n
        if sol.status == 1:  # stopped on a kink: restart on the other side
            hit = [k for k, te in enumerate(sol.t_events) if len(te)][0]
            up = events[hit].direction > 0
            t0 = sol.t_events[hit][0]
            y0 = np.array([kinks[j] if up else kinks[j - 1], sol.y_events[hit][0][1]])
            j = j + 1 if up else j - 1
    return q_out, p_out


@pytest.mark.parametrize("name", NUMERIC + ["mff", "atw"])
def test_reference_agrees_with_scipy_dop853(name):
    t = np.linspace(0, 2, 100)
    q, p = reference(name, t)
    qs, ps = scipy_orbit(name, t)
    np.testing.assert_allclose(q, qs, rtol=0, atol=TOL)
    np.testing.assert_allclose(p, ps, rtol=0, atol=TOL)


@pytest.mark.parametrize("name, q0, p0", [("unbounded", 0.9, 1.2), ("smff", 0.5, -1.8), ("morse", 0.33, 1.0)])
def test_reference_agrees_with_scipy_from_other_starts(name, q0, p0):
    t = np.linspace(0, 5, 200)
    q, p = reference(name, t, q0, p0)
    qs, ps = scipy_orbit(name, t, q0, p0)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(p))
    np.testing.assert_allclose(q, qs, rtol=0, atol=TOL)
    np.testing.assert_allclose(p, ps, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_reference_is_converged(name):
    """Halving the reference step (and switching to Yoshida 8) moves the orbit by far less than 1e-10."""
    from nh_data.integrators import YOSHIDA8

    t = np.linspace(0, 2, 100)
    q, p = reference(name, t)
    qh, ph = reference_numeric(name, t, dt=5e-4, weights=YOSHIDA8.weights)
    assert np.max(np.abs(q - qh)) < 1e-11
    assert np.max(np.abs(p - ph)) < 1e-11


def test_unbounded_reference_needs_its_kink_handling():
    """Without landing on q = 0.5 the same scheme loses accuracy: the event location matters."""
    t = np.linspace(0, 2, 100)
    q, p = reference("unbounded", t)
    pot = POTENTIALS["unbounded"]
    from nh_data.integrators import integrate

    qb, pb = integrate(pot.dV, pot.params, 0.0, 0.0, t, 0.02, "kahanli8")  # steps straddle the kink
    qk, pk = reference_numeric("unbounded", t, dt=0.02)  # same step, crossings located
    assert np.max(np.abs(qk - q)) < 0.1 * np.max(np.abs(qb - q))


# ---------------------------------------------------------------- any start: hypothesis


def _start(name: str, q0: float, u: float, sign: bool) -> tuple[float, float]:
    """A start at q0 with kinetic energy a fraction u of what the walls allow."""
    pot = POTENTIALS[name]
    p0 = np.sqrt(2 * u * max(2.0 - pot.V(q0, pot.params), 0.0))  # V(0) of quartic rounds to 2 + 4e-16
    return q0, float(p0 if sign else -p0)


starts = st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.booleans())


@settings(max_examples=25, deadline=None)
@given(starts)
def test_sho_numeric_kernel_matches_closed_form_from_any_start(s):
    q0, p0 = _start("sho", *s)
    t = np.linspace(0, 3, 31)
    q, p = reference("sho", t, q0, p0)
    qn, pn = reference_numeric("sho", t, q0, p0)
    assert np.max(np.abs(q - qn)) < TOL and np.max(np.abs(p - pn)) < TOL
    assert q[0] == q0 and p[0] == p0


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["mff", "atw"]), starts)
def test_piecewise_exact_vs_kink_aware_composition_from_any_start(name, s):
    """Two independent algorithms agree. The composition kernel locates each crossing from a
    position, to ~ulp(q) / |p| in time, so it needs crossings that are not too slow (|p| >= 0.1
    at the kink here); the exact kernel has no such limit (see the tiny-energy test below)."""
    pot = POTENTIALS[name]
    q0, p0 = _start(name, *s)
    assume(0.5 * p0**2 + pot.V(q0, pot.params) - pot.V(pot.kinks[0], pot.params) >= 0.5 * 0.1**2)
    t = np.linspace(0, 3, 31)
    q, p = reference(name, t, q0, p0)
    qn, pn = reference_numeric(name, t, q0, p0, dt=0.01)
    np.testing.assert_allclose(qn, q, rtol=0, atol=TOL)
    np.testing.assert_allclose(pn, p, rtol=0, atol=TOL)


@pytest.mark.parametrize("v", [0.5, 1e-3, 1e-9, 1e-150])
def test_tiny_energy_orbits_about_the_mff_kink(v):
    """From the kink with speed v: a triangle wave in p of period v (|a| = 4). Thousands to
    10^150 crossings: whole periods are skipped, so this is exact and instant."""
    t = np.linspace(0, 100, 1001)
    q, p = reference("mff", t, 0.5, v)
    s = np.mod(t, v)
    right = s < v / 2
    p_ex = np.where(right, v - 4 * s, -v + 4 * (s - v / 2))
    q_ex = np.where(right, 0.5 + v * s - 2 * s**2, 0.5 - v * (s - v / 2) + 2 * (s - v / 2) ** 2)
    if v < 1e-20:  # period below the time resolution: at rest on the kink
        q_ex, p_ex = np.full_like(t, 0.5), np.zeros_like(t)
    np.testing.assert_allclose(q, q_ex, rtol=0, atol=TOL)
    np.testing.assert_allclose(p, p_ex, rtol=0, atol=max(TOL, 1e-6 * v))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(list(POTENTIALS)), starts)
def test_reference_conserves_energy_and_stays_in_the_box(name, s):
    pot = POTENTIALS[name]
    q0, p0 = _start(name, *s)
    t = np.linspace(0, 4, 41)
    q, p = reference(name, t, q0, p0)
    E0 = 0.5 * p0**2 + pot.V(q0, pot.params)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(p))
    assert np.max(np.abs(pot.energy(q, p) - E0)) < 1e-11
    assert np.all(q >= -1e-9) and np.all(q <= 1 + 1e-9)


@pytest.mark.parametrize("name", ["mff", "atw"])
def test_rest_at_the_bottom_kink_stays_put(name):
    kink = POTENTIALS[name].kinks[0]
    q, p = reference(name, np.linspace(0, 2, 11), kink, 0.0)
    assert np.all(q == kink) and np.all(p == 0.0)


def test_start_on_a_kink_moving(name="mff"):
    t = np.linspace(0, 2, 50)
    q, p = reference(name, t, 0.5, 1.5)  # E0 = 1.125: turning points at 0.5 +- 0.28125
    assert q[0] == 0.5 and q.max() == pytest.approx(0.5 + 1.125 / 4, abs=1e-3)
    qs, ps = scipy_orbit(name, t, 0.5, 1.5)
    np.testing.assert_allclose(q, qs, rtol=0, atol=TOL)


def test_reference_rejects_bad_times_and_starts():
    with pytest.raises(NHError, match="sorted"):
        reference("sho", [0.0, 1.0, 0.5])
    with pytest.raises(NHError, match="above the walls"):
        reference("quartic", [0.0, 1.0], 0.5, 1.9)


def test_numeric_kernel_refuses_orbits_it_cannot_resolve():
    """About 10^5 crossings per step of 0.01 (mff from its kink at speed 1e-7): a loud error,
    not a silently wrong orbit. (The exact kernel, which mff uses, handles it.)"""
    with pytest.raises(NHError, match="could not resolve the kink crossings"):
        reference_numeric("mff", [0.0, 0.05], 0.5, 1e-7, dt=0.01)
