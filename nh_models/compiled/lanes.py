"""Orbits in lanes: the fixed-step chains of several orbits interleaved on one thread (`lanes`
K of `processed.forward` and `integrators.integrate`).

One orbit's stepping is a chain of dependent operations: each lookup's force sets the next drift,
and the core waits on it. K orbits stepped side by side, one step (or one stage) of each in turn,
give the core K independent chains to overlap, so that the time per orbit becomes the work of
its steps rather than their latency. Every grid state is stored, and each orbit's query times
are read out after its chain in a pass of their own (`hermite_pass` here, the model's in
`processed`): the same arithmetic as the read-out fused into one orbit's stepping, so the same
bytes whatever K is.

The chains here advance lanes 0..L-1 from their states at grid state 0 (arrays (K,)) to grid
state n1, writing the grid states into qs, ps, fs (K, steps + 1) at columns 1..n1.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit

from nh_data.jit_options import JIT

from .spline import locate, poly
from .stepping import hermite_at, inline_step, leapfrog_step, step

LANES_MAX = 64  # the most lanes `processed.forward` and `integrators.integrate` take


def check_lanes(lanes) -> int:
    """`lanes` (a Python or numpy integer, not a bool) as an int in 1..LANES_MAX, or an NHError
    naming the value."""
    from nh_data.errors import NHError

    if isinstance(lanes, (bool, np.bool_)) or not isinstance(lanes, numbers.Integral) or not 1 <= lanes <= LANES_MAX:
        raise NHError(f"lanes must be an integer in 1..{LANES_MAX}, got {lanes!r}")
    return int(lanes)


@njit(**JIT)
def composition(L, q0, ph0, tabs, subs, h, kick, n1, qs, ps, fs):
    """`stepping.trajectory` of L lanes side by side, from grid state 0 (q0, ph0: the momentum
    half a kick ahead, `stepping.kicks`) to n1, lane k on the table tabs[k]; the lanes' states in
    arrays of its own (`rk4`)."""
    q, ph = q0[:L].copy(), ph0[:L].copy()
    if subs.shape[0] == 1:  # leapfrog: no substep loop (`stepping.leapfrog_step`)
        for n in range(n1):
            for k in range(L):
                qk, F, p, phk = leapfrog_step(q[k], ph[k], tabs[k], h, kick)
                q[k], ph[k] = qk, phk
                qs[k, n + 1], ps[k, n + 1], fs[k, n + 1] = qk, p, F
        return
    for n in range(n1):
        for k in range(L):
            qk, F, p, phk = step(q[k], ph[k], tabs[k], subs, h, kick)
            q[k], ph[k] = qk, phk
            qs[k, n + 1], ps[k, n + 1], fs[k, n + 1] = qk, p, F


@njit(**JIT)
def composition_inline(L, q0, ph0, tabs, ftabs, h, kick, n1, qs, ps, fs):
    """`composition` of leapfrog with `tables: inline`'s force (`stepping.inline_step`), lane k on
    V's table tabs[k] and its force table ftabs[k] (`processed.inline_table`)."""
    q, ph = q0[:L].copy(), ph0[:L].copy()
    k1, k2 = kick[1], kick[2]  # read once: the stores below might alias kick for the compiler
    for n in range(n1):
        for k in range(L):
            qk, F, p, phk = inline_step(q[k], ph[k], tabs[k], ftabs[k], h, k1, k2)
            q[k], ph[k] = qk, phk
            qs[k, n + 1], ps[k, n + 1], fs[k, n + 1] = qk, p, F


@njit(**JIT, inline="always")
def rk4_inner(q, p, F, h):
    """The positions of RK4's second and third stages (both known from the step's start)."""
    return q + 0.5 * h * p, q + 0.5 * h * (p + 0.5 * h * -F)


@njit(**JIT, inline="always")
def rk4_last(q, p, k2p, h):
    """The position of RK4's fourth stage, from the second stage's force term k2p = -F."""
    return q + h * (p + 0.5 * h * k2p)


@njit(**JIT, inline="always")
def rk4_update(q, p, F, k2p, k3p, k4p, h):
    """RK4's step from (q, p) with force F there and the stages' force terms k = -F."""
    k1q = p
    k1p = -F
    k2q = p + 0.5 * h * k1p
    k3q = p + 0.5 * h * k2p
    k4q = p + h * k3p
    return q + h / 6 * (k1q + 2 * k2q + 2 * k3q + k4q), p + h / 6 * (k1p + 2 * k2p + 2 * k3p + k4p)


@njit(**JIT)
def rk4(L, q0, p0, F0, tabs, h, n1, qs, ps, fs):
    """Classic RK4 of L lanes side by side, stage by stage (each stage's lookups of all lanes are
    independent), from the states q0, p0, F0 (L,) at grid state 0 to n1. The lanes' states are
    arrays of this function's own, so that the compiler knows no store to qs, ps, fs changes them
    (with the caller's arrays it must assume so, and keeps every lane's loads behind the stores:
    7-15 % slower, measured)."""
    q, p, F, k2, k3, k4 = q0[:L].copy(), p0[:L].copy(), F0[:L].copy(), np.empty(L), np.empty(L), np.empty(L)
    for n in range(n1):
        for k in range(L):
            x2, _ = rk4_inner(q[k], p[k], F[k], h)
            k2[k] = -poly(tabs[k], *locate(x2))
        for k in range(L):
            _, x3 = rk4_inner(q[k], p[k], F[k], h)
            k3[k] = -poly(tabs[k], *locate(x3))
        for k in range(L):
            k4[k] = -poly(tabs[k], *locate(rk4_last(q[k], p[k], k2[k], h)))
        for k in range(L):
            q1, p1 = rk4_update(q[k], p[k], F[k], k2[k], k3[k], k4[k], h)
            q[k], p[k] = q1, p1
        for k in range(L):
            F[k] = poly(tabs[k], *locate(q[k]))
            qs[k, n + 1], ps[k, n + 1], fs[k, n + 1] = q[k], p[k], F[k]


@njit(**JIT)
def hermite_pass(qs, ps, fs, h, kidx, rest, q_out, p_out):
    """The cubic Hermite read-out of one orbit's query times (`stepping.schedule` with phase) from
    its stored grid states (`stepping.trajectory_hermite`'s arithmetic)."""
    for j in range(kidx.shape[0]):
        n = kidx[j]
        q_out[j], p_out[j] = hermite_at(qs[n], ps[n], fs[n], qs[n + 1], ps[n + 1], fs[n + 1], h, rest[j])
