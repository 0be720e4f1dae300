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
   and of B' (A'' is evaluated from the A' table's row at lookup). With `learned` 0 only V's,
   and with `tables: inline` too: its force V' + kf V' V'' and A' = ka V' are evaluated at each
   lookup from V's table (`stepping.inline_force`, `inline_coefficients`; kind INLINE), and side
   by side its read-out is a pass of its own (`inline_pass`).
2. stepping: chi^-1 of the initial condition (Newton, `processor.INVERSE_ITERATIONS`), then
   the kernel's fixed steps up to the orbit's last query time.
3. read-out, fused into the stepping (`readout`): at each grid state, the query
   times read from it (`stepping.schedule`), each by a last partial step and chi at its point.
   With `readout: scaled` the states and the values its read-out needs at each grid state are
   stored, and the scaled partial steps run after the stepping (`readout_scaled`). With
   `readout: corrected` the partial steps stay fused, and chi with the read-out generator
   (`generated_pass`, from the same lookup's table rows, which the fused loop stores) runs after
   the stepping as a pass of its own, vectorized (SIMD): fused, its longer latency stalled the
   chain (+0.9 us/orbit against +0.6 for a scalar pass, +0.3-0.4 for this one).

The time of step 2 is the latency of one chain (each force sets the next drift), about one
lookup's worth a step; steps 1 and 3 are independent work per sensor or per query time, and the
read-out's runs in the cycles the chain leaves idle (4.6 -> 4.3 us/orbit for the recipe).

With `lanes` K > 1 (`compiled.lanes`; step and corrected read-outs) K orbits go through steps 1
and 2 together, their chains stepped side by side, and each orbit's read-out runs after them
from its stored grid states (`readout` not fused): the same arithmetic, the same bytes, the time
of the work instead of the chain's latency.

`stop` (1, 2, 3) ends the work after that phase: the benchmark's time breakdown (with `stop` 2
the chain alone, states stored; the read-out's time is the rest). Outputs are written only with
`stop` 3.
The lookups each orbit spends are counted (`counts`): the model's force evaluations.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, literally, njit, prange

from nh_data.errors import NHError
from nh_data.jit_options import JIT, JIT_VEC, PARALLEL_JIT_FN
from nh_data.problem import N_SENSORS, T_END, V0

from ..models.processor import INVERSE_ITERATIONS
from .inputs import batch
from .lanes import check_lanes, composition, composition_inline
from .spline import (
    DERIV,
    DX,
    NCOEF,
    NI,
    build_table,
    horner_d,
    horner_d_of,
    integrals_into,
    local_into,
    locate,
    nodal_from_table,
    poly,
    poly_of,
    solve3,
    spline_table,
)
from .stepping import (
    inline_force,
    inline_step,
    kicks,
    leapfrog_step,
    schedule,
    slope,
    step,
    trajectory,
    unsort,
)

SETUP, STEPPING, READOUT = 1, 2, 3  # `stop`: the phase after which an orbit's work ends
SPLINE, LOCAL, OWN, INLINE = 0, 1, 2, 3  # `export`'s "local": `tables: spline`, `local`, `own`, `inline`
PRIOR = -1  # `chi_kind` without a processor (the prior alone)


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
    if learned and local == OWN:
        spline_table(V, cv, dtab)  # V's own table
        own_setup(W, dtab, nod, fd, slopes, ktab, atab)
        return
    if learned and local == INLINE:
        spline_table(V, cv, ktab)
        inline_table(ktab, atab, inline_coefficients(W, learned, local)[1])
        return
    if not learned or local:
        spline_table(V, cv, ktab)
        if learned:
            local_setup(V, W, ktab, nod, fd, fa, fb, slopes, dtab, atab, btab, scaled)
        return
    spline_table(V, cv, dtab)  # V''s table: the nodal derivatives, and with `scaled` dF = kernel - V'
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
def inline_table(ktab, ftab, kf):
    """`tables: inline`'s force table (`stepping.inline_force`): kf times the table of V'' from V's
    table ktab, into ftab (rows 0-3; the derivative's coefficients (r + 1) c_(r+1) / DX)."""
    for r in range(4):
        for i in range(NI):
            ftab[r, i] = (kf * DERIV[r]) * ktab[r + 1, i]


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
def start(ic, atab, btab, ktab, learned, inline=False, ka=0.0):
    """The kernel's first state and force: chi^-1 of the initial condition (Newton on
    q + A'(q) = Q, then p = P (1 + A''(q)) + B'(q)), or the initial condition; and its lookups.
    `inline`: `tables: inline` (its force from ktab and atab, `inline_table`; A' = ka V', no
    kick: btab is zero)."""
    Q = ic[0]
    P = ic[1]
    if not learned:
        i, s = locate(Q)
        return Q, P, poly(ktab, i, s), 1
    ptab, c = (ktab, ka) if inline else (atab, 1.0)  # A' = c times ptab's polynomial
    q = Q
    for _ in range(INVERSE_ITERATIONS):
        i, s = locate(q)
        q = q - (q + c * poly(ptab, i, s) - Q) / (1.0 + c * slope(q, horner_d(ptab, i, s)))
    i, s = locate(q)
    p = P * (1.0 + c * slope(q, horner_d(ptab, i, s))) + poly(btab, i, s)
    F = inline_force(ktab, atab, i, s, q) if inline else poly(ktab, i, s)
    return q, p, F, INVERSE_ITERATIONS + 1


@njit(**JIT)
def chi_at(q, p, atab, btab, i, s, c):
    """chi_c(q, p) (`processor.apply` with c) from the lookup (i, s) of the processor's tables at q."""
    p = p - c * poly(btab, i, s)
    return q + c * poly(atab, i, s), p / (1.0 + c * slope(q, horner_d(atab, i, s)))


@njit(**JIT, inline="always")
def horner_d2_of(c2, c3, c4, s):
    """The second derivative (d^2/dx^2) at s of the polynomial of a table's row (`poly_of`)."""
    return (2.0 * c2 + s * (6.0 * c3 + s * (12.0 * c4))) * (1.0 / (DX * DX))


@njit(**JIT, inline="always")
def processor_of(kind, a0, a1, a2, a3, a4, b0, b1, b2, b3, b4, s):
    """The processor's values (A', A'', B') at s of an interval whose rows of the A' and B'
    tables are a0..a4, b0..b4, for a kind of table known when the loop compiles. LOCAL: A' and
    B' local cubics (rows 0-3), A'' quadratic; OWN: A' quartic from V's own table, no kick;
    SPLINE: A', B' from quintic splines."""
    if kind == LOCAL:
        s2 = s * s
        b = (b0 + b1 * s) + s2 * (b2 + b3 * s)
        return (a0 + a1 * s) + s2 * (a2 + a3 * s), (a1 + (2.0 * a2) * s + (3.0 * a3) * s2) * (1.0 / DX), b
    if kind == OWN:
        return poly_of(a0, a1, a2, a3, a4, s), horner_d_of(a1, a2, a3, a4, s), 0.0
    return poly_of(a0, a1, a2, a3, a4, s), horner_d_of(a1, a2, a3, a4, s), poly_of(b0, b1, b2, b3, b4, s)


@njit(**JIT, inline="always")
def processor_at(kind, atab, btab, i, s):
    """`processor_of` at a read-out point from the lookup (i, s) made there."""
    return processor_of(kind, atab[0, i], atab[1, i], atab[2, i], atab[3, i], atab[4, i],
                        btab[0, i], btab[1, i], btab[2, i], btab[3, i], btab[4, i], s)  # fmt: skip


GATHERED = 16  # `readout: corrected`'s rows per read-out point: F, s, A' (5), B' (5), the kernel's rows 1-4
# (stored by the fused loop at the point's lookup, where the stepping leaves the cycles idle: a
# gathering pass of its own after the stepping cost 0.2-0.3 us/orbit more)


@njit(**JIT_VEC)
def generated_pass(kind, nt, h, r0, r1, rest, side, q_out, p_out):
    """`processor.apply_generated` at each read-out point (q_out, p_out on entry: the partial
    step's end): chi with the read-out generator of weights (12 r0, 12 r1) and eps = tau (h^2 -
    tau^2) folded in, from the values the fused loop stored in side (F the kernel's force there; V''
    and V''' from the same row of the kernel's table). No further lookup; with eps r0 = eps r1 =
    0 it is `chi_kind` (the same bytes: the root of the quadratic is then c / b exactly). The
    points are independent and read from rows, so that the loop runs vectorized (SIMD; numpy's
    error model: no branch per division)."""
    for j in range(nt):
        q, s, F, dt = q_out[j], side[1, j], side[0, j], rest[j]
        eps = dt * (h * h - dt * dt)
        disp, a2x, b = processor_of(kind, side[2, j], side[3, j], side[4, j], side[5, j], side[6, j],
                                    side[7, j], side[8, j], side[9, j], side[10, j], side[11, j], s)  # fmt: skip
        k1, k2, k3, k4 = side[12, j], side[13, j], side[14, j], side[15, j]
        v2, v3 = slope(q, horner_d_of(k1, k2, k3, k4, s)), slope(q, horner_d2_of(k2, k3, k4, s))
        g0, g1 = eps * r0, eps * r1
        bb = 1.0 + slope(q, a2x)
        c = p_out[j] - b + g1 * F * v2
        P = (2.0 * c) / (bb + math.copysign(math.sqrt(max(bb * bb + (4.0 * (g0 * v3)) * c, 0.0)), bb))
        q_out[j] = q + disp + (2.0 * g0) * P * v2
        p_out[j] = P


@njit(**JIT, inline="always")
def chi_kind(kind, q, p, ktab, atab, btab, i, s, ka):
    """chi at a read-out point from the lookup (i, s) the read-out's last substep made there (the
    same lookup), for a kind known when the loop compiles (`numba.literally`): the branches not
    taken are pruned, so that the fused loop has no branch on the kind and the formula of its
    own (a branch inside the loop, or one formula for all kinds, costs 0.2 to 2 us/orbit of the
    overlap, measured). PRIOR: the prior alone; INLINE: A' = ka V' from V's table (`tables:
    inline`); the others: `processor_at`'s tables."""
    if kind == PRIOR:
        return q, p
    if kind == INLINE:  # A' = ka V', from the row of V's table the partial step's force read
        return q + ka * poly(ktab, i, s), p / (1.0 + ka * slope(q, horner_d(ktab, i, s)))
    disp, a2x, b = processor_at(kind, atab, btab, i, s)
    return q + disp, (p - b) / (1.0 + slope(q, a2x))


@njit(**JIT, inline="always")
def partial_step(kind, single, q, p, F, ktab, subs, dt, ftab):
    """The step read-out's last partial step of dt from the grid state (q, p) with force F there,
    with the prior's substeps (`single` 1: leapfrog, one substep; a literal, so that the other
    branch is pruned): the point, its force and its lookup (i, s). INLINE: the force
    `stepping.inline_force` with the force table ftab."""
    if single == 1:
        pr = p - (0.5 * dt) * F
        qr = q + dt * pr
        i, s = locate(qr)
        Fr = inline_force(ktab, ftab, i, s, qr) if kind == INLINE else poly(ktab, i, s)
        return qr, pr - (0.5 * dt) * Fr, Fr, i, s
    qr, pr, Fr, i, s = q, p, F, 0, 0.0
    for m in range(subs.shape[0]):
        a = subs[m]
        pr = pr - (0.5 * a) * dt * Fr
        qr = qr + a * dt * pr
        i, s = locate(qr)
        Fr = poly(ktab, i, s)
        pr = pr - (0.5 * a) * dt * Fr
    return qr, pr, Fr, i, s


@njit(**JIT, inline="always")
def emit(kind, gen, qr, pr, Fr, i, s, ktab, atab, btab, side, q_out, p_out, j, ka):
    """Query j's output from its partial step's end (qr, pr), force Fr and lookup (i, s): chi
    there (`chi_kind`), or with `gen` (`readout: corrected`) the point and the rows the generator's
    pass reads (`GATHERED`), for `generated_pass` to finish."""
    if gen == 1:
        q_out[j], p_out[j] = qr, pr
        side[0, j], side[1, j] = Fr, s
        for r in range(5):
            side[2 + r, j] = atab[r, i]
            side[7 + r, j] = btab[r, i]
        for r in range(4):
            side[12 + r, j] = ktab[1 + r, i]
    else:
        q_out[j], p_out[j] = chi_kind(kind, qr, pr, ktab, atab, btab, i, s, ka)


@njit(**JIT)
def _readout(kind, single, gen, fused, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka):
    """`readout` for one kind of chi, one prior and one read-out, all known when it compiles
    (`numba.literally`): `single` 1 for leapfrog (one substep: no substep loop, pruned with the
    other branches), 0 for a composition of substeps; `gen` 1 for `readout: corrected`
    (`generated_pass`, weights rw), 0 for the plain step read-out. Each read-out a step of its
    rest with the prior's substeps, then chi. `fused`: the stepping from (q, p, F) with the
    read-out fused in; else the read-out alone, from the stored grid states qs, ps, fs."""
    literally(kind)
    literally(single)
    literally(gen)
    nt = kidx.shape[0]
    if not fused:  # `compiled.lanes`: the same arithmetic from the stored states
        for j in range(nt):
            n = kidx[j]
            qr, pr, Fr, i, s = partial_step(kind, single, qs[n], ps[n], fs[n], ktab, subs, rest[j], atab)
            emit(kind, gen, qr, pr, Fr, i, s, ktab, atab, btab, side, q_out, p_out, j, ka)
    else:
        j = 0
        ph = p - kick[0] * F
        for n in range(nsteps + 1):
            while j < nt and kidx[j] == n:
                qr, pr, Fr, i, s = partial_step(kind, single, q, p, F, ktab, subs, rest[j], atab)
                emit(kind, gen, qr, pr, Fr, i, s, ktab, atab, btab, side, q_out, p_out, j, ka)
                j += 1
            if n == nsteps:
                break
            if kind == INLINE:
                q, F, p, ph = inline_step(q, ph, ktab, atab, h, kick[1], kick[2])
            elif single == 1:
                q, F, p, ph = leapfrog_step(q, ph, ktab, h, kick)
            else:
                q, F, p, ph = step(q, ph, ktab, subs, h, kick)
    if gen == 1:  # the generator's map: a vectorized pass of its own (fused, its latency stalls the chain)
        generated_pass(kind, nt, h, rw[0] / 12.0, rw[1] / 12.0, rest, side, q_out, p_out)


@njit(**JIT)
def readout(fused, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, learned, local, gen, kidx, rest, rw, side, q_out, p_out, ka=0.0):
    """The step read-out of one orbit's queries (kidx, rest: `stepping.schedule`, top: the steps)
    into q_out, p_out in that order; with `gen` (`readout: corrected`) chi carries the read-out
    generator of weights rw. `fused`: fused into the stepping (nsteps steps of h from q, p, F),
    where the partial steps do not wait on the chain but run in the cycles it leaves idle; else
    from the grid states qs, ps, fs stored by `lanes.composition`. `_readout` compiles once per
    prior, per kind of chi (`chi_kind`) and per read-out: a branch on any of them inside the
    loop, or the substep loop for leapfrog, costs the overlap. ka: `tables: inline`'s A' = ka V'."""
    single = subs.shape[0] == 1
    if gen and single:
        _kinds(1, 1, fused, learned, local, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)
    elif gen:
        _kinds(1, 0, fused, learned, local, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)
    elif single:
        _kinds(0, 1, fused, learned, local, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)
    else:
        _kinds(0, 0, fused, learned, local, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)


@njit(**JIT)
def _kinds(gen, single, fused, learned, local, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka):
    """`_readout` with the kind of chi as a literal too, for literal `gen` and `single`."""
    literally(gen)
    literally(single)
    if not learned:
        _readout(PRIOR, single, 0, fused, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)
    elif local == INLINE:
        _readout(INLINE, single, 0, fused, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)
    elif local == OWN:
        _readout(OWN, single, gen, fused, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)
    elif local:
        _readout(LOCAL, single, gen, fused, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)
    else:
        _readout(SPLINE, single, gen, fused, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, nsteps, kidx, rest, rw, side, q_out, p_out, ka)


@njit(**JIT)
def readout_scaled(h, ktab, dtab, atab, btab, qs, ps, fs, side, kidx, rest, q_out, p_out):
    """`models.processed._scaled_flow`: chi_c o S_tau o chi_(1 - c) of the grid state before each
    query time (kidx, rest: `stepping.schedule`), c = (tau / h)^2, S_tau a leapfrog step on
    V + c dV; two passes after the stepping (not fused). Returns its lookups."""
    nt = kidx.shape[0]
    for j in range(nt):  # chi_(1 - c), the first half kick, the drift
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
    for j in range(nt):  # the second half kick and chi_c, one lookup at the point
        tau = rest[j]
        c = (tau / h) ** 2
        q = q_out[j]
        i, s = locate(q)
        p = p_out[j] - (0.5 * tau) * (poly(ktab, i, s) + (c - 1.0) * poly(dtab, i, s))
        q_out[j], p_out[j] = chi_at(q, p, atab, btab, i, s, c)
    return nt


@njit(**JIT)
def inline_coefficients(W, learned, local):
    """(inline, kf, ka): whether the kernel is `tables: inline`'s, its force V' + kf V' V''
    (`stepping.inline_force`; kf twice the raw weight of V'^2 in dV, h^2 folded in, `export`) and
    the processor's A' = ka V' (ka the raw weight of V' in a); (False, 0, 0) for every other kind."""
    if learned and local == INLINE:
        return True, 2.0 * W[0, 4], W[1, 1]
    return False, 0.0, 0.0


@njit(**JIT)
def orbit(V, t, ic, W, subs, steps, flags, rw, stop, work, q_out, p_out):
    """One orbit: V (100), t (W,), ic (2,) -> q_out, p_out (W,); returns its lookups. flags:
    (learned, local, scaled, corrected) (`export`); rw: the read-out generator's weights; work:
    `_work`."""
    cv, ck, ca, cb, nod, fa, fb, fd, slopes, ktab, dtab, atab, btab, qs, ps, fs, side, kick, kidx, rest, order, qw, pw, gside = work
    learned, local, scaled = flags[0], flags[1], flags[2] and flags[0]
    inline, _, ka = inline_coefficients(W, learned, local)
    setup(V, W, learned, local, scaled, cv, ck, ca, cb, nod, fa, fb, fd, slopes, ktab, dtab, atab, btab)
    if stop == SETUP:
        return 0
    h = T_END / steps
    ordered = schedule(t, h, steps, False, kidx, rest, order)
    qo, po = (q_out, p_out) if ordered else (qw, pw)  # unsorted times: sorted, then put back
    nt = kidx.shape[0]
    kmax = kidx[nt - 1] if nt else 0  # the whole steps before the last query time
    q, p, F, count = start(ic, atab, btab, ktab, learned, inline, ka)
    nsub = subs.shape[0]
    if scaled:
        trajectory_side(q, p, F, ktab, dtab, atab, btab, h, kmax, qs, ps, fs, side)
        count += 2 * kmax + 1  # a lookup a step, the grid states' values
        if stop == STEPPING:
            return count
        count += readout_scaled(h, ktab, dtab, atab, btab, qs, ps, fs, side, kidx, rest, qo, po)
    else:
        kicks(subs, h, kick)
        if stop == STEPPING:  # the chain alone, states stored (the benchmark's breakdown)
            trajectory(q, p, F, ktab, subs, h, kick, kmax, qs, ps, fs)
            return count + kmax * nsub
        gen = flags[3] and learned
        readout(True, q, p, F, qs, ps, fs, ktab, atab, btab, subs, h, kick, kmax, learned, local, gen, kidx, rest, rw, gside, qo, po, ka)
        count += (kmax + nt) * nsub
    if not ordered:
        unsort(order, qw, pw, q_out, p_out)
    return count


@njit(**JIT)
def _setup_work():
    """The set-up's work arrays (`setup`: cv, ck, ca, cb, nod, fa, fb, fd, slopes)."""
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
    )


