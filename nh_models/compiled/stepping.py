"""Fixed-step compositions of Strang substeps on a sensor-spline table, and the cubic Hermite
read-out, in Numba: the stepping shared by the compiled SympONet (`compiled.processed`) and the
compiled baselines (`compiled.integrators`), the arithmetic of `models.processed.step` /
`trajectory` / `hermite`.

The stepping is a chain of dependent operations (the force at each drift's end sets the next
kick): its time is the chain's latency, so the half kicks of neighbouring substeps are merged
into one (`kicks`), which shortens the chain by a multiply-subtract a substep; the results differ
from the torch code's two half kicks by rounding only.

The read-out of each query time is fused into the stepping (`trajectory_hermite` here,
`processed.readout`): the queries are visited in the order of their grid interval
(`schedule`) and each is read out as soon as the states it needs exist. Its work does not wait
on the chain, so it runs in the cycles the chain leaves idle instead of in a pass of its own
(2026-12-07, one core: RK4 at dt = 0.02 3.4 us/orbit instead of 4.1; docs/benchmarks.md).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from nh_data.jit_options import JIT

from .spline import locate, poly


@njit(**JIT)
def kicks(subs, dt, out):
    """The kick coefficients of one step of dt of the composition of Strang substeps with drift
    weights subs (n): out[0] = subs[0] dt / 2 before the first drift, out[j] = (subs[j-1] +
    subs[j]) dt / 2 between drifts j - 1 and j (the half kicks of neighbouring substeps merged),
    out[n] = subs[n-1] dt / 2 after the last, out[n + 1] = out[n] + out[0]: the last half kick
    merged with the next step's first."""
    n = subs.shape[0]
    out[0] = 0.5 * subs[0] * dt
    for j in range(1, n):
        out[j] = 0.5 * (subs[j - 1] + subs[j]) * dt
    out[n] = 0.5 * subs[n - 1] * dt
    out[n + 1] = out[n] + out[0]


@njit(**JIT, inline="always")
def step(q, ph, ktab, subs, h, kick):
    """One step of h of the composition from q with the momentum ph half a kick ahead (`kicks`):
    the new q, the force F there, the grid momentum and the next ph."""
    nsub = subs.shape[0]
    F = 0.0
    for j in range(nsub):
        q = q + (subs[j] * h) * ph
        i, s = locate(q)
        F = poly(ktab, i, s)
        if j < nsub - 1:
            ph = ph - kick[j + 1] * F
    return q, F, ph - kick[nsub] * F, ph - kick[nsub + 1] * F


@njit(**JIT, inline="always")
def leapfrog_step(q, ph, ktab, h, kick):
    """`step` with one substep, without the substep loop: inside a loop that also runs a read-out
    with lookups of its own (`processed.readout`) that loop's unknown trip count keeps
    the compiler from interleaving the read-out with the chain (5.8 against 4.3 us/orbit)."""
    q = q + h * ph
    i, s = locate(q)
    F = poly(ktab, i, s)
    return q, F, ph - kick[1] * F, ph - kick[2] * F


@njit(**JIT)
def slope(q, a2):
    """`processor.slope`: a derivative read at q inside the box, 0 outside (the lookup holds the
    table's value at the box's end there): A'' of the processor, V'' of `inline_force`."""
    return a2 if (q >= 0.0 and q <= 1.0) else 0.0


@njit(**JIT, inline="always")
def inline_force(ktab, ftab, i, s, q):
    """`tables: inline`'s kernel force at q from the lookup (i, s): V' + kf V' V'', with V' from
    V's table and kf V'' from ftab, the table of V'' times kf (`processed.inline_table`; zero
    outside the box, where the lookup holds V' constant). Both in Estrin's scheme: each step's
    chain waits on the force, and this keeps it one multiply-add longer than the prior's."""
    v1 = poly(ktab, i, s)
    s2 = s * s
    w = (ftab[0, i] + ftab[1, i] * s) + s2 * (ftab[2, i] + ftab[3, i] * s)
    return v1 + v1 * slope(q, w)


