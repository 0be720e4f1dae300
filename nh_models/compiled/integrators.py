"""The equal-cost baselines of `evaluation.sensor_integrators` in Numba: leapfrog, Yoshida-4, RK4
and the classical processed leapfrog on the quintic sensor spline, fixed steps of h = T / steps,
cubic Hermite read-out, the same force evaluations (lookups) per orbit as the torch code
(`sensor_integrators.evaluations`; counted here per orbit with `counts=True`).

One orbit at a time (`integrate`, serial or one chunk of orbits per thread); per orbit: the
spline of V (one solve, one table), then the method's steps, then the read-out.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from nh_data.errors import NHError
from nh_data.integrators import LEAPFROG, YOSHIDA4
from nh_data.jit_options import JIT, PARALLEL_JIT_FN
from nh_data.problem import N_SENSORS, T_END

from ..models.processor import INVERSE_ITERATIONS
from .inputs import batch
from .spline import NCOEF, NI, build_table, horner_d, locate, nodal_from_table, poly, solve1
from .stepping import hermite, kicks, trajectory

METHODS = ("leapfrog", "yoshida4", "rk4", "processed")
_ID = {name: k for k, name in enumerate(METHODS)}
LEAPFROG_ID, YOSHIDA4_ID, RK4_ID, PROCESSED_ID = range(4)
SUBS = {
    "leapfrog": np.array(LEAPFROG.weights, dtype=np.float64),
    "yoshida4": np.array(YOSHIDA4.weights, dtype=np.float64),
}


@njit(**JIT)
def _rk4(vtab, Q, P, h, steps, qs, ps, fs):
    """Classic RK4: states and forces at the steps + 1 grid points; 4 steps + 1 lookups."""
    q = Q
    p = P
    F = poly(vtab, *locate(q))
    qs[0] = q
    ps[0] = p
    fs[0] = F
    for n in range(steps):
        k1q = p
        k1p = -F
        k2q = p + 0.5 * h * k1p
        k2p = -poly(vtab, *locate(q + 0.5 * h * k1q))
        k3q = p + 0.5 * h * k2p
        k3p = -poly(vtab, *locate(q + 0.5 * h * k2q))
        k4q = p + h * k3p
        k4p = -poly(vtab, *locate(q + h * k3q))
        q = q + h / 6 * (k1q + 2 * k2q + 2 * k3q + k4q)
        p = p + h / 6 * (k1p + 2 * k2p + 2 * k3p + k4p)
        F = poly(vtab, *locate(q))
        qs[n + 1] = q
        ps[n + 1] = p
        fs[n + 1] = F
    return 4 * steps + 1


@njit(**JIT)
def _processed(V, cv, cw, nod, vtab, ktab, Q, P, h, steps, qs, ps, fs):
    """The classical processed leapfrog (`sensor_integrators._processed`): leapfrog on
    V~ = V - (h^2 / 24) V'^2 (its own solve and table), chi^-1 by fixed-point iteration, the
    processor q - c V'(q), p + c p V''(q) at every grid state from the step's own lookup (V' and
    V'' read off the chain of the stepping); steps + 1 + INVERSE_ITERATIONS lookups."""
    c = h * h / 12.0
    nodal_from_table(vtab, nod)
    for i in range(N_SENSORS):
        cw[2 + i] = V[i] - 0.5 * c * nod[0, i] * nod[0, i]
    solve1(cw)
    build_table(cw, ktab)
    q = Q
    for _ in range(INVERSE_ITERATIONS):  # q - c V'(q) = Q
        q = Q + c * poly(vtab, *locate(q))
    i, s = locate(q)
    v2 = horner_d(vtab, i, s)
    p = P / (1.0 + c * v2)
    F = poly(ktab, i, s)
    _chi(q, p, poly(vtab, i, s), v2, c, qs, ps, fs, 0)
    ph = p - (0.5 * h) * F
    for n in range(steps):
        q = q + h * ph
        i, s = locate(q)
        F = poly(ktab, i, s)
        p = ph - (0.5 * h) * F
        _chi(q, p, poly(vtab, i, s), horner_d(vtab, i, s), c, qs, ps, fs, n + 1)
        ph = ph - h * F
    return INVERSE_ITERATIONS + 1 + steps


@njit(**JIT)
def _chi(q, p, v1, v2, c, qs, ps, fs, n):
    """The processor at grid state n, and V'(Q) ~ V'(q) + V''(q) (Q - q) for the Hermite derivative."""
    Qn = q - c * v1
    qs[n] = Qn
    ps[n] = p + c * p * v2
    fs[n] = v1 + v2 * (Qn - q)


@njit(**JIT)
def orbit(V, t, ic, method, steps, subs, cv, cw, nod, vtab, ktab, kick, qs, ps, fs, q_out, p_out):
    """One orbit of `method` (an index of METHODS): V (100), t (W,), ic (2,) -> q_out, p_out;
    returns its lookups."""
    h = T_END / steps
    for i in range(N_SENSORS):
        cv[2 + i] = V[i]
    solve1(cv)
    build_table(cv, vtab)
    if method == RK4_ID:
        count = _rk4(vtab, ic[0], ic[1], h, steps, qs, ps, fs)
    elif method == PROCESSED_ID:
        count = _processed(V, cv, cw, nod, vtab, ktab, ic[0], ic[1], h, steps, qs, ps, fs)
    else:
        kicks(subs, h, kick)
        trajectory(ic[0], ic[1], poly(vtab, *locate(ic[0])), vtab, subs, h, kick, steps, qs, ps, fs)
        count = 1 + steps * subs.shape[0]
    hermite(qs, ps, fs, steps + 1, h, t, q_out, p_out)
    return count


@njit(**JIT)
def _work(steps):
    return (
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.empty((4, N_SENSORS)),
        np.empty((5, NI)),
        np.empty((5, NI)),
        np.empty(8),
        np.empty(steps + 1),
        np.empty(steps + 1),
        np.empty(steps + 1),
    )


@njit(**JIT)
def integrate_serial(V, t, ic, method, steps, subs, q_out, p_out, counts):
    """All orbits on the calling thread, one set of work arrays."""
    cv, cw, nod, vtab, ktab, kick, qs, ps, fs = _work(steps)
    for b in range(V.shape[0]):
        counts[b] = orbit(V[b], t[b], ic[b], method, steps, subs, cv, cw, nod, vtab, ktab, kick, qs, ps, fs,
                          q_out[b], p_out[b])  # fmt: skip


@njit(**PARALLEL_JIT_FN)  # not cached: Numba cannot cache a parallel kernel with global arrays
def integrate_parallel(V, t, ic, method, steps, subs, q_out, p_out, counts):
    """Orbits in one contiguous chunk per thread, one set of work arrays per chunk."""
    B = V.shape[0]
    chunks = max(1, min(B, get_num_threads()))
    for c in prange(chunks):
        cv, cw, nod, vtab, ktab, kick, qs, ps, fs = _work(steps)
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            counts[b] = orbit(V[b], t[b], ic[b], method, steps, subs, cv, cw, nod, vtab, ktab, kick, qs, ps, fs,
                              q_out[b], p_out[b])  # fmt: skip


def integrate(V, t, ic, method: str, steps: int, parallel: bool = False, counts: bool = False):
    """(q, p) (B, W) of `method` with `steps` steps at the query times t (B, W) in [0, T] from V
    (B, 100) and ic (B, 2), float64 (`sensor_integrators.integrate`); with `counts` also the
    lookups (force evaluations) each orbit spent."""
    if method not in _ID:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise NHError(f"steps must be an integer >= 1, got {steps!r}")
    V, t, ic = batch(V, t, ic)
    B, nt = t.shape
    q, p = np.zeros((B, nt)), np.zeros((B, nt))
    n = np.zeros(B, dtype=np.int64)
    subs = SUBS.get(method, SUBS["leapfrog"])
    fn = integrate_parallel if parallel else integrate_serial
    fn(V, t, ic, _ID[method], int(steps), subs, q, p, n)
    return (q, p, n) if counts else (q, p)