@njit(**JIT)
def _work(steps, nt):
    """The work arrays of `orbit` (made once per call, or once per thread)."""
    return _setup_work() + (
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
        np.empty(nt, dtype=np.int64),
        np.empty(nt),
        np.empty(nt),
        np.empty((GATHERED, nt)),  # `readout: corrected`: the force, s and the tables' rows at each read-out point
    )


@njit(**JIT)
def _lanes_work(K, steps, nt):
    """`_work`'s set-up arrays once, and per lane its tables, schedule, state and grid states
    (`lanes`; no scaled read-out)."""
    return _setup_work() + (
        np.zeros((5, NI)),
        np.empty((K, 5, NI)),
        np.empty((K, 5, NI)),
        np.zeros((K, 5, NI)),  # btab: zero unless written (`tables: own` has no kick)
        np.empty(8),
        np.empty((K, nt), dtype=np.int64),
        np.empty((K, nt)),
        np.empty((K, nt), dtype=np.int64),
        np.empty(K, dtype=np.int64),  # 1 where the lane's times are sorted
        np.empty((2, K)),  # each lane's q and ph (half a kick ahead)
        np.empty((3, K, steps + 1)),  # the grid states q, p, F
        np.empty(nt),
        np.empty(nt),
        np.empty((GATHERED, nt)),
    )


