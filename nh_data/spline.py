"""Clamped cubic B-spline potentials: construction, packing and fast evaluation.

A potential is stored as a SciPy-compatible B-spline (knots t, coefficients c,
degree 3): ``scipy.interpolate.BSpline(t, c, 3)`` is the potential. For speed
the integrators work on the equivalent piecewise-polynomial form, packed in a
flat ``params`` row::

    params = [n, x_0, ..., x_n, a_00, a_01, a_02, a_03, a_10, ..., a_(n-1)3, 0 ...]

with n polynomial pieces, breakpoints x_0 < ... < x_n (the distinct knots) and
V(q) = a_i0 + a_i1 s + a_i2 s^2 + a_i3 s^3, s = q - x_i on piece i. Outside
[x_0, x_n] the first and last pieces extend, exactly as SciPy's BSpline does
with ``extrapolate=True``. The conversion evaluates the spline and its
derivatives with de Boor's algorithm (round-off level agreement with SciPy).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .jit_options import JIT

DEGREE = 3


def clamped_knots(x: np.ndarray) -> np.ndarray:
    """Clamped cubic knot vector for control abscissae x_0 = 0 < x_1 < ... < x_(m-1) = 1.

    Interior knots by de Boor / Piegl-Tiller averaging of the interior
    abscissae, t_(j+3) = (x_j + x_(j+1) + x_(j+2)) / 3, j = 1..m-4, so the knot
    vector has m + 4 entries: [0, 0, 0, 0, interior..., 1, 1, 1, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    m = x.shape[0]
    inner = [(x[j] + x[j + 1] + x[j + 2]) / 3.0 for j in range(1, m - 3)]
    return np.array([x[0]] * 4 + inner + [x[-1]] * 4, dtype=np.float64)


def params_width(n_coeffs: int) -> int:
    """Length of a params row for a spline with `n_coeffs` coefficients (n_coeffs - 3 pieces)."""
    n = n_coeffs - DEGREE
    return 2 + n + 4 * n


@njit(**JIT)
def _deboor(t, c, k, x, p):
    """Value at x of the degree-p spline (t, c), on knot interval k (t[k] <= x <= t[k+1])."""
    d = np.empty(p + 1)
    for j in range(p + 1):
        d[j] = c[j + k - p]
    for r in range(1, p + 1):
        for j in range(p, r - 1, -1):
            den = t[j + 1 + k - r] - t[j + k - p]
            alpha = (x - t[j + k - p]) / den
            d[j] = (1.0 - alpha) * d[j - 1] + alpha * d[j]
    return d[p]


@njit(**JIT)
def _derivative_coeffs(t, c, p):
    """Coefficients of the derivative spline (degree p - 1, knots t[1:-1])."""
    n = c.shape[0]
    out = np.empty(n - 1)
    for i in range(n - 1):
        out[i] = p * (c[i + 1] - c[i]) / (t[i + p + 1] - t[i + 1])
    return out


@njit(**JIT)
def pack_params_into(t, c, out):
    """Write the piecewise-polynomial params row of the cubic spline (t, c) into `out`.

    t: (n_coeffs + 4,) clamped knots, c: (n_coeffs,). Returns the row length used.
    """
    n_c = c.shape[0]
    c1 = _derivative_coeffs(t, c, 3)
    t1 = t[1:-1]
    c2 = _derivative_coeffs(t1, c1, 2)
    t2 = t1[1:-1]
    c3 = _derivative_coeffs(t2, c2, 1)
    # distinct knot intervals k = 3 .. n_c - 1
    n = 0
    for k in range(3, n_c):
        if t[k + 1] > t[k]:
            n += 1
    out[0] = n
    pos = 0
    for k in range(3, n_c):
        if t[k + 1] > t[k]:
            out[1 + pos] = t[k]
            xk = t[k]
            base = 2 + n + 4 * pos
            out[base] = _deboor(t, c, k, xk, 3)
            out[base + 1] = _deboor(t1, c1, k - 1, xk, 2)
            out[base + 2] = _deboor(t2, c2, k - 2, xk, 1) / 2.0
            out[base + 3] = c3[k - 3] / 6.0
            pos += 1
    out[1 + n] = t[n_c]
    return 2 + n + 4 * n


@njit(**JIT)
def _piece(q, params):
    n = int(params[0])
    i = 0
    while i < n - 1 and q >= params[2 + i]:
        i += 1
    return i, q - params[1 + i], 2 + n + 4 * i


@njit(**JIT)
def V_pp(q, params):
    """Potential V(q) from a packed params row (extrapolates with the end pieces)."""
    i, s, base = _piece(q, params)
    return ((params[base + 3] * s + params[base + 2]) * s + params[base + 1]) * s + params[base]


@njit(**JIT)
def dV_pp(q, params):
    """Force derivative dV/dq from a packed params row."""
    i, s, base = _piece(q, params)
    return (3.0 * params[base + 3] * s + 2.0 * params[base + 2]) * s + params[base + 1]


@njit(**JIT)
def _V_grid(q, params, out):
    """out[i, j] = V(q[j]) for params row i. q: (S,), params: (M, P), out: (M, S)."""
    for i in range(params.shape[0]):
        for j in range(q.shape[0]):
            out[i, j] = V_pp(q[j], params[i])


@njit(**JIT)
def _V_rows(q, params, out):
    for i in range(q.shape[0]):
        out[i] = V_pp(q[i], params[i])


def V_rows(q: np.ndarray, params: np.ndarray) -> np.ndarray:
    """V(q[i]) on params row i. q: (R,), params: (R, P) -> (R,)."""
    q = np.ascontiguousarray(q, dtype=np.float64)
    params = np.ascontiguousarray(params, dtype=np.float64)
    out = np.empty(q.shape[0])
    _V_rows(q, params, out)
    return out


def pack_params(knots: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Params row (float64) of the cubic B-spline (knots, coeffs)."""
    knots = np.ascontiguousarray(knots, dtype=np.float64)
    coeffs = np.ascontiguousarray(coeffs, dtype=np.float64)
    if knots.shape[0] != coeffs.shape[0] + 4 or coeffs.shape[0] < 4:
        raise ValueError("a cubic B-spline needs len(knots) = len(coeffs) + 4 and >= 4 coefficients")
    out = np.zeros(params_width(coeffs.shape[0]))
    used = pack_params_into(knots, coeffs, out)
    return out[:used]


def spline_V(q, knots, coeffs) -> np.ndarray:
    """V(q) of the cubic B-spline (knots, coeffs) at the points q (any shape)."""
    params = pack_params(knots, coeffs)[None]
    q = np.asarray(q, dtype=np.float64)
    out = np.empty((1, q.size))
    _V_grid(q.reshape(-1).copy(), params, out)
    return out.reshape(q.shape)


def spline_dV(q, knots, coeffs) -> np.ndarray:
    """dV/dq of the cubic B-spline (knots, coeffs) at the points q (any shape)."""
    params = pack_params(knots, coeffs)
    q = np.asarray(q, dtype=np.float64)
    flat = q.reshape(-1)
    return np.array([dV_pp(float(x), params) for x in flat]).reshape(q.shape)


def V_batch(q: np.ndarray, params: np.ndarray) -> np.ndarray:
    """V at the shared points q: (S,) for every params row (M, P) -> (M, S)."""
    q = np.ascontiguousarray(q, dtype=np.float64)
    params = np.ascontiguousarray(params, dtype=np.float64)
    out = np.empty((params.shape[0], q.shape[0]))
    _V_grid(q, params, out)
    return out

