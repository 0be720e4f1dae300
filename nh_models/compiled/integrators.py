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
from .lanes import check_lanes, composition, hermite_pass, rk4, rk4_inner, rk4_last, rk4_update
from .spline import NCOEF, NI, build_table, horner_d, locate, nodal_from_table, poly, solve1, spline_table
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
        x2, x3 = rk4_inner(q, p, F, h)
        k2p = -poly(vtab, *locate(x2))
        k3p = -poly(vtab, *locate(x3))
        k4p = -poly(vtab, *locate(rk4_last(q, p, k2p, h)))
        q1, p1 = rk4_update(q, p, F, k2p, k3p, k4p, h)
        F1 = poly(vtab, *locate(q1))
        while j < nt and kidx[j] == n:
            q_out[j], p_out[j] = hermite_at(q, p, F, q1, p1, F1, h, rest[j])
            j += 1
        q, p, F = q1, p1, F1
    return 4 * steps + 1


@njit(**JIT)
def _processed_start(V, cv, cw, nod, vtab, ktab, Q, P, h):
    """The classical processed leapfrog's set-up and first state: its table of V~ = V - (h^2 /
    24) V'^2 (its own solve), chi^-1 of (Q, P) by fixed-point iteration; the kernel's q, p, ph
    (half a kick ahead) and the lookup (i, s) there (`_chi_at` gives the processed state)."""
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
    return q, p, p - (0.5 * h) * F, i, s


@njit(**JIT, inline="always")
def _chi_at(q, p, vtab, i, s, c):
    """`_chi` at a kernel state from the lookup (i, s) at its q."""
    return _chi(q, p, poly(vtab, i, s), horner_d(vtab, i, s), c)


@njit(**JIT, inline="always")
def _kernel_step(q, ph, ktab, h):
    """One leapfrog step of the classical processed method's kernel: the new q, its lookup (i, s),
    the grid momentum p and the next ph."""
    q = q + h * ph
    i, s = locate(q)
    F = poly(ktab, i, s)
    return q, i, s, ph - (0.5 * h) * F, ph - h * F


@njit(**JIT, inline="always")
def _processed_step(q, ph, vtab, ktab, h):
    """One step of the classical processed leapfrog: the new q, the next ph and the processed
    state (x, y, f) at the grid point, the processor read from the step's own lookup."""
    q, i, s, p, ph = _kernel_step(q, ph, ktab, h)
    x1, y1, f1 = _chi_at(q, p, vtab, i, s, h * h / 12.0)
    return q, ph, x1, y1, f1


@njit(**JIT)
def _processed(V, cv, cw, nod, vtab, ktab, Q, P, h, steps, kidx, rest, q_out, p_out):
    """The classical processed leapfrog (`sensor_integrators._processed`): leapfrog on
    V~ = V - (h^2 / 24) V'^2 (its own solve and table), chi^-1 by fixed-point iteration, the
    processor q - c V'(q), p + c p V''(q) at every grid state from the step's own lookup (V' and
    V'' read off the chain of the stepping), the Hermite read-out between processed states fused
    in; steps + 1 + INVERSE_ITERATIONS lookups."""
    q, p, ph, i, s = _processed_start(V, cv, cw, nod, vtab, ktab, Q, P, h)
    x0, y0, f0 = _chi_at(q, p, vtab, i, s, h * h / 12.0)
    nt = kidx.shape[0]
    j = 0
    for n in range(steps):
        q, ph, x1, y1, f1 = _processed_step(q, ph, vtab, ktab, h)
        while j < nt and kidx[j] == n:
            q_out[j], p_out[j] = hermite_at(x0, y0, f0, x1, y1, f1, h, rest[j])
            j += 1
        x0, y0, f0 = x1, y1, f1
    return INVERSE_ITERATIONS + 1 + steps