@njit(**JIT)
def inline_pass(qs, ps, fs, ktab, ftab, kidx, rest, ka, q_out, p_out):
    """`tables: inline`'s read-out of one orbit from its stored grid states: `_readout`'s
    arithmetic for kind INLINE (a leapfrog partial step, chi from the same row of V's table)."""
    for j in range(kidx.shape[0]):
        n = kidx[j]
        qr, pr, _, i, s = partial_step(INLINE, 1, qs[n], ps[n], fs[n], ktab, ktab, rest[j], ftab)
        q_out[j], p_out[j] = chi_kind(INLINE, qr, pr, ktab, ktab, ktab, i, s, ka)


@njit(**JIT)
def _block(V, t, ic, W, subs, steps, flags, rw, stop, lw, b0, L, q_out, p_out, counts):
    """Orbits b0..b0+L-1 in L lanes (`compiled.lanes`): each orbit's set-up, schedule and chi^-1;
    the L chains side by side; then each orbit's read-out from its stored grid states. The
    arithmetic of `orbit`, so the same bytes and counts."""
    cv, ck, ca, cb, nod, fa, fb, fd, slopes, dtab, ktabs, atabs, btabs, kick, kidx, rest, order, ordered, st, grid, qw, pw, gside = lw
    learned, local = flags[0], flags[1]
    inline, _, ka = inline_coefficients(W, learned, local)
    h = T_END / steps
    kicks(subs, h, kick)
    nt = kidx.shape[1]
    nsub = subs.shape[0]
    n1 = 0
    for k in range(L):
        b = b0 + k
        setup(V[b], W, learned, local, 0, cv, ck, ca, cb, nod, fa, fb, fd, slopes, ktabs[k], dtab, atabs[k], btabs[k])
        counts[b] = 0
        if stop == SETUP:
            continue
        ordered[k] = schedule(t[b], h, steps, False, kidx[k], rest[k], order[k])
        kmax = kidx[k, nt - 1] if nt else 0
        n1 = max(n1, kmax)
        q, p, F, count = start(ic[b], atabs[k], btabs[k], ktabs[k], learned, inline, ka)
        st[0, k], st[1, k] = q, p - kick[0] * F
        grid[0, k, 0], grid[1, k, 0], grid[2, k, 0] = q, p, F
        counts[b] = count + (kmax if stop == STEPPING else kmax + nt) * nsub
    if stop == SETUP:
        return
    if inline:
        composition_inline(L, st[0], st[1], ktabs, atabs, h, kick, n1, grid[0], grid[1], grid[2])
    else:
        composition(L, st[0], st[1], ktabs, subs, h, kick, n1, grid[0], grid[1], grid[2])
    if stop == STEPPING:
        return
    gen = flags[3] and learned
    for k in range(L):
        b = b0 + k
        qo, po = (q_out[b], p_out[b]) if ordered[k] else (qw, pw)
        if inline:
            inline_pass(grid[0, k], grid[1, k], grid[2, k], ktabs[k], atabs[k], kidx[k], rest[k], ka, qo, po)
        else:
            readout(False, 0.0, 0.0, 0.0, grid[0, k], grid[1, k], grid[2, k], ktabs[k], atabs[k], btabs[k], subs, h,
                    kick, 0, learned, local, gen, kidx[k], rest[k], rw, gside, qo, po, ka)  # fmt: skip
        if not ordered[k]:
            unsort(order[k], qw, pw, q_out[b], p_out[b])


