"""The equal-cost baselines of `evaluation.sensor_integrators` in Numba: leapfrog, Yoshida-4, RK4
and the classical processed leapfrog on the quintic sensor spline, fixed steps of h = T / steps,
cubic Hermite read-out, the same force evaluations (lookups) per orbit as the torch code
(`sensor_integrators.evaluations`; counted here per orbit with `counts=True`).

One orbit at a time (`integrate`, serial or one chunk of orbits per thread); per orbit: the
spline of V (one solve, one table), then the method's steps with the read-out of each step's
query times fused in (`stepping.schedule`).
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
from .stepping import hermite_at, kicks, schedule, trajectory_hermite, unsort

METHODS = ("leapfrog", "yoshida4", "rk4", "processed")
_ID = {name: k for k, name in enumerate(METHODS)}
LEAPFROG_ID, YOSHIDA4_ID, RK4_ID, PROCESSED_ID = range(4)
SUBS = {
    "leapfrog": np.array(LEAPFROG.weights, dtype=np.float64),
    "yoshida4": np.array(YOSHIDA4.weights, dtype=np.float64),
}


@njit(**JIT)
def _rk4(vtab, Q, P, h, steps, kidx, rest, q_out, p_out):
    """Classic RK4, the Hermite read-out of each step's queries fused in; 4 steps + 1 lookups."""
    nt = kidx.shape[0]
    j = 0
    q = Q
    p = P
    F = poly(vtab, *locate(q))
    for n in range(steps):
        k1q = p
        k1p = -F
        k2q = p + 0.5 * h * k1p
        k2p = -poly(vtab, *locate(q + 0.5 * h * k1q))
        k3q = p + 0.5 * h * k2p
        k3p = -poly(vtab, *locate(q + 0.5 * h * k2q))
        k4q = p + h * k3p
        k4p = -poly(vtab, *locate(q + h * k3q))
        q1 = q + h / 6 * (k1q + 2 * k2q + 2 * k3q + k4q)
        p1 = p + h / 6 * (k1p + 2 * k2p + 2 * k3p + k4p)
        F1 = poly(vtab, *locate(q1))
        while j < nt and kidx[j] == n:
            q_out[j], p_out[j] = hermite_at(q, p, F, q1, p1, F1, h, rest[j])
            j += 1
        q, p, F = q1, p1, F1
    return 4 * steps + 1


@njit(**JIT)
def _processed(V, cv, cw, nod, vtab, ktab, Q, P, h, steps, kidx, rest, q_out, p_out):
    """The classical processed leapfrog (`sensor_integrators._processed`): leapfrog on
    V~ = V - (h^2 / 24) V'^2 (its own solve and table), chi^-1 by fixed-point iteration, the
    processor q - c V'(q), p + c p V''(q) at every grid state from the step's own lookup (V' and
    V'' read off the chain of the stepping), the Hermite read-out between processed states fused
    in; steps + 1 + INVERSE_ITERATIONS lookups."""
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
    x0, y0, f0 = _chi(q, p, poly(vtab, i, s), v2, c)
    ph = p - (0.5 * h) * F
    nt = kidx.shape[0]
    j = 0
    for n in range(steps):
        q = q + h * ph
        i, s = locate(q)
        F = poly(ktab, i, s)
        p = ph - (0.5 * h) * F
        x1, y1, f1 = _chi(q, p, poly(vtab, i, s), horner_d(vtab, i, s), c)
        while j < nt and kidx[j] == n:
            q_out[j], p_out[j] = hermite_at(x0, y0, f0, x1, y1, f1, h, rest[j])
            j += 1
        x0, y0, f0 = x1, y1, f1
        ph = ph - h * F
    return INVERSE_ITERATIONS + 1 + steps


@njit(**JIT)
def _chi(q, p, v1, v2, c):
    """The processor at a grid state, and V'(Q) ~ V'(q) + V''(q) (Q - q) for the Hermite derivative."""
    Qn = q - c * v1
    return Qn, p + c * p * v2, v1 + v2 * (Qn - q)


@njit(**JIT)
def orbit(V, t, ic, method, steps, subs, work, q_out, p_out):
    """One orbit of `method` (an index of METHODS): V (100), t (W,), ic (2,) -> q_out, p_out;
    returns its lookups. work: `_work`."""
    cv, cw, nod, vtab, ktab, kick, kidx, rest, order, qw, pw = work
    h = T_END / steps
    for i in range(N_SENSORS):
        cv[2 + i] = V[i]
    solve1(cv)
    build_table(cv, vtab)
    ordered = schedule(t, h, steps - 1, True, kidx, rest, order)
    qo, po = (q_out, p_out) if ordered else (qw, pw)  # unsorted times: sorted, then put back
    if method == RK4_ID:
        count = _rk4(vtab, ic[0], ic[1], h, steps, kidx, rest, qo, po)
    elif method == PROCESSED_ID:
        count = _processed(V, cv, cw, nod, vtab, ktab, ic[0], ic[1], h, steps, kidx, rest, qo, po)
    else:
        kicks(subs, h, kick)
        F = poly(vtab, *locate(ic[0]))
        trajectory_hermite(ic[0], ic[1], F, vtab, subs, h, kick, steps, kidx, rest, qo, po)
        count = 1 + steps * subs.shape[0]
    if not ordered:
        unsort(order, qw, pw, q_out, p_out)
    return count


@njit(**JIT)
def _work(steps, nt):
    return (
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.empty((4, N_SENSORS)),
        np.empty((5, NI)),
        np.empty((5, NI)),
        np.empty(8),
        np.empty(nt, dtype=np.int64),
        np.empty(nt),
        np.empty(nt, dtype=np.int64),
        np.empty(nt),
        np.empty(nt),
    )


@njit(**JIT)
def integrate_serial(V, t, ic, method, steps, subs, q_out, p_out, counts):
    """All orbits on the calling thread, one set of work arrays."""
    work = _work(steps, t.shape[1])
    for b in range(V.shape[0]):
        counts[b] = orbit(V[b], t[b], ic[b], method, steps, subs, work, q_out[b], p_out[b])


@njit(**PARALLEL_JIT_FN)  # not cached: Numba cannot cache a parallel kernel with global arrays
def integrate_parallel(V, t, ic, method, steps, subs, q_out, p_out, counts):
    """Orbits in one contiguous chunk per thread, one set of work arrays per chunk."""
    B = V.shape[0]
    chunks = max(1, min(B, get_num_threads()))
    for c in prange(chunks):
        work = _work(steps, t.shape[1])
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            counts[b] = orbit(V[b], t[b], ic[b], method, steps, subs, work, q_out[b], p_out[b])


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
    q, p = np.empty((B, nt)), np.empty((B, nt))  # every element is written
    n = np.empty(B, dtype=np.int64)
    subs = SUBS.get(method, SUBS["leapfrog"])
    fn = integrate_parallel if parallel else integrate_serial
    fn(V, t, ic, _ID[method], int(steps), subs, q, p, n)
    return (q, p, n) if counts else (q, p)