@njit(**JIT)
def _processed_lanes(L, q0, ph0, ktabs, h, n1, qs, ps, ss, gi):
    """`_processed`'s kernel steps of L lanes side by side (`lanes.composition`): each grid
    state's q, p and lookup (gi, ss) stored, the processor left to the read-out
    (`_processed_pass`), which needs it only at the grid states next to a query time."""
    q, ph = q0[:L].copy(), ph0[:L].copy()
    for n in range(n1):
        for k in range(L):
            qk, i, s, p, phk = _kernel_step(q[k], ph[k], ktabs[k], h)
            qs[k, n + 1], ps[k, n + 1], ss[k, n + 1], gi[k, n + 1] = qk, p, s, i
            q[k], ph[k] = qk, phk


@njit(**JIT)
def _processed_pass(qs, ps, ss, gi, vtab, h, kidx, rest, q_out, p_out):
    """The Hermite read-out of the classical processed leapfrog from one orbit's stored kernel
    states, the processor applied at the grid states the query times need (each from its own
    lookup: `_processed`'s arithmetic, so the same bytes)."""
    c = h * h / 12.0
    x0 = y0 = f0 = x1 = y1 = f1 = 0.0
    last = -2
    for j in range(kidx.shape[0]):
        n = kidx[j]
        if n != last:
            if n == last + 1:
                x0, y0, f0 = x1, y1, f1
            else:
                x0, y0, f0 = _chi_at(qs[n], ps[n], vtab, gi[n], ss[n], c)
            x1, y1, f1 = _chi_at(qs[n + 1], ps[n + 1], vtab, gi[n + 1], ss[n + 1], c)
            last = n
        q_out[j], p_out[j] = hermite_at(x0, y0, f0, x1, y1, f1, h, rest[j])


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
    spline_table(V, cv, vtab)
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
def _lanes_work(K, steps, nt):
    """`_work`'s per-orbit arrays once, and per lane its tables, schedule, state and grid states."""
    return (
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.empty((4, N_SENSORS)),
        np.empty((K, 5, NI)),
        np.empty((K, 5, NI)),
        np.empty(8),
        np.empty((K, nt), dtype=np.int64),
        np.empty((K, nt)),
        np.empty((K, nt), dtype=np.int64),
        np.empty(K, dtype=np.int64),  # 1 where the lane's times are sorted
        np.empty(nt),
        np.empty(nt),
        np.empty((3, K)),  # each lane's q, p (or ph) and F
        np.empty((3, K, steps + 1)),  # the grid states q, p, F (processed: q, p, s)
        np.empty((K, steps + 1), dtype=np.int64),  # processed: the grid states' intervals
    )


@njit(**JIT)
def _block(V, t, ic, method, steps, subs, lw, b0, L, q_out, p_out, counts):
    """Orbits b0..b0+L-1 of `method` in L lanes (`lanes`): each orbit's spline, schedule and first
    state; the L chains side by side; then each orbit's Hermite read-out from its stored states
    (the classical processed method's processor only at the grid states its queries need). The
    arithmetic of `orbit`, so the same bytes."""
    cv, cw, nod, vtabs, ktabs, kick, kidx, rest, order, ordered, qw, pw, st, grid, gi = lw
    q, p, F = st[0], st[1], st[2]
    qs, ps, fs = grid[0], grid[1], grid[2]
    h = T_END / steps
    kicks(subs, h, kick)
    for k in range(L):
        b = b0 + k
        spline_table(V[b], cv, vtabs[k])
        ordered[k] = schedule(t[b], h, steps - 1, True, kidx[k], rest[k], order[k])
        if method == PROCESSED_ID:
            q[k], ps[k, 0], p[k], gi[k, 0], fs[k, 0] = _processed_start(V[b], cv, cw, nod, vtabs[k], ktabs[k], ic[b, 0], ic[b, 1], h)
            qs[k, 0] = q[k]
            counts[b] = INVERSE_ITERATIONS + 1 + steps
            continue
        q[k], F[k] = ic[b, 0], poly(vtabs[k], *locate(ic[b, 0]))
        qs[k, 0], ps[k, 0], fs[k, 0] = ic[b, 0], ic[b, 1], F[k]
        if method == RK4_ID:
            p[k] = ic[b, 1]
            counts[b] = 4 * steps + 1
        else:  # p holds ph, half a kick ahead
            p[k] = ic[b, 1] - kick[0] * F[k]
            counts[b] = 1 + steps * subs.shape[0]
    if method == RK4_ID:
        rk4(L, q, p, F, vtabs, h, steps, qs, ps, fs)
    elif method == PROCESSED_ID:
        _processed_lanes(L, q, p, ktabs, h, steps, qs, ps, fs, gi)
    else:
        composition(L, q, p, vtabs, subs, h, kick, steps, qs, ps, fs)
    for k in range(L):
        b = b0 + k
        qo, po = (q_out[b], p_out[b]) if ordered[k] else (qw, pw)
        if method == PROCESSED_ID:
            _processed_pass(qs[k], ps[k], fs[k], gi[k], vtabs[k], h, kidx[k], rest[k], qo, po)
        else:
            hermite_pass(qs[k], ps[k], fs[k], h, kidx[k], rest[k], qo, po)
        if not ordered[k]:
            unsort(order[k], qw, pw, q_out[b], p_out[b])


