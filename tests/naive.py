"""Test-only helpers on the data engine (as stumpy keeps tests/naive.py): a fixed-step
integrator for the order tests and a spline's interior breakpoints. Not part of the library."""

from __future__ import annotations

import numpy as np

from nh_data.adaptive import DOP853, EmbeddedRK
from nh_data.integrators import _RK, _integrate_one


def integrate_fixed(dV, params, q0: float, p0: float, t_out, dt: float, method: EmbeddedRK = DOP853):
    """Integrate with the main formula of `method` at fixed steps <= dt (for order tests); (q, p)."""
    t_out = np.ascontiguousarray(t_out, dtype=np.float64)
    params = np.ascontiguousarray(params, dtype=np.float64)
    rk = method.fixed_step()
    q_out = np.empty_like(t_out)
    p_out = np.empty_like(t_out)
    w = np.zeros(1)
    _integrate_one(dV, params, float(q0), float(p0), t_out, float(dt), _RK, w, rk.a, rk.b, q_out, p_out)
    return q_out, p_out


def interior_breaks(params: np.ndarray) -> np.ndarray:
    """Interior breakpoints (the knots where V''' jumps) of a packed params row."""
    n = int(params[0])
    return np.ascontiguousarray(params[2 : 1 + n])


YOSHIDA_W1 = 1 / (2 - 2 ** (1 / 3))  # Yoshida's triple jump: substeps w1, 1 - 2 w1, w1


def prior_substeps(prior: str) -> list[float]:
    """The Stormer-Verlet substep weights of one step of SympONet's prior, written out by hand."""
    return [1.0] if prior == "leapfrog" else [YOSHIDA_W1, 1 - 2 * YOSHIDA_W1, YOSHIDA_W1]


def fixed_grid_harmonic(q0: float, p0: float, t: float, h: float, subs: list[float], k: float, c: float):
    """SympONet's fixed grid by hand on scalars, force 2 k (q - c): floor(t / h) steps of h, then one
    step of the rest, each step the substeps `subs` of kick-drift-kick. Returns (q, p) at t."""

    def step(qq, pp, dt):
        for a in subs:
            pp -= 0.5 * a * dt * 2 * k * (qq - c)
            qq += a * dt * pp
            pp -= 0.5 * a * dt * 2 * k * (qq - c)
        return qq, pp

    n = int(np.floor(t / h))
    for _ in range(n):
        q0, p0 = step(q0, p0, h)
    return step(q0, p0, t - n * h)


def fixed_grid_reference(ic, t, h: float, subs: list[float], k: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    """`fixed_grid_harmonic` at every query time of a batch: ic (B, 2), t (B, W) -> q, p (B, W)."""
    ic, t = np.asarray(ic, dtype=np.float64), np.asarray(t, dtype=np.float64)
    out = [[fixed_grid_harmonic(ic[i, 0], ic[i, 1], tj, h, subs, k, c) for tj in t[i]] for i in range(t.shape[0])]
    qp = np.array(out, dtype=np.float64)  # (B, W, 2)
    return qp[..., 0], qp[..., 1]
