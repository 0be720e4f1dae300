"""SympONet's processed grid (`grid: processed`, `readout: step`, linear dictionary) in Numba:
the forward map of `models.symponet.SympONet._processed` orbit by orbit, from exported weights
(`compiled.export`).

Per orbit (no allocation: every work array is made once per call, or once per thread):

1. setup: the spline coefficients of V (one solve), V', V'', V''' at the sensors, the
   dictionary's nine features and its linear map to (dV, a, b) (`models.correction`), the
   integrals A, B of a, b (`models.processor.integral`), one solve of three right-hand sides
   (V + dV, A, B), the tables of the kernel's force (V + dV)' and of the processor's A', B'
   (A'' is evaluated from the A' table's row at lookup). With `learned` 0 only V's solve and table.
2. stepping: chi^-1 of the initial condition (Newton, `processor.INVERSE_ITERATIONS`), then
   the kernel's fixed steps up to the orbit's last query time, states and forces stored.
3. read-out: each query time by a last partial step from the stored state, chi there.

The time of step 2 is the latency of one chain (each force sets the next drift), about one
lookup's worth a step; steps 1 and 3 are independent work per sensor or per query time.

`stop` (1, 2, 3) ends the work after that phase: the benchmark's time breakdown.
The lookups each orbit spends are counted (`counts`): the model's force evaluations.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from nh_data.jit_options import JIT, PARALLEL_JIT_FN
from nh_data.problem import N_SENSORS, T_END, V0

from ..models.processor import INVERSE_ITERATIONS
from .inputs import batch
from .spline import DX, NCOEF, NI, build_table, horner_d, locate, nodal, poly, solve1, solve3
from .stepping import kicks, trajectory

SETUP, STEPPING, READOUT = 1, 2, 3  # `stop`: the phase after which an orbit's work ends


@njit(**JIT)
def integrals_into(fa, fb, ca, cb):
    """`processor.integral` of fa and fb (100 each), written as right-hand sides ca[2:102], cb[2:102]."""
    w = DX / 24.0
    n = N_SENSORS
    sa = 0.0
    sb = 0.0
    ca[2] = sa
    cb[2] = sb
    sa += w * (9.0 * fa[0] + 19.0 * fa[1] - 5.0 * fa[2] + fa[3])
    sb += w * (9.0 * fb[0] + 19.0 * fb[1] - 5.0 * fb[2] + fb[3])
    ca[3] = sa
    cb[3] = sb
    for k in range(n - 3):  # the interval [x_(k+1), x_(k+2)]
        sa += w * (-fa[k] + 13.0 * fa[k + 1] + 13.0 * fa[k + 2] - fa[k + 3])
        sb += w * (-fb[k] + 13.0 * fb[k + 1] + 13.0 * fb[k + 2] - fb[k + 3])
        ca[4 + k] = sa
        cb[4 + k] = sb
    sa += w * (fa[n - 4] - 5.0 * fa[n - 3] + 19.0 * fa[n - 2] + 9.0 * fa[n - 1])
    sb += w * (fb[n - 4] - 5.0 * fb[n - 3] + 19.0 * fb[n - 2] + 9.0 * fb[n - 1])
    ca[1 + n] = sa
    cb[1 + n] = sb


@njit(**JIT)
def setup(V, W, learned, cv, ck, ca, cb, nod, fa, fb, ktab, atab, btab):
    """The orbit's tables from its sensors V (100): kernel, and with `learned` the processor's."""
    for i in range(N_SENSORS):
        cv[2 + i] = V[i]
    solve1(cv)
    if not learned:
        build_table(cv, ktab)
        return
    nodal(cv, nod)
    for i in range(N_SENSORS):
        v1 = nod[0, i]
        v2 = nod[1, i]
        v3 = nod[2, i]
        f0 = V[i] - V0
        f4 = v1 * v1
        f5 = f4 * v2
        f6 = v2 * v2
        f7 = v1 * v3
        f8 = f4 * f4
        dv = (W[0, 0] * f0 + W[0, 1] * v1 + W[0, 2] * v2 + W[0, 3] * v3 + W[0, 4] * f4
              + W[0, 5] * f5 + W[0, 6] * f6 + W[0, 7] * f7 + W[0, 8] * f8)  # fmt: skip
        fa[i] = (W[1, 0] * f0 + W[1, 1] * v1 + W[1, 2] * v2 + W[1, 3] * v3 + W[1, 4] * f4
                 + W[1, 5] * f5 + W[1, 6] * f6 + W[1, 7] * f7 + W[1, 8] * f8)  # fmt: skip
        fb[i] = (W[2, 0] * f0 + W[2, 1] * v1 + W[2, 2] * v2 + W[2, 3] * v3 + W[2, 4] * f4
                 + W[2, 5] * f5 + W[2, 6] * f6 + W[2, 7] * f7 + W[2, 8] * f8)  # fmt: skip
        ck[2 + i] = V[i] + dv
    integrals_into(fa, fb, ca, cb)
    solve3(ck, ca, cb)
    build_table(ck, ktab)
    build_table(ca, atab)
    build_table(cb, btab)


@njit(**JIT)
def slope(q, a2):
    """`processor._slope`: A'' inside the box, 0 outside (the lookup holds A' there)."""
    return a2 if (q >= 0.0 and q <= 1.0) else 0.0


@njit(**JIT)
def orbit(V, t, ic, W, subs, steps, learned, stop, work, q_out, p_out):
    """One orbit: V (100), t (W,), ic (2,) -> q_out, p_out (W,); returns its lookups. work: `_work`."""
    cv, ck, ca, cb, nod, fa, fb, ktab, atab, btab, qs, ps, fs, kick, kidx, rest = work
    setup(V, W, learned, cv, ck, ca, cb, nod, fa, fb, ktab, atab, btab)
    if stop == SETUP:
        return 0
    h = T_END / steps
    nt = t.shape[0]
    tmax = 0.0
    for j in range(nt):
        tmax = max(tmax, t[j])
    kf = np.floor(tmax / h)  # the whole steps before the last query time
    if not (kf <= steps):  # (NaN too: never an index out of the arrays)
        kf = float(steps)
    kmax = int(kf)
    count = 0
    Q = ic[0]
    P = ic[1]
    if learned:  # chi^-1: Newton on q + A'(q) = Q, then p = P (1 + A''(q)) + B'(q)
        q = Q
        for _ in range(INVERSE_ITERATIONS):
            i, s = locate(q)
            q = q - (q + poly(atab, i, s) - Q) / (1.0 + slope(q, horner_d(atab, i, s)))
        i, s = locate(q)
        p = P * (1.0 + slope(q, horner_d(atab, i, s))) + poly(btab, i, s)
        F = poly(ktab, i, s)
        count += INVERSE_ITERATIONS + 1
    else:
        q = Q
        p = P
        i, s = locate(q)
        F = poly(ktab, i, s)
        count += 1
    nsub = subs.shape[0]
    kicks(subs, h, kick)
    trajectory(q, p, F, ktab, subs, h, kick, kmax, qs, ps, fs)
    count += kmax * nsub
    if stop == STEPPING:
        return count
    # read-out in three passes over the query times, each a short chain per time (one pass of
    # the whole chain per time keeps too few times in flight to hide its latency)
    for j in range(nt):  # the grid state before each query time, and the rest of the time
        k = np.floor(t[j] / h)
        if not (k >= 0.0):
            k = 0.0
        if not (k <= steps):
            k = float(steps)
        kidx[j] = int(k)
        rest[j] = t[j] - k * h
    for j in range(nt):  # a last partial step of the rest from that state
        kk = kidx[j]
        dt = rest[j]
        q = qs[kk]
        p = ps[kk]
        F = fs[kk]
        for m in range(nsub):
            a = subs[m]
            p = p - (0.5 * a) * dt * F
            q = q + a * dt * p
            i, s = locate(q)
            F = poly(ktab, i, s)
            p = p - (0.5 * a) * dt * F
        q_out[j] = q
        p_out[j] = p
        kidx[j] = i
        rest[j] = s
    if learned:  # chi at the read-out point: the last substep's lookup reads A', A'', B' too
        for j in range(nt):
            q = q_out[j]
            i = kidx[j]
            s = rest[j]
            p_out[j] = (p_out[j] - poly(btab, i, s)) / (1.0 + slope(q, horner_d(atab, i, s)))
            q_out[j] = q + poly(atab, i, s)
    return count + nt * nsub


@njit(**JIT)
def _work(steps, nt):
    """The work arrays of `orbit` (made once per call, or once per thread)."""
    return (
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.empty((3, N_SENSORS)),
        np.empty(N_SENSORS),
        np.empty(N_SENSORS),
        np.empty((5, NI)),
        np.empty((5, NI)),
        np.empty((5, NI)),
        np.empty(steps + 1),
        np.empty(steps + 1),
        np.empty(steps + 1),
        np.empty(8),
        np.empty(nt, dtype=np.int64),
        np.empty(nt),
    )


@njit(**JIT)
def forward_serial(V, t, ic, W, subs, steps, learned, stop, q_out, p_out, counts):
    """All orbits on the calling thread, one set of work arrays."""
    work = _work(steps, t.shape[1])
    for b in range(V.shape[0]):
        counts[b] = orbit(V[b], t[b], ic[b], W, subs, steps, learned, stop, work, q_out[b], p_out[b])


@njit(**PARALLEL_JIT_FN)  # not cached: Numba cannot cache a parallel kernel with global arrays
def forward_parallel(V, t, ic, W, subs, steps, learned, stop, q_out, p_out, counts):
    """Orbits in one contiguous chunk per thread, one set of work arrays per chunk."""
    B = V.shape[0]
    chunks = max(1, min(B, get_num_threads()))
    for c in prange(chunks):
        work = _work(steps, t.shape[1])
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            counts[b] = orbit(V[b], t[b], ic[b], W, subs, steps, learned, stop, work, q_out[b], p_out[b])


def forward(params: dict, V, t, ic, parallel: bool = False, stop: int = READOUT, counts: bool = False):
    """(q, p) (B, W) of the exported model `params` (`compiled.export`) at the query times t
    (B, W) in [0, 2] from V (B, 100) and ic (B, 2), float64; with `counts` also the lookups
    (force evaluations) each orbit spent."""
    V, t, ic = batch(V, t, ic)
    B, nt = t.shape
    q, p = np.zeros((B, nt)), np.zeros((B, nt))
    n = np.zeros(B, dtype=np.int64)
    fn = forward_parallel if parallel else forward_serial
    fn(V, t, ic, params["weights"], params["subs"], params["steps"], params["learned"], stop, q, p, n)
    return (q, p, n) if counts else (q, p)
