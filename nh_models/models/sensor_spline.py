"""The quintic spline through the 100 sensors, as tables of per-interval polynomials in torch.

SympONet's prior and its learned corrections read every potential-like function given on the
sensor grid (V itself, a learned modified potential V + dV, the processor's generators) through
this one interpolant, so that an integrator run on it and the network see the same function.

- `force_table(V)`: the coefficients of V'(x) on each of the 99 intervals, a polynomial of
  degree 4 in s = (x - x_i) / dx: (B, 100) -> (B, 99, 5).
- `derivative_table(table)`: the same layout for the next derivative (V'' from V').
- `lookup(tables, q)`: one interval lookup at each q for K stacked tables at once, (B, 99, K, 5),
  (B, W) -> (B, W, K). One lookup is one *force evaluation* in the cost a model states
  (`force_evaluations_per_orbit`), however many of the stacked polynomials it reads.
- `nodal_derivatives(V)`: V', V'', V''', V'''' at the sensors (the correction's features).
- `local_table(y)`: the table of a local C1 cubic through grid values y (cubic Hermite with
  fourth-order slopes: no solve; for functions of order h^2, where its O(dx^4) error is far
  below the integrator's).

q is clamped to [0, 1]: outside the box the end polynomials hold their end values (the wall's
force), no extrapolated quintic.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from nh_data.problem import N_SENSORS

DX = 1.0 / (N_SENSORS - 1)  # sensor spacing on [0, 1]
DEGREE = 5  # coefficients per interval polynomial of V' (degree 4)


def _quintic_bspline(u: np.ndarray, derivative: int = 0) -> np.ndarray:
    """The centred cardinal quintic B-spline (support [-3, 3]) or its first derivative at u."""
    power = 5 - derivative
    out = np.zeros_like(u, dtype=np.float64)
    for k in range(7):
        out += (-1) ** k * math.comb(6, k) * np.clip(u + 3 - k, 0.0, None) ** power
    return out / math.factorial(power)


def quintic_system() -> np.ndarray:
    """A (104, 104): the linear system A c = (V, 0, 0, 0, 0) of the spline coefficients c
    (`quintic_matrices`): rows 0..99 interpolate the sensors, rows 100..103 are the end conditions."""
    n, m = N_SENSORS, N_SENSORS + 4
    A = np.zeros((m, m))
    for i in range(n):  # s(x_i) = (c_i-2 + 26 c_i-1 + 66 c_i + 26 c_i+1 + c_i+2) / 120 = V_i
        for d in range(-2, 3):
            A[i, i + 2 + d] = _quintic_bspline(np.array([float(d)]))[0]
    diff5 = np.array([(-1) ** k * math.comb(5, k) for k in range(6)], dtype=np.float64)
    for row, start in zip(range(n, m), (0, 1, m - 7, m - 6), strict=True):
        A[row, start : start + 6] = diff5
    return A


def quintic_matrices() -> tuple[np.ndarray, np.ndarray]:
    """(Q, D): spline coefficients c = Q V (104, 100) and the derivative polynomials D (6, 5).

    The interpolant is s(x) = sum_j c_j b((x - x_j) / dx), j = -2..101, through the 100
    sensors, closed by four end conditions (the fifth difference of c vanishes on the first
    two and the last two windows of six coefficients: the end coefficients continue a
    quintic; cubics are reproduced exactly). On
    the interval [x_i, x_i+1) with s = (x - x_i) / dx, s'(x) = sum_m c_{i-2+m} P_m(s) / dx,
    P_m(s) = sum_r D[m, r] s^r.
    """
    A = quintic_system()
    Q = np.linalg.solve(A, np.eye(len(A))[:, :N_SENSORS])  # (104, 100)
    s = np.linspace(0.0, 1.0, 9)
    D = np.stack([np.polyfit(s, _quintic_bspline(s + 2 - k, 1), 4)[::-1] for k in range(6)])  # (6, 5)
    return Q, D


def force_matrix() -> np.ndarray:
    """M (99, 495): the per-interval polynomial coefficients of V' from the sensor differences,
    table = diff(V) M. V' ignores a constant, so it is written in the 99 differences
    V_j+1 - V_j (exact in float32 for neighbouring values): no cancellation of large terms."""
    Q, D = quintic_matrices()
    windows = np.stack([Q[i : i + 6] for i in range(N_SENSORS - 1)])  # (99, 6, 100): c_{i-2..i+3}
    full = np.einsum("imv,mr->vir", windows, D / DX).reshape(N_SENSORS, -1)  # (100, 495) from V
    # row k: the sum of rows j > k (V_j = V_0 + sum_k<j dV_k; V_0 drops out of V')
    return np.ascontiguousarray(np.cumsum(full[::-1], axis=0)[::-1][1:])


_FORCE = torch.from_numpy(force_matrix())  # float64 master, cast per call
# d/dx of a table's polynomial: coefficient r of the derivative is (r + 1) c_{r+1} / dx
_DERIV = torch.arange(1.0, DEGREE, dtype=torch.float64) / DX  # (4,)


def force_table(V: Tensor) -> Tensor:
    """Per-interval polynomial coefficients of V'(x) from the sensors: (B, 100) -> (B, 99, 5)."""
    return (torch.diff(V, dim=1) @ _FORCE.to(V)).view(V.shape[0], N_SENSORS - 1, DEGREE)


