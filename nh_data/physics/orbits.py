"""Reference orbits of the physical test potentials, accurate to 1e-10 in q and p (`reference`).

Closed form for sho, exact parabolas between kink crossings for the piecewise-linear mff
and atw, Kahan-Li 8 at dt = 1e-3 with steps landing on kink crossings for the others;
`nh_data.physics` describes each and the limits of the kink location.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..errors import NHError
from ..integrators import KAHANLI8, composition_step
from ..jit_options import JIT
from .analytic_potentials import PhysicalPotential, _dV_branch_by_id, check_ic, get_potential

REF_WEIGHTS = KAHANLI8.weights  # composition used by the numeric references
REF_DT = 1e-3  # their step (reference error ~1e-13 on [0, 2], see tests/test_physics_reference.py)


# ============================================================ reference kernels


@njit(**JIT)
def _piece_bounds(kinks, j):
    lo = -np.inf if j == 0 else kinks[j - 1]
    hi = np.inf if j == kinks.shape[0] else kinks[j]
    return lo, hi


@njit(**JIT)
def _start_piece(kinks, acc_left, acc_right, q, p):
    """Piece of a state (q, p); on a kink the direction of motion decides.

    Returns (piece, stuck): stuck when q sits at rest on a kink that pulls inward from
    both sides (a V-minimum kink), where the orbit stays put.
    """
    j = 0
    while j < kinks.shape[0] and kinks[j] < q:
        j += 1
    if j == kinks.shape[0] or kinks[j] != q:
        return j, False
    # q == kinks[j]: piece j is on its left, piece j + 1 on its right
    if p > 0.0:
        return j + 1, False
    if p < 0.0:
        return j, False
    if acc_right[j] > 0.0:
        return j + 1, False
    if acc_left[j] < 0.0:
        return j, False
    return j, True


@njit(**JIT)
def _first_hit(d, p, a):
    """Smallest tau > 0 with d + p tau + a tau^2 / 2 = 0 (inf if none); stable roots."""
    best = np.inf
    if a == 0.0:
        if p != 0.0 and -d / p > 0.0:
            best = -d / p
        return best
    disc = p * p - 2.0 * a * d
    if disc < 0.0:
        return best
    s = math.sqrt(disc)
    m = -p - s if p >= 0.0 else -p + s  # the larger-magnitude numerator: no cancellation
    if m == 0.0:
        return best
    r1 = m / a
    r2 = 2.0 * d / m
    if r1 > 0.0:
        best = r1
    if 0.0 < r2 < best:
        best = r2
    return best


@njit(**JIT)
def _kink_period(kinks, acc, k, v):
    """Period of an orbit passing kink k with speed v and trapped around it: kink k a
    V minimum (acc[k] > 0 on its left, acc[k + 1] < 0 on its right) and both turning
    points inside the adjacent pieces. inf when the orbit is not trapped so."""
    a_l = acc[k]
    a_r = acc[k + 1]
    if not (a_l > 0.0 and a_r < 0.0) or v == 0.0:
        return np.inf
    if k + 1 < kinks.shape[0] and kinks[k] + 0.5 * v * v / -a_r >= kinks[k + 1]:
        return np.inf
    if k >= 1 and kinks[k] - 0.5 * v * v / a_l <= kinks[k - 1]:
        return np.inf
    return 2.0 * v / a_l + 2.0 * v / -a_r


@njit(**JIT)
def _piecewise_linear_orbit(kinks, acc, q0, p0, t_out, q_out, p_out):
    """Exact orbit in a piecewise-linear V: constant acceleration acc[j] on piece j.

    Jumps from kink crossing to kink crossing (roots of quadratics), then evaluates the
    parabola of the current piece at each sorted output time; t_out[0] is the start.
    An orbit trapped around a V-minimum kink repeats exactly after one period from a
    crossing: whole periods are skipped, so tiny-energy orbits (periods near zero) cost
    no more than others; one whose period is below the time resolution is at rest.
    """
    nk = kinks.shape[0]
    acc_left = acc[:nk]
    acc_right = acc[1:]
    t = t_out[0]
    q = q0
    p = p0
    j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
    for i in range(t_out.shape[0]):
        target = t_out[i]
        while not stuck:
            lo, hi = _piece_bounds(kinks, j)
            a = acc[j]
            tau_lo = _first_hit(q - lo, p, a) if lo > -np.inf else np.inf
            tau_hi = _first_hit(q - hi, p, a) if hi < np.inf else np.inf
            tau = min(tau_lo, tau_hi)
            if t + tau > target:
                break
            p = p + a * tau
            k = j - 1 if tau_lo <= tau_hi else j  # the kink crossed
            q = kinks[k]
            t = t + tau
            j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
            period = _kink_period(kinks, acc, k, abs(p))
            if period <= 1e-15 * max(abs(target), 1.0):
                stuck = True  # amplitude ~ period^2: indistinguishable from rest at the kink
            elif period < target - t:
                t = t + math.floor((target - t) / period) * period
        s = target - t
        if stuck:
            q_out[i] = q
            p_out[i] = 0.0
        else:
            a = acc[j]
            q_out[i] = q + p * s + 0.5 * a * s * s
            p_out[i] = p + a * s


@njit(**JIT)
def _branch_force(q, branch, params):
    """dV on one piece, as `integrators.composition_step` calls a force: branch = (kernel_id, piece)."""
    pid, piece = branch
    return _dV_branch_by_id(pid, q, params, piece)


_branch_composition = composition_step(_branch_force)  # bound by closure: cached by Numba


@njit(**JIT)
def _branch_step(pid, params, piece, q, p, h, w):
    """One composed leapfrog step (`integrators.composition_step`) on the branch force."""
    return _branch_composition((pid, piece), params, q, p, h, w)


@njit(**JIT)
def _crossing_time(pid, params, piece, q, p, h, w, b, q1):
    """tau in (0, h) with q(tau) = b on the step map of `piece`, given q - b and q1 - b
    (q1 the end of the full step) of opposite signs.

    Secant start, then safeguarded Newton with dq/dtau ~ p(tau), bisection as fallback.
    Returns (tau, q(tau), p(tau)).
    """
    g0 = q - b
    lo = 0.0
    hi = h
    tau = h * g0 / (g0 - (q1 - b))
    if not (0.0 < tau < h):
        tau = 0.5 * h
    qt = q
    pt = p
    for _ in range(100):
        qt, pt = _branch_step(pid, params, piece, q, p, tau, w)
        g = qt - b
        if g == 0.0:
            break
        if (g > 0.0) == (g0 > 0.0):
            lo = tau
        else:
            hi = tau
        tau_new = tau - g / pt if pt != 0.0 else 0.5 * (lo + hi)
        if not (lo < tau_new < hi):
            tau_new = 0.5 * (lo + hi)
        if abs(tau_new - tau) <= 1e-15 * h or hi - lo <= 1e-15 * h:
            tau = tau_new
            qt, pt = _branch_step(pid, params, piece, q, p, tau, w)
            break
        tau = tau_new
    return tau, qt, pt


@njit(**JIT)
def _composition_orbit(pid, params, kinks, q0, p0, t_out, dt, w, q_out, p_out):
    """Reference orbit: composition steps <= dt on the branch force, landing on every kink
    crossing and on every sorted output time (t_out[0] is the start).

    Returns the number of steps whose kink crossings were not all resolved (0 when all went
    well; more only for orbits crossing a kink ~1000 times within one step).
    """
    unresolved = 0
    nk = kinks.shape[0]
    acc_left = np.empty(nk)
    acc_right = np.empty(nk)
    for k in range(nk):
        acc_left[k] = -_dV_branch_by_id(pid, kinks[k], params, k)
        acc_right[k] = -_dV_branch_by_id(pid, kinks[k], params, k + 1)
    q = q0
    p = p0
    j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
    q_out[0] = q
    p_out[0] = p
    for i in range(1, t_out.shape[0]):
        span = t_out[i] - t_out[i - 1]
        n = int(np.ceil(span / dt - 1e-9))
        if stuck or n <= 0:
            q_out[i] = q
            p_out[i] = p
            continue
        h = span / n
        for _ in range(n):
            r = h  # time left in this step
            done = False
            for _guard in range(1000):  # sub-steps between kink crossings within this step
                lo, hi = _piece_bounds(kinks, j)
                r_sub = r
                if (q == lo or q == hi) and p != 0.0:
                    # leaving a kink against the force: the orbit returns after ~2|p/a|; a
                    # sub-step of half that cannot pass the turning point and re-cross unseen
                    a_j = -_dV_branch_by_id(pid, q, params, j)
                    if p * a_j < 0.0:
                        r_sub = min(r, 0.5 * abs(p / a_j))
                full = r_sub >= r
                q1, p1 = _branch_step(pid, params, j, q, p, r_sub, w)
                if lo <= q1 <= hi:
                    q = q1
                    p = p1
                    if full:
                        done = True
                        break
                    r -= r_sub
                    continue
                b = hi if q1 > hi else lo
                if q == b:  # on the kink but heading the other way: switch piece, no time passes
                    j = j + 1 if q1 > hi else j - 1
                    continue
                tau, qt, pt = _crossing_time(pid, params, j, q, p, r_sub, w, b, q1)
                q = b
                p = pt
                r -= tau
                j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
                if stuck or r <= 0.0:
                    done = True
                    break
            if not done:
                unresolved += 1
            if stuck:
                p = 0.0
                break
        q_out[i] = q
        p_out[i] = p
    return unresolved


# ============================================================ public API: reference orbits


def analytic_sho(
    pot: PhysicalPotential, t: np.ndarray, q0: float, p0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form harmonic orbit: omega = sqrt(2 k), any start (q0, p0) at t = 0."""
    k, c = pot.params
    omega = math.sqrt(2.0 * k)
    x0 = q0 - c
    wt = omega * np.asarray(t, dtype=np.float64)
    q = c + x0 * np.cos(wt) + p0 / omega * np.sin(wt)
    p = -x0 * omega * np.sin(wt) + p0 * np.cos(wt)
    at0 = wt == 0.0  # the start itself, bit for bit (c + (q0 - c) need not round to q0)
    return np.where(at0, q0, q), np.where(at0, p0, p)