@njit(**JIT, inline="always")
def inline_step(q, ph, ktab, ftab, h, k1, k2):
    """`leapfrog_step` with `inline_force`, the kicks k1 = kick[1], k2 = kick[2] (`kicks`)."""
    q = q + h * ph
    i, s = locate(q)
    F = inline_force(ktab, ftab, i, s, q)
    return q, F, ph - k1 * F, ph - k2 * F


@njit(**JIT)
def trajectory(q, p, F, ktab, subs, h, kick, nsteps, qs, ps, fs):
    """nsteps fixed steps of h from (q, p) with force F there: states and forces at every grid
    point into qs, ps, fs[0..nsteps]. kick: `kicks(subs, h)`. The momentum runs half a kick ahead
    (ph); the grid momentum is read off it."""
    qs[0] = q
    ps[0] = p
    fs[0] = F
    ph = p - kick[0] * F
    for n in range(nsteps):
        q, F, p, ph = step(q, ph, ktab, subs, h, kick)
        qs[n + 1] = q
        ps[n + 1] = p
        fs[n + 1] = F


@njit(**JIT)
def schedule(t, h, top, phase, kidx, rest, order):
    """For each query time t_j (W,) its grid index k = floor(t_j / h) clamped to [0, top] (a NaN
    time reads index 0) and the remainder (`phase` false: t_j - k h, the time of a partial step;
    true: t_j / h - k, the phase of a Hermite interval), into kidx, rest in the order of k: the
    query times' own order when they are sorted (the data's are; returns True), else sorted by k
    with order[m] the query of position m (returns False; `unsort` puts outputs back)."""
    ordered = True
    last = 0
    for j in range(t.shape[0]):
        x = t[j] / h
        k = math.floor(x)
        if not (k >= 0.0):  # NaN too
            k = 0.0
        if not (k <= top):
            k = float(top)
        kidx[j] = int(k)
        rest[j] = x - k if phase else t[j] - k * h
        ordered &= kidx[j] >= last
        last = kidx[j]
    if not ordered:
        order[:] = np.argsort(kidx, kind="mergesort")
        kidx[:] = kidx[order]
        rest[:] = rest[order]
    return ordered


@njit(**JIT)
def unsort(order, qw, pw, q_out, p_out):
    """Outputs computed in `schedule`'s order (qw, pw) into the query times' own order."""
    for m in range(order.shape[0]):
        q_out[order[m]] = qw[m]
        p_out[order[m]] = pw[m]


@njit(**JIT, inline="always")
def hermite_at(q0, p0, f0, q1, p1, f1, h, s):
    """Cubic Hermite interpolation at phase s in [0, 1] of the step of h between the states
    (q0, p0) and (q1, p1) with forces f0, f1 = V'(q) (`models.processed.hermite`)."""
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return (h00 * q0 + h * h10 * p0 + h01 * q1 + h * h11 * p1,
            h00 * p0 - h * h10 * f0 + h01 * p1 - h * h11 * f1)  # fmt: skip


@njit(**JIT)
def trajectory_hermite(q, p, F, ktab, subs, h, kick, nsteps, kidx, rest, q_out, p_out):
    """`trajectory` with the cubic Hermite read-out fused in: after each step, the queries of its
    interval (kidx, rest: `schedule` with top nsteps - 1 and phase) from the two states, into
    q_out, p_out (in `schedule`'s order)."""
    nt = kidx.shape[0]
    j = 0
    ph = p - kick[0] * F
    for n in range(nsteps):
        q0, p0, f0 = q, p, F
        q, F, p, ph = step(q, ph, ktab, subs, h, kick)
        while j < nt and kidx[j] == n:
            q_out[j], p_out[j] = hermite_at(q0, p0, f0, q, p, F, h, rest[j])
            j += 1