def derivative_table(table: Tensor) -> Tensor:
    """The table of the next derivative (same layout, top coefficient zero): (..., 5) -> (..., 5)."""
    return torch.cat([table[..., 1:] * _DERIV.to(table), torch.zeros_like(table[..., :1])], dim=-1)


# fourth-order slopes dy/ds at the sensors (s in sensor spacings): central inside, one-sided at the
# two first and the two last sensors (each exact for quartics)
SLOPE_INNER = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0  # y[i-2..i+2]
SLOPE_FIRST = np.array([[-25.0, 48.0, -36.0, 16.0, -3.0], [-3.0, -10.0, 18.0, -6.0, 1.0]]) / 12.0  # sensors 0, 1: y[0..4]
SLOPE_LAST = -SLOPE_FIRST[::-1, ::-1]  # sensors 98, 99: y[95..99]


def local_slopes(y: Tensor) -> Tensor:
    """`SLOPE_*`: the slopes dy/ds at the sensors from grid values y: (B, 100) -> (B, 100)."""
    inner = y.unfold(1, 5, 1) @ torch.from_numpy(SLOPE_INNER).to(y)  # sensors 2..97
    first = y[:, :5] @ torch.from_numpy(SLOPE_FIRST).to(y).T
    last = y[:, -5:] @ torch.from_numpy(SLOPE_LAST).to(y).T
    return torch.cat([first, inner, last], dim=1)


def local_table(y: Tensor) -> Tensor:
    """The table (B, 99, 5) (top coefficient zero) of the local C1 interpolant of grid values y
    (B, 100): on each interval the cubic Hermite through the two sensors' values with the
    fourth-order slopes of `local_slopes` (cubics exact, error O(dx^4); six sensors reach each
    interval). A kick by it, or a point map by it and its derivative (`derivative_table`), is
    exactly area-preserving; its continuous derivative keeps Newton's iteration on it quadratic."""
    m = local_slopes(y)
    y0, y1, m0, m1 = y[:, :-1], y[:, 1:], m[:, :-1], m[:, 1:]
    d = y1 - y0
    c2 = 3.0 * d - 2.0 * m0 - m1
    c3 = m0 + m1 - 2.0 * d
    return torch.stack([y0, m0, c2, c3, torch.zeros_like(y0)], dim=-1)


def lookup(tables: Tensor, q: Tensor) -> Tensor:
    """All K stacked polynomials at q, one interval lookup: (B, 99, K, 5), (B, W) -> (B, W, K)."""
    B, K = tables.shape[0], tables.shape[2]
    pos = q.clamp(0.0, 1.0) * (N_SENSORS - 1)
    i = torch.nan_to_num(pos.detach().floor(), nan=0.0).clamp(max=N_SENSORS - 2)  # a NaN q reads NaN, no bad index
    s = pos - i
    if K == 1:  # the kernel's lookups: one small gather per step
        coef = tables[:, :, 0].gather(1, i.long().unsqueeze(-1).expand(*q.shape, DEGREE)).unsqueeze(-2)
    else:  # stacked tables: whole rows of K polynomials by one index_select (a gather per column is slower)
        rows = (i.long() + torch.arange(B, device=q.device).unsqueeze(1) * (N_SENSORS - 1)).reshape(-1)
        coef = tables.reshape(B * (N_SENSORS - 1), K * DEGREE).index_select(0, rows).view(*q.shape, K, DEGREE)
    s = s.unsqueeze(-1)
    out = coef[..., DEGREE - 1]
    for r in range(DEGREE - 2, -1, -1):  # Horner
        out = torch.addcmul(coef[..., r], out, s)
    return out


def sensor_force(table: Tensor, q: Tensor) -> Tensor:
    """V'(q) of the quintic sensor spline, q clamped to [0, 1]: (B, 99, 5), (B, W) -> (B, W)."""
    return lookup(table.unsqueeze(2), q)[..., 0]


def nodal_derivatives(V: Tensor) -> Tensor:
    """V', V'', V''', V'''' of the quintic spline at the 100 sensors: (B, 100) -> (B, 4, 100)."""
    table = force_table(V)  # (B, 99, 5): V' in s on each interval
    left = table[:, :, :4]  # at s = 0 of each interval: c_r r! / dx^r is the r-th derivative of V'
    scale = torch.tensor([math.factorial(r) / DX**r for r in range(4)], dtype=V.dtype, device=V.device)
    # the last sensor: the derivatives of the last interval's polynomial at s = 1
    end = [sum(table[:, -1, k] * math.perm(k, r) for k in range(r, DEGREE)) / DX**r for r in range(4)]
    last = torch.stack(end, dim=1)
    return torch.cat([(left * scale).transpose(1, 2), last.unsqueeze(-1)], dim=2)
