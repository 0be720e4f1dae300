"""Integrators on a model's own sensor interpolant (the quintic spline of `models.sensor_spline`),
in torch, batched over orbits, each with the force evaluations it spends: the equal-cost
baselines of SympONet (`equal_cost`).

Every method runs `steps` fixed steps of h = T / steps over the window and answers the query
times by cubic Hermite interpolation between grid points (q' = p, p' = -V'(q)), whose
derivatives come from forces the stepping already evaluated: the read-out costs no force
evaluation. One lookup of the spline is one force evaluation, however many polynomials it
reads (V' and V'' at one point count once), the convention of `SympONet.force_evaluations_per_orbit`.

- `leapfrog`, `yoshida4`: compositions of Strang substeps, first-same-as-last:
  1 + steps x substeps evaluations.
- `rk4`: classic Runge-Kutta, 4 x steps + 1 (the force at the last grid point, for its Hermite
  derivative).
- `processed`: the classical processed leapfrog (Takahashi and Imada 1984; issue 21's baseline):
  leapfrog on V~ = V - (h^2 / 24) V'^2, V~ precomputed on the sensor grid, each stored state
  mapped by q <- q - (h^2 / 12) V'(q), p <- p + (h^2 / 12) p V''(q), the initial condition by
  its inverse (fixed-point iteration). The kernel's force and the processor's V', V'' at a
  stored state are one lookup (the tables stacked, as SympONet's processor is read with its
  partial step's force): one evaluation a step, steps + 1 + INVERSE_ITERATIONS in all. The
  Hermite derivative at a processed point Q uses V'(Q) ~ V'(q) + V''(q) (Q - q), from the same
  lookup.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nh_data.integrators import LEAPFROG, YOSHIDA4
from nh_data.problem import T_END

from ..models import sensor_spline
from ..models.processed import hermite, start, step, trajectory
from ..models.processor import INVERSE_ITERATIONS
from ..models.sensor_spline import sensor_force

COMPOSITIONS = {m.name: tuple(float(w) for w in m.weights) for m in (LEAPFROG, YOSHIDA4)}
METHODS = ("leapfrog", "yoshida4", "rk4", "processed")
READOUT = "cubic Hermite interpolation between grid points (derivatives from forces already evaluated)"


def evaluations(method: str, steps: int) -> int:
    """Force evaluations of `method` with `steps` steps on one orbit (read-out included: none)."""
    if method in COMPOSITIONS:
        return 1 + steps * len(COMPOSITIONS[method])
    if method == "rk4":
        return 4 * steps + 1
    if method == "processed":
        return steps + 1 + INVERSE_ITERATIONS
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


def steps_for(method: str, budget: int) -> int:
    """The most steps whose evaluations stay within `budget` (at least 1)."""
    steps = 1
    while evaluations(method, steps + 1) <= budget:
        steps += 1
    return steps


def integrate(V: Tensor, t: Tensor, ic: Tensor, method: str, steps: int) -> tuple[Tensor, Tensor]:
    """(q, p) at query times t (B, W) in [0, T] of each orbit V (B, 100), ic (B, 2)."""
    h = T_END / steps
    table = sensor_spline.force_table(V)
    if method in COMPOSITIONS:
        qs, ps, fs = _composition(table, ic, h, steps, COMPOSITIONS[method])
    elif method == "rk4":
        qs, ps, fs = _rk4(table, ic, h, steps)
    elif method == "processed":
        qs, ps, fs = _processed(V, table, ic, h, steps)
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    return hermite(qs, ps, fs, t, h)


def _composition(table, ic, h, steps, subs):
    ktab = table.unsqueeze(2)
    return trajectory(*start(ic, ktab, None), ktab, h, steps, subs)


def _rk4(table, ic, h, steps):
    q, p = ic[:, :1], ic[:, 1:]
    F = sensor_force(table, q)
    qs, ps, fs = [q], [p], [F]
    for _ in range(steps):
        k1q, k1p = p, -F
        k2q, k2p = p + 0.5 * h * k1p, -sensor_force(table, q + 0.5 * h * k1q)
        k3q, k3p = p + 0.5 * h * k2p, -sensor_force(table, q + 0.5 * h * k2q)
        k4q, k4p = p + h * k3p, -sensor_force(table, q + h * k3q)
        q = q + h / 6 * (k1q + 2 * k2q + 2 * k3q + k4q)
        p = p + h / 6 * (k1p + 2 * k2p + 2 * k3p + k4p)
        F = sensor_force(table, q)  # the next step's first stage
        qs.append(q)
        ps.append(p)
        fs.append(F)
    return torch.cat(qs, 1), torch.cat(ps, 1), torch.cat(fs, 1)


def _processed(V, table, ic, h, steps):
    c = h * h / 12.0
    v1 = sensor_spline.nodal_derivatives(V)[:, 0]
    kernel = sensor_spline.force_table(V - 0.5 * c * v1 * v1)  # V~ = V - (h^2 / 24) V'^2 on the grid
    # V~', V', V'' stacked: one lookup a point gives the kernel's force and the processor's values
    stacked = torch.stack([kernel, table, sensor_spline.derivative_table(table)], dim=2)
    Q, P = ic[:, :1], ic[:, 1:]
    q = Q
    for _ in range(INVERSE_ITERATIONS):  # q - c V'(q) = Q
        q = Q + c * sensor_force(table, q)
    values = sensor_spline.lookup(stacked, q)  # (B, 1, 3)
    p, F = P / (1.0 + c * values[..., 2]), values[..., 0]
    qs, ps, vals = [q], [p], [values]
    ktab = kernel.unsqueeze(2)
    for _ in range(steps):  # leapfrog on V~, the processor's values read at each step's lookup
        q, p, F, values = step(q, p, F, h, ktab, (1.0,), stacked)
        qs.append(q)
        ps.append(p)
        vals.append(values)
    qs, ps, vals = torch.cat(qs, 1), torch.cat(ps, 1), torch.cat(vals, 1)
    v1, v2 = vals[..., 1], vals[..., 2]
    Qs, Ps = qs - c * v1, ps + c * ps * v2
    return Qs, Ps, v1 + v2 * (Qs - qs)