def _branch_accelerations(pot: PhysicalPotential) -> np.ndarray:
    """-V' on every piece of a piecewise-linear potential, (n_kinks + 1,)."""
    edges = [-1.0, *pot.kinks, 2.0]
    return np.array(
        [-pot.dV_branch(0.5 * (edges[j] + edges[j + 1]), pot.params, j) for j in range(len(pot.kinks) + 1)]
    )


def _times(t) -> np.ndarray:
    t = np.ascontiguousarray(t, dtype=np.float64).reshape(-1)
    if t.shape[0] < 1 or not np.all(np.isfinite(t)) or t[0] < 0.0 or np.any(np.diff(t) < 0.0):
        raise NHError("times must be finite, sorted and >= 0")
    return t


def reference_numeric(
    name: str, t, q0: float = 0.0, p0: float = 0.0, *, dt: float = REF_DT, weights: np.ndarray = REF_WEIGHTS
) -> tuple[np.ndarray, np.ndarray]:
    """Composition-method orbit with kink crossings located, for any registered potential.

    The reference of the non-analytic potentials; exposed so tests can run it on sho/mff.
    """
    pot = get_potential(name)
    t = _times(t)
    t0 = np.concatenate([[0.0], t]) if t[0] > 0.0 else t
    q = np.empty_like(t0)
    p = np.empty_like(t0)
    unresolved = _composition_orbit(
        pot.kernel_id,
        pot.params,
        pot.kink_array,
        float(q0),
        float(p0),
        t0,
        float(dt),
        np.ascontiguousarray(weights, dtype=np.float64),
        q,
        p,
    )
    if unresolved:
        raise NHError(
            f"{name}: the reference integration could not resolve the kink crossings of the orbit from "
            f"(q0={q0}, p0={p0}) in {unresolved} steps (it crosses a kink too often per step of {dt:g})"
        )
    return (q[1:], p[1:]) if t0.shape[0] > t.shape[0] else (q, p)


def reference(name: str, t, q0: float = 0.0, p0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Reference orbit (q, p) at sorted times t >= 0 from (q0, p0) at t = 0, to 1e-10.

    Analytic for sho, exact piecewise parabolas for mff and atw, Kahan-Li 8 at
    dt = 1e-3 with kink crossings located for the others. Validates the start.
    """
    pot = get_potential(name)
    q0, p0 = float(q0), float(p0)
    check_ic(pot, q0, p0)
    t = _times(t)
    if pot.reference_kind == "analytic":
        return analytic_sho(pot, t, q0, p0)
    if pot.reference_kind == "piecewise-exact":
        t0 = np.concatenate([[0.0], t]) if t[0] > 0.0 else t
        q = np.empty_like(t0)
        p = np.empty_like(t0)
        _piecewise_linear_orbit(pot.kink_array, _branch_accelerations(pot), q0, p0, t0, q, p)
        return (q[1:], p[1:]) if t0.shape[0] > t.shape[0] else (q, p)
    return reference_numeric(name, t, q0, p0)