@njit(**JIT)
def _range(V, t, ic, method, steps, subs, lanes, lo, hi, q_out, p_out, counts):
    """Orbits lo..hi-1 on the calling thread: one at a time with the read-out fused (`lanes` 1),
    or in blocks of `lanes` orbits stepped side by side (`_block`)."""
    if lanes == 1:
        work = _work(steps, t.shape[1])
        for b in range(lo, hi):
            counts[b] = orbit(V[b], t[b], ic[b], method, steps, subs, work, q_out[b], p_out[b])
        return
    lw = _lanes_work(lanes, steps, t.shape[1])
    for b0 in range(lo, hi, lanes):
        _block(V, t, ic, method, steps, subs, lw, b0, min(lanes, hi - b0), q_out, p_out, counts)


@njit(**JIT)
def integrate_serial(V, t, ic, method, steps, subs, lanes, q_out, p_out, counts):
    """All orbits on the calling thread."""
    _range(V, t, ic, method, steps, subs, lanes, 0, V.shape[0], q_out, p_out, counts)


@njit(**PARALLEL_JIT_FN)  # not cached: Numba cannot cache a parallel kernel with global arrays
def integrate_parallel(V, t, ic, method, steps, subs, lanes, q_out, p_out, counts):
    """Orbits in one contiguous chunk per thread."""
    B = V.shape[0]
    chunks = max(1, min(B, get_num_threads()))
    for c in prange(chunks):
        _range(V, t, ic, method, steps, subs, lanes, c * B // chunks, (c + 1) * B // chunks, q_out, p_out, counts)


def integrate(V, t, ic, method: str, steps: int, parallel: bool = False, counts: bool = False, lanes: int = 1):
    """(q, p) (B, W) of `method` with `steps` steps at the query times t (B, W) in [0, T] from V
    (B, 100) and ic (B, 2), float64 (`sensor_integrators.integrate`); with `counts` also the
    lookups (force evaluations) each orbit spent. `lanes` > 1 steps that many orbits side by side
    on each thread (`compiled.lanes`): the same results, in less time per orbit."""
    if method not in _ID:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise NHError(f"steps must be an integer >= 1, got {steps!r}")
    lanes = check_lanes(lanes)
    V, t, ic = batch(V, t, ic)
    B, nt = t.shape
    q, p = np.empty((B, nt)), np.empty((B, nt))  # every element is written
    n = np.empty(B, dtype=np.int64)
    subs = SUBS.get(method, SUBS["leapfrog"])
    fn = integrate_parallel if parallel else integrate_serial
    fn(V, t, ic, _ID[method], int(steps), subs, lanes, q, p, n)
    return (q, p, n) if counts else (q, p)
