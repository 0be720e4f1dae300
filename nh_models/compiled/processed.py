"""SympONet's processed grid (`grid: processed`, `readout: step` or `scaled`, linear dictionary) in
Numba: the forward map of `models.symponet.SympONet._processed` orbit by orbit, from exported
weights (`compiled.export`).

Per orbit (no allocation: every work array is made once per call, or once per thread):

1. setup: the spline coefficients of V (one solve) and the table of V'; with `tables: local`
   the dictionary's nine features and their slopes at the sensors (from V's table), the linear
   map to (dF, a, b) (`models.correction`) and their local C1 cubics (`spline.local_into`): no
   further solve. With `tables: own`, from V's table in one pass the kernel's table (V' and the
   linear features' part of dF, exactly) and A' (`own_setup`), and dF's nonlinear part as one
   local cubic; no kick. With `tables: spline` V', V'', V''' at the sensors, the features, the linear
   map to (dV, a, b), the integrals A, B of a, b (`models.processor.integral`) and one solve of
   three right-hand sides (V + dV, A, B). Either way the tables of the kernel's force, of A'
   and of B' (A'' is evaluated from the A' table's row at lookup). With `learned` 0 only V's.
2. stepping: chi^-1 of the initial condition (Newton, `processor.INVERSE_ITERATIONS`), then
   the kernel's fixed steps up to the orbit's last query time, states and forces stored (with
   `readout: scaled` also the values its read-out needs at each grid state).
3. read-out: each query time by a last partial step from the stored state, chi there
   (`readout_step`), or by the scaled partial step (`readout_scaled`).

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
from .spline import (
    DX,
    NCOEF,
    NI,
    build_table,
    horner_d,
    local_into,
    locate,
    nodal_from_table,
    poly,
    solve1,
    solve3,
)
from .stepping import kicks, trajectory

SETUP, STEPPING, READOUT = 1, 2, 3  # `stop`: the phase after which an orbit's work ends
OWN = 2  # `export`'s "local" for `tables: own` (0: spline, 1: local)


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
def dictionary(W, r, f0, v1, v2, v3):
    """Row r of the linear map of the dictionary's nine features at one sensor
    (`models.correction.features`: V - V0, V', V'', V''', V'^2, V'^2 V'', V''^2, V' V''', V'^4)."""
    sq = v1 * v1
    return (W[r, 0] * f0 + W[r, 1] * v1 + W[r, 2] * v2 + W[r, 3] * v3 + W[r, 4] * sq
            + W[r, 5] * (sq * v2) + W[r, 6] * (v2 * v2) + W[r, 7] * (v1 * v3) + W[r, 8] * (sq * sq))  # fmt: skip


@njit(**JIT)
def dictionary_slopes(W, r, v1, v2, v3, v4, linear=True):
    """Row r of the same linear map of the features' x-derivatives (`features(V, slopes=True)`);
    without `linear` the nonlinear features' alone (`tables: own` reads the others exactly)."""
    sq = v1 * v1
    s = (W[r, 0] * v1 + W[r, 1] * v2 + W[r, 2] * v3 + W[r, 3] * v4) if linear else 0.0
    return (s + W[r, 4] * (2.0 * v1 * v2) + W[r, 5] * ((2.0 * v1) * (v2 * v2) + sq * v3) + W[r, 6] * (2.0 * v2 * v3)
            + W[r, 7] * (v2 * v3 + v1 * v4) + W[r, 8] * (4.0 * (sq * v1) * v2))  # fmt: skip


@njit(**JIT)
def local_setup(V, W, ktab, nod, fd, fa, fb, slopes, dtab, atab, btab, scaled):
    """`tables: local`: the features and their slopes at the sensors from V's table (ktab, V'
    on entry), the linear map to (dF, a, b) there, and their local C1 cubics (no solve): dF added
    to ktab (and with `scaled` also kept in dtab), a into atab, b into btab."""
    nodal_from_table(ktab, nod)
    for i in range(N_SENSORS):
        v1, v2, v3, v4 = nod[0, i], nod[1, i], nod[2, i], nod[3, i]
        fd[i] = dictionary_slopes(W, 0, v1, v2, v3, v4)
        fa[i] = dictionary(W, 1, V[i] - V0, v1, v2, v3)
        fb[i] = dictionary(W, 2, V[i] - V0, v1, v2, v3)
    if scaled:
        local_into(fd, slopes, dtab, False)
        for r in range(4):
            for i in range(NI):
                ktab[r, i] += dtab[r, i]
    else:
        local_into(fd, slopes, ktab, True)
    local_into(fa, slopes, atab, False)
    local_into(fb, slopes, btab, False)


@njit(**JIT)
def own_setup(W, vtab, nod, fd, slopes, ktab, atab):
    """`tables: own` (`models.correction.GridCorrection.own`): from V's table vtab, in one pass
    over its intervals, the kernel's table V' + the linear features' part of dF (their slopes
    V' to V'''': vtab and its exact derivatives) and A' (V', V'', V''' by the weights of row 1),
    then dF's nonlinear part at the sensors (the slopes of V'^2 ... V'^4) added to the kernel's
    table as one local C1 cubic. No kick: btab stays zero (`_work`)."""
    k0, k1, k2, k3 = 1.0 + W[0, 0], W[0, 1] / DX, W[0, 2] / DX**2, W[0, 3] / DX**3
    a0, a1, a2 = W[1, 1], W[1, 2] / DX, W[1, 3] / DX**2
    for i in range(NI):
        c0, c1, c2, c3, c4 = vtab[0, i], vtab[1, i], vtab[2, i], vtab[3, i], vtab[4, i]
        ktab[0, i] = k0 * c0 + k1 * c1 + k2 * (2.0 * c2) + k3 * (6.0 * c3)
        ktab[1, i] = k0 * c1 + k1 * (2.0 * c2) + k2 * (6.0 * c3) + k3 * (24.0 * c4)
        ktab[2, i] = k0 * c2 + k1 * (3.0 * c3) + k2 * (12.0 * c4)
        ktab[3, i] = k0 * c3 + k1 * (4.0 * c4)
        ktab[4, i] = k0 * c4
        atab[0, i] = a0 * c0 + a1 * c1 + a2 * (2.0 * c2)
        atab[1, i] = a0 * c1 + a1 * (2.0 * c2) + a2 * (6.0 * c3)
        atab[2, i] = a0 * c2 + a1 * (3.0 * c3) + a2 * (12.0 * c4)
        atab[3, i] = a0 * c3 + a1 * (4.0 * c4)
        atab[4, i] = a0 * c4
    nodal_from_table(vtab, nod)
    for i in range(N_SENSORS):
        fd[i] = dictionary_slopes(W, 0, nod[0, i], nod[1, i], nod[2, i], nod[3, i], False)
    local_into(fd, slopes, ktab, True)


@njit(**JIT)
def setup(V, W, learned, local, scaled, cv, ck, ca, cb, nod, fa, fb, fd, slopes, ktab, dtab, atab, btab):
    """The orbit's tables from its sensors V (100): kernel, and with `learned` the processor's
    and dF's (`local`: `tables: local`; with `tables: spline` dtab is the kernel's minus V')."""
    for i in range(N_SENSORS):
        cv[2 + i] = V[i]
    solve1(cv)
    if learned and local == OWN:
        build_table(cv, dtab)  # V's own table
        own_setup(W, dtab, nod, fd, slopes, ktab, atab)
        return
    if not learned or local:
        build_table(cv, ktab)
        if learned:
            local_setup(V, W, ktab, nod, fd, fa, fb, slopes, dtab, atab, btab, scaled)
        return
    build_table(cv, dtab)  # V''s table: the nodal derivatives, and with `scaled` dF = kernel - V'
    nodal_from_table(dtab, nod)
    for i in range(N_SENSORS):
        v1, v2, v3 = nod[0, i], nod[1, i], nod[2, i]
        ck[2 + i] = V[i] + dictionary(W, 0, V[i] - V0, v1, v2, v3)
        fa[i] = dictionary(W, 1, V[i] - V0, v1, v2, v3)
        fb[i] = dictionary(W, 2, V[i] - V0, v1, v2, v3)
    integrals_into(fa, fb, ca, cb)
    solve3(ck, ca, cb)
    build_table(ck, ktab)
    build_table(ca, atab)
    build_table(cb, btab)
    if scaled:
        for r in range(5):
            for i in range(NI):
                dtab[r, i] = ktab[r, i] - dtab[r, i]


@njit(**JIT)
def slope(q, a2):
    """`processor._slope`: A'' inside the box, 0 outside (the lookup holds A' there)."""
    return a2 if (q >= 0.0 and q <= 1.0) else 0.0


@njit(**JIT)
def side_values(ktab, dtab, atab, btab, i, s, out, k):
    """`readout: scaled`'s values at grid state k (interval i, s): dF, (V' + dF)', dF', A', A'', B'."""
    out[0, k] = poly(dtab, i, s)
    out[1, k] = horner_d(ktab, i, s)
    out[2, k] = horner_d(dtab, i, s)
    out[3, k] = poly(atab, i, s)
    out[4, k] = horner_d(atab, i, s)
    out[5, k] = poly(btab, i, s)


@njit(**JIT)
def trajectory_side(q, p, F, ktab, dtab, atab, btab, h, nsteps, qs, ps, fs, side):
    """`stepping.trajectory` of leapfrog with the scaled read-out's values at every grid state
    (`side_values`, read at each step's lookup: off the chain of dependent operations)."""
    qs[0] = q
    ps[0] = p
    fs[0] = F
    i, s = locate(q)
    side_values(ktab, dtab, atab, btab, i, s, side, 0)
    ph = p - (0.5 * h) * F
    for n in range(nsteps):
        q = q + h * ph
        i, s = locate(q)
        F = poly(ktab, i, s)
        side_values(ktab, dtab, atab, btab, i, s, side, n + 1)
        qs[n + 1] = q
        ps[n + 1] = ph - (0.5 * h) * F
        fs[n + 1] = F
        ph = ph - h * F


@njit(**JIT)
def start(ic, atab, btab, ktab, learned):
    """The kernel's first state and force: chi^-1 of the initial condition (Newton on
    q + A'(q) = Q, then p = P (1 + A''(q)) + B'(q)), or the initial condition; and its lookups."""
    Q = ic[0]
    P = ic[1]
    if not learned:
        i, s = locate(Q)
        return Q, P, poly(ktab, i, s), 1
    q = Q
    for _ in range(INVERSE_ITERATIONS):
        i, s = locate(q)
        q = q - (q + poly(atab, i, s) - Q) / (1.0 + slope(q, horner_d(atab, i, s)))
    i, s = locate(q)
    p = P * (1.0 + slope(q, horner_d(atab, i, s))) + poly(btab, i, s)
    return q, p, poly(ktab, i, s), INVERSE_ITERATIONS + 1


@njit(**JIT)
def grid_times(t, h, steps, kidx, rest):
    """The grid state before each query time (kidx) and the rest of the time (rest)."""
    for j in range(t.shape[0]):
        k = np.floor(t[j] / h)
        if not (k >= 0.0):
            k = 0.0
        if not (k <= steps):
            k = float(steps)
        kidx[j] = int(k)
        rest[j] = t[j] - k * h


@njit(**JIT)
def chi_at(q, p, atab, btab, i, s, c):
    """chi_c(q, p) (`processor.apply` with c) from the lookup (i, s) of the processor's tables at q."""
    p = p - c * poly(btab, i, s)
    return q + c * poly(atab, i, s), p / (1.0 + c * slope(q, horner_d(atab, i, s)))


@njit(**JIT)
def readout_step(t, h, steps, subs, ktab, atab, btab, learned, local, qs, ps, fs, kidx, rest, q_out, p_out):
    """Each query time by a last partial step from the grid state before it, chi there: three
    passes, each a short chain per time (one pass of the whole chain per time keeps too few
    times in flight to hide its latency). Returns its lookups."""
    grid_times(t, h, steps, kidx, rest)
    nsub = subs.shape[0]
    for j in range(t.shape[0]):
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
    if learned and local == OWN:  # chi without a kick, A' quartic (V's own table): the same lookup
        for j in range(t.shape[0]):
            q = q_out[j]
            i = kidx[j]
            s = rest[j]
            p_out[j] = p_out[j] / (1.0 + slope(q, horner_d(atab, i, s)))
            q_out[j] = q + poly(atab, i, s)
    elif learned and local:  # chi at the read-out point: the last substep's lookup reads A', A'', B' too
        for j in range(t.shape[0]):  # (local cubics: A' and B' cubic, A'' quadratic)
            q = q_out[j]
            i = kidx[j]
            s = rest[j]
            s2 = s * s
            a0, a1, a2, a3 = atab[0, i], atab[1, i], atab[2, i], atab[3, i]
            b = (btab[0, i] + btab[1, i] * s) + s2 * (btab[2, i] + btab[3, i] * s)
            a2x = (a1 + (2.0 * a2) * s + (3.0 * a3) * s2) * (1.0 / DX)
            p_out[j] = (p_out[j] - b) / (1.0 + slope(q, a2x))
            q_out[j] = q + ((a0 + a1 * s) + s2 * (a2 + a3 * s))
    elif learned:
        for j in range(t.shape[0]):
            q = q_out[j]
            i = kidx[j]
            s = rest[j]
            p_out[j] = (p_out[j] - poly(btab, i, s)) / (1.0 + slope(q, horner_d(atab, i, s)))
            q_out[j] = q + poly(atab, i, s)
    return t.shape[0] * nsub


@njit(**JIT)
def readout_scaled(t, h, steps, ktab, dtab, atab, btab, qs, ps, fs, side, kidx, rest, q_out, p_out):
    """`models.processed._scaled_flow`: chi_c o S_tau o chi_(1 - c) of the grid state before each
    query time, c = (tau / h)^2, S_tau a leapfrog step on V + c dV. Returns its lookups."""
    grid_times(t, h, steps, kidx, rest)
    for j in range(t.shape[0]):  # chi_(1 - c), the first half kick, the drift
        k = kidx[j]
        tau = rest[j]
        c = (tau / h) ** 2
        q = qs[k]
        b = 1.0 - c
        q1 = q + b * side[3, k]
        p1 = (ps[k] - b * side[5, k]) / (1.0 + b * slope(q, side[4, k]))
        F1 = fs[k] + (c - 1.0) * side[0, k] + (side[1, k] + (c - 1.0) * side[2, k]) * (q1 - q)
        p1 = p1 - (0.5 * tau) * F1
        q_out[j] = q1 + tau * p1
        p_out[j] = p1
    for j in range(t.shape[0]):  # the second half kick and chi_c, one lookup at the point
        tau = rest[j]
        c = (tau / h) ** 2
        q = q_out[j]
        i, s = locate(q)
        p = p_out[j] - (0.5 * tau) * (poly(ktab, i, s) + (c - 1.0) * poly(dtab, i, s))
        q_out[j], p_out[j] = chi_at(q, p, atab, btab, i, s, c)
    return t.shape[0]


@njit(**JIT)
def orbit(V, t, ic, W, subs, steps, flags, stop, work, q_out, p_out):
    """One orbit: V (100), t (W,), ic (2,) -> q_out, p_out (W,); returns its lookups. flags:
    (learned, local, scaled) (`export`); work: `_work`."""
    cv, ck, ca, cb, nod, fa, fb, fd, slopes, ktab, dtab, atab, btab, qs, ps, fs, side, kick, kidx, rest = work
    learned, local, scaled = flags[0], flags[1], flags[2] and flags[0]
    setup(V, W, learned, local, scaled, cv, ck, ca, cb, nod, fa, fb, fd, slopes, ktab, dtab, atab, btab)
    if stop == SETUP:
        return 0
    h = T_END / steps
    tmax = 0.0
    for j in range(t.shape[0]):
        tmax = max(tmax, t[j])
    kf = np.floor(tmax / h)  # the whole steps before the last query time
    if not (kf <= steps):  # (NaN too: never an index out of the arrays)
        kf = float(steps)
    kmax = int(kf)
    q, p, F, count = start(ic, atab, btab, ktab, learned)
    if scaled:
        trajectory_side(q, p, F, ktab, dtab, atab, btab, h, kmax, qs, ps, fs, side)
        count += 2 * kmax + 1  # a lookup a step, the grid states' values
    else:
        kicks(subs, h, kick)
        trajectory(q, p, F, ktab, subs, h, kick, kmax, qs, ps, fs)
        count += kmax * subs.shape[0]
    if stop == STEPPING:
        return count
    if scaled:
        return count + readout_scaled(t, h, steps, ktab, dtab, atab, btab, qs, ps, fs, side, kidx, rest, q_out, p_out)
    return count + readout_step(t, h, steps, subs, ktab, atab, btab, learned, local, qs, ps, fs, kidx, rest, q_out, p_out)


@njit(**JIT)
def _work(steps, nt):
    """The work arrays of `orbit` (made once per call, or once per thread)."""
    return (
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.zeros(NCOEF),
        np.empty((4, N_SENSORS)),
        np.empty(N_SENSORS),
        np.empty(N_SENSORS),
        np.empty(N_SENSORS),
        np.empty(N_SENSORS),
        np.empty((5, NI)),
        np.zeros((5, NI)),
        np.empty((5, NI)),
        np.zeros((5, NI)),  # btab: zero unless written (`tables: own` has no kick)
        np.empty(steps + 1),
        np.empty(steps + 1),
        np.empty(steps + 1),
        np.empty((6, steps + 1)),
        np.empty(8),
        np.empty(nt, dtype=np.int64),
        np.empty(nt),
    )


@njit(**JIT)
def forward_serial(V, t, ic, W, subs, steps, flags, stop, q_out, p_out, counts):
    """All orbits on the calling thread, one set of work arrays."""
    work = _work(steps, t.shape[1])
    for b in range(V.shape[0]):
        counts[b] = orbit(V[b], t[b], ic[b], W, subs, steps, flags, stop, work, q_out[b], p_out[b])


@njit(**PARALLEL_JIT_FN)  # not cached: Numba cannot cache a parallel kernel with global arrays
def forward_parallel(V, t, ic, W, subs, steps, flags, stop, q_out, p_out, counts):
    """Orbits in one contiguous chunk per thread, one set of work arrays per chunk."""
    B = V.shape[0]
    chunks = max(1, min(B, get_num_threads()))
    for c in prange(chunks):
        work = _work(steps, t.shape[1])
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            counts[b] = orbit(V[b], t[b], ic[b], W, subs, steps, flags, stop, work, q_out[b], p_out[b])


def forward(params: dict, V, t, ic, parallel: bool = False, stop: int = READOUT, counts: bool = False):
    """(q, p) (B, W) of the exported model `params` (`compiled.export`) at the query times t
    (B, W) in [0, 2] from V (B, 100) and ic (B, 2), float64; with `counts` also the lookups
    (force evaluations) each orbit spent."""
    V, t, ic = batch(V, t, ic)
    B, nt = t.shape
    q, p = np.zeros((B, nt)), np.zeros((B, nt))
    n = np.zeros(B, dtype=np.int64)
    flags = np.array([params["learned"], params["local"], params["scaled"]], dtype=np.int64)
    fn = forward_parallel if parallel else forward_serial
    fn(V, t, ic, params["weights"], params["subs"], params["steps"], flags, stop, q, p, n)
    return (q, p, n) if counts else (q, p)
