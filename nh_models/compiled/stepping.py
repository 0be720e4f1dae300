"""Fixed-step compositions of Strang substeps on a sensor-spline table, and the cubic Hermite
read-out, in Numba: the stepping shared by the compiled SympONet (`compiled.processed`) and the
compiled baselines (`compiled.integrators`), the arithmetic of `models.processed.step` /
`trajectory` / `hermite`.

The stepping is a chain of dependent operations (the force at each drift's end sets the next
kick): its time is the chain's latency, so the half kicks of neighbouring substeps are merged
into one (`kicks`), which shortens the chain by a multiply-subtract a substep; the results differ
from the torch code's two half kicks by rounding only.
"""

from __future__ import annotations

import math

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


@njit(**JIT)
def trajectory(q, p, F, ktab, subs, h, kick, nsteps, qs, ps, fs):
    """nsteps fixed steps of h from (q, p) with force F there: states and forces at every grid
    point into qs, ps, fs[0..nsteps]. kick: `kicks(subs, h)`. The momentum runs half a kick ahead
    (ph); the grid momentum is read off it."""
    nsub = subs.shape[0]
    qs[0] = q
    ps[0] = p
    fs[0] = F
    ph = p - kick[0] * F
    for n in range(nsteps):
        for j in range(nsub):
            q = q + (subs[j] * h) * ph
            i, s = locate(q)
            F = poly(ktab, i, s)
            if j < nsub - 1:
                ph = ph - kick[j + 1] * F
        qs[n + 1] = q
        ps[n + 1] = ph - kick[nsub] * F
        fs[n + 1] = F
        ph = ph - kick[nsub + 1] * F


@njit(**JIT)
def hermite(qs, ps, fs, nstates, h, t, q_out, p_out):
    """Cubic Hermite interpolation of the grid states qs, ps [0..nstates) with forces fs = V'(q)
    at the query times t (W,), into q_out, p_out (`models.processed.hermite`)."""
    for j in range(t.shape[0]):
        x = t[j] / h
        k = math.floor(x)
        if not (k <= nstates - 2):
            k = nstates - 2.0
        if not (k >= 0.0):
            k = 0.0
        s = x - k
        kk = int(k)
        h00 = (1 + 2 * s) * (1 - s) ** 2
        h10 = s * (1 - s) ** 2
        h01 = s * s * (3 - 2 * s)
        h11 = s * s * (s - 1)
        q_out[j] = h00 * qs[kk] + h * h10 * ps[kk] + h01 * qs[kk + 1] + h * h11 * ps[kk + 1]
        p_out[j] = h00 * ps[kk] - h * h10 * fs[kk] + h01 * ps[kk + 1] - h * h11 * fs[kk + 1]