@njit(**JIT)
def _range(V, t, ic, W, subs, steps, flags, rw, stop, lanes, lo, hi, q_out, p_out, counts):
    """Orbits lo..hi-1 on the calling thread: one at a time with the read-out fused (`lanes` 1),
    or in blocks of `lanes` orbits stepped side by side (`_block`)."""
    if lanes == 1:
        work = _work(steps, t.shape[1])
        for b in range(lo, hi):
            counts[b] = orbit(V[b], t[b], ic[b], W, subs, steps, flags, rw, stop, work, q_out[b], p_out[b])
        return
    lw = _lanes_work(lanes, steps, t.shape[1])
    for b0 in range(lo, hi, lanes):
        _block(V, t, ic, W, subs, steps, flags, rw, stop, lw, b0, min(lanes, hi - b0), q_out, p_out, counts)


@njit(**JIT)
def forward_serial(V, t, ic, W, subs, steps, flags, rw, stop, lanes, q_out, p_out, counts):
    """All orbits on the calling thread."""
    _range(V, t, ic, W, subs, steps, flags, rw, stop, lanes, 0, V.shape[0], q_out, p_out, counts)


@njit(**PARALLEL_JIT_FN)  # not cached: Numba cannot cache a parallel kernel with global arrays
def forward_parallel(V, t, ic, W, subs, steps, flags, rw, stop, lanes, q_out, p_out, counts):
    """Orbits in one contiguous chunk per thread."""
    B = V.shape[0]
    chunks = max(1, min(B, get_num_threads()))
    for c in prange(chunks):
        _range(V, t, ic, W, subs, steps, flags, rw, stop, lanes, c * B // chunks, (c + 1) * B // chunks, q_out, p_out, counts)


def forward(params: dict, V, t, ic, parallel: bool = False, stop: int = READOUT, counts: bool = False, lanes: int = 1):
    """(q, p) (B, W) of the exported model `params` (`compiled.export`) at the query times t
    (B, W) in [0, 2] from V (B, 100) and ic (B, 2), float64; with `counts` also the lookups
    (force evaluations) each orbit spent. `lanes` > 1 steps that many orbits side by side on each
    thread (`compiled.lanes`; not with `readout: scaled`): the same results, in less time."""
    lanes = check_lanes(lanes)
    if lanes > 1 and params["scaled"] and params["learned"]:
        raise NHError("lanes > 1 needs readout step or corrected; readout scaled runs one orbit at a time")
    V, t, ic = batch(V, t, ic)
    B, nt = t.shape
    q, p = np.empty((B, nt)), np.empty((B, nt))  # every element is written (with `stop` < READOUT none)
    n = np.empty(B, dtype=np.int64)
    flags = np.array([params["learned"], params["local"], params["scaled"], params["corrected"]], dtype=np.int64)
    fn = forward_parallel if parallel else forward_serial
    fn(V, t, ic, params["weights"], params["subs"], params["steps"], flags, params["generator"], stop, lanes, q, p, n)
    return (q, p, n) if counts else (q, p)
