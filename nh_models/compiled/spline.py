"""The quintic sensor spline of `models.sensor_spline` in Numba: coefficient solve, derivative
tables, lookup, nodal derivatives (issue 21's compiled kernels).

- The coefficients c (104; c[j] is the spline's coefficient of index j - 2) of the spline through
  the 100 sensors solve the system of `sensor_spline.quintic_system`, its rows reordered so that
  the two end conditions of the first end come first and the two of the last end last: a banded
  system, bandwidth 5 each side. LU without pivoting is stable on it (smallest pivot 0.45,
  largest |L| 35) and is precomputed here once. `solve1` / `solve3` solve in place for one or
  three right-hand sides in one pass: on entry the sensor values at c[2:102], on exit the
  coefficients in c[0:104]. Each row's unknown depends on the previous row's: the solve is a
  chain of dependent multiply-subtracts, kept in registers (the last five unknowns of each column),
  and three columns interleave their chains.
- `build_table`: the (5, 99) table of V' (a degree-4 polynomial in s per interval: the transpose
  of `sensor_spline.force_table`'s layout, so that building it vectorises over the intervals),
  table[r, i] = sum_m c[i + m] D[m, r] / DX with D's exact
  rational entries (`sensor_spline.quintic_matrices` fits them; they agree to 2e-14), written with
  its symmetries: 13 multiplications an interval instead of 30.
- `nodal_from_table`: V' to V'''' at the sensors from V's table; `integrals_into`: the integrals of two grid
  functions as right-hand sides (`tables: spline`'s processor); `local_into`: the table of the
  local C1 cubic through grid values (`sensor_spline.local_table`: no solve).
- `locate` + `poly`: the lookup of `sensor_spline.lookup`, q clamped to [0, 1]; `horner_d`: the
  next derivative from the same row (`sensor_spline.derivative_table`, evaluated at lookup);
  `poly_of`, `horner_d_of`: the same of a row already read (`processed`'s vectorized pass).

Module-level arrays are frozen into the compiled code as constants.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nh_data.jit_options import JIT
from nh_data.problem import N_SENSORS

from ..models.sensor_spline import DX, SLOPE_FIRST, SLOPE_LAST, quintic_system

N = NCOEF = N_SENSORS + 4  # spline coefficients
NI = N_SENSORS - 1  # intervals
BAND = 5
# the system's rows in banded order: the first end's two conditions, the 100 sensors, the last end's two
ORDER = np.array([N_SENSORS, N_SENSORS + 1, *range(N_SENSORS), N_SENSORS + 2, N_SENSORS + 3])
# the exact derivative polynomials: s'(x) on [x_i, x_i+1) is sum_m c[i + m] P_m(s) / DX, P_m = sum_r D[m, r] s^r
D_EXACT = np.array(
    [[-5, 20, -30, 20, -5], [-50, 40, 60, -80, 25], [0, -120, 0, 120, -50], [50, 40, -60, -80, 50],
     [5, 20, 30, 20, -25], [0, 0, 0, 0, 5]], dtype=np.float64,
) / 120.0  # fmt: skip


def banded_lu() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L, U, 1 / diag U) of the reordered spline system, LU without pivoting, as bands:
    L[r, k] = L_(r, r-k), U[r, k] = U_(r, r+k) / U_(r, r), k = 1..5 (column 0 unused, zero)."""
    A = quintic_system()[ORDER]
    n = len(A)
    lower, upper = np.eye(n), A.copy()
    for j in range(n - 1):  # Doolittle without pivoting
        for r in range(j + 1, n):
            f = upper[r, j] / upper[j, j]
            lower[r, j] = f
            upper[r] -= f * upper[j]
    if np.any(np.tril(lower, -BAND - 1)) or np.any(np.triu(upper, BAND + 1)):
        raise AssertionError("the reordered spline system is not banded")
    diag = np.diag(upper).copy()
    L, U = np.zeros((n, BAND + 1)), np.zeros((n, BAND + 1))
    for r in range(n):
        for k in range(1, BAND + 1):
            if r - k >= 0:
                L[r, k] = lower[r, r - k]
            if r + k < n:
                U[r, k] = upper[r, r + k] / diag[r]
    return L, U, 1.0 / diag


L_BAND, U_BAND, U_INV = banded_lu()

DERIV = np.arange(1.0, 5.0) / DX  # the derivative's coefficients: (r + 1) c_(r+1) / DX
G = 1.0 / (120.0 * DX)



@njit(**JIT)
def solve1(c):
    """In place: sensor values at c[2:102] -> spline coefficients c[0:104]."""
    y1 = y2 = y3 = y4 = y5 = 0.0  # the last five unknowns (rows 0, 1: zero right-hand side)
    for r in range(2, N):
        b = c[r] if r < N - 2 else 0.0
        v = (
            b
            - (L_BAND[r, 5] * y5 + L_BAND[r, 4] * y4 + L_BAND[r, 3] * y3 + L_BAND[r, 2] * y2)
            - L_BAND[r, 1] * y1
        )
        c[r] = v * U_INV[r]
        y5, y4, y3, y2, y1 = y4, y3, y2, y1, v
    c[0] = 0.0
    c[1] = 0.0
    x1 = x2 = x3 = x4 = x5 = 0.0
    for r in range(N - 1, -1, -1):
        v = (
            c[r]
            - (U_BAND[r, 5] * x5 + U_BAND[r, 4] * x4 + U_BAND[r, 3] * x3 + U_BAND[r, 2] * x2)
            - U_BAND[r, 1] * x1
        )
        c[r] = v
        x5, x4, x3, x2, x1 = x4, x3, x2, x1, v


@njit(**JIT)
def solve3(c, d, e):
    """`solve1` of three right-hand sides in one pass (three interleaved chains)."""
    a1 = a2 = a3 = a4 = a5 = 0.0
    b1 = b2 = b3 = b4 = b5 = 0.0
    e1 = e2 = e3 = e4 = e5 = 0.0
    for r in range(2, N):
        l1, l2, l3, l4, l5 = L_BAND[r, 1], L_BAND[r, 2], L_BAND[r, 3], L_BAND[r, 4], L_BAND[r, 5]
        inside = r < N - 2
        va = (c[r] if inside else 0.0) - (l5 * a5 + l4 * a4 + l3 * a3 + l2 * a2) - l1 * a1
        vb = (d[r] if inside else 0.0) - (l5 * b5 + l4 * b4 + l3 * b3 + l2 * b2) - l1 * b1
        ve = (e[r] if inside else 0.0) - (l5 * e5 + l4 * e4 + l3 * e3 + l2 * e2) - l1 * e1
        u = U_INV[r]
        c[r] = va * u
        d[r] = vb * u
        e[r] = ve * u
        a5, a4, a3, a2, a1 = a4, a3, a2, a1, va
        b5, b4, b3, b2, b1 = b4, b3, b2, b1, vb
        e5, e4, e3, e2, e1 = e4, e3, e2, e1, ve
    for x in (c, d, e):
        x[0] = 0.0
        x[1] = 0.0
    a1 = a2 = a3 = a4 = a5 = 0.0
    b1 = b2 = b3 = b4 = b5 = 0.0
    e1 = e2 = e3 = e4 = e5 = 0.0
    for r in range(N - 1, -1, -1):
        u1, u2, u3, u4, u5 = U_BAND[r, 1], U_BAND[r, 2], U_BAND[r, 3], U_BAND[r, 4], U_BAND[r, 5]
        va = c[r] - (u5 * a5 + u4 * a4 + u3 * a3 + u2 * a2) - u1 * a1
        vb = d[r] - (u5 * b5 + u4 * b4 + u3 * b3 + u2 * b2) - u1 * b1
        ve = e[r] - (u5 * e5 + u4 * e4 + u3 * e3 + u2 * e2) - u1 * e1
        c[r] = va
        d[r] = vb
        e[r] = ve
        a5, a4, a3, a2, a1 = a4, a3, a2, a1, va
        b5, b4, b3, b2, b1 = b4, b3, b2, b1, vb
        e5, e4, e3, e2, e1 = e4, e3, e2, e1, ve


@njit(**JIT)
def build_table(c, table):
    """table (5, 99): V' of the spline with coefficients c (104) on each interval, in s."""
    for i in range(NI):
        c0, c1, c2, c3, c4, c5 = c[i], c[i + 1], c[i + 2], c[i + 3], c[i + 4], c[i + 5]
        s04 = c0 + c4
        s13 = c1 + c3
        d40 = c4 - c0
        d31 = c3 - c1
        table[0, i] = (5.0 * G) * d40 + (50.0 * G) * d31
        table[1, i] = (20.0 * G) * s04 + (40.0 * G) * s13 - (120.0 * G) * c2
        table[2, i] = (30.0 * G) * d40 - (60.0 * G) * d31
        table[3, i] = (20.0 * G) * s04 - (80.0 * G) * s13 + (120.0 * G) * c2
        table[4, i] = (5.0 * G) * (c5 - c0) + (25.0 * G) * (c1 - c4) + (50.0 * G) * (c3 - c2)


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
def spline_table(V, c, table):
    """table (5, 99): V' of the spline through the sensors V (100); c (104): work (`solve1`)."""
    for i in range(V.shape[0]):
        c[2 + i] = V[i]
    solve1(c)
    build_table(c, table)


@njit(**JIT)
def nodal_from_table(table, out):
    """out (4, 100): V', V'', V''', V'''' at the sensors from V's table (5, 99) (each interval's
    polynomial at s = 0, the last sensor's at s = 1 of the last interval), as
    `sensor_spline.nodal_derivatives`."""
    for i in range(NI):
        out[0, i] = table[0, i]
        out[1, i] = table[1, i] * (1.0 / DX)
        out[2, i] = table[2, i] * (2.0 / DX**2)
        out[3, i] = table[3, i] * (6.0 / DX**3)
    e = NI - 1
    out[0, NI] = table[0, e] + table[1, e] + table[2, e] + table[3, e] + table[4, e]
    out[1, NI] = (table[1, e] + 2.0 * table[2, e] + 3.0 * table[3, e] + 4.0 * table[4, e]) * (1.0 / DX)
    out[2, NI] = (2.0 * table[2, e] + 6.0 * table[3, e] + 12.0 * table[4, e]) * (1.0 / DX**2)
    out[3, NI] = (6.0 * table[3, e] + 24.0 * table[4, e]) * (1.0 / DX**3)


@njit(**JIT)
def _hermite_into(table, i, y0, y1, m0, m1, add):
    """Interval i's cubic Hermite coefficients (values y0, y1, slopes m0, m1 in s) into table."""
    d = y1 - y0
    c2 = 3.0 * d - 2.0 * m0 - m1
    c3 = m0 + m1 - 2.0 * d
    if add:
        table[0, i] += y0
        table[1, i] += m0
        table[2, i] += c2
        table[3, i] += c3
    else:
        table[0, i] = y0
        table[1, i] = m0
        table[2, i] = c2
        table[3, i] = c3
        table[4, i] = 0.0


@njit(**JIT)
def local_into(y, m, table, add):
    """The table (5, 99) of `sensor_spline.local_table(y)` (on each interval the cubic Hermite
    through the sensors' values y (100,) with fourth-order slopes; no solve) written into table
    (row 4 zero) or, with `add`, added to its rows 0-3. m (100,): work array for the slopes of
    the end intervals; the inner intervals' central slopes are computed in place (one pass)."""
    n = N_SENSORS
    for k in range(2):  # one-sided at the two first and the two last sensors
        a = 0.0
        b = 0.0
        for r in range(5):
            a += SLOPE_FIRST[k, r] * y[r]
            b += SLOPE_LAST[k, r] * y[n - 5 + r]
        m[k] = a
        m[n - 2 + k] = b
    for i in (2, n - 3):
        m[i] = (1.0 / 12.0) * ((y[i - 2] - y[i + 2]) + 8.0 * (y[i + 1] - y[i - 1]))
    for i in (0, 1, NI - 2, NI - 1):
        _hermite_into(table, i, y[i], y[i + 1], m[i], m[i + 1], add)
    for i in range(2, NI - 2):  # both slopes central
        m0 = (1.0 / 12.0) * ((y[i - 2] - y[i + 2]) + 8.0 * (y[i + 1] - y[i - 1]))
        m1 = (1.0 / 12.0) * ((y[i - 1] - y[i + 3]) + 8.0 * (y[i + 2] - y[i]))
        _hermite_into(table, i, y[i], y[i + 1], m0, m1, add)


@njit(**JIT)
def locate(q):
    """(interval, s) of the lookup at q, q clamped to [0, 1] like `sensor_spline.lookup`; a NaN q
    reads interval 0 with s NaN (so that the result is NaN, as in torch)."""
    if q > 0.0 and q < 1.0:
        pos = q * NI
        i = int(pos)  # floor: pos > 0
        if i > NI - 1:  # q * 99 rounds to 99 just below q = 1
            i = NI - 1
        return i, pos - i
    if q >= 1.0:
        return NI - 1, 1.0
    if q <= 0.0:
        return 0, 0.0
    return 0, q


@njit(**JIT, inline="always")
def poly_of(c0, c1, c2, c3, c4, s):
    """The polynomial with coefficients c0..c4 (one interval's row of a table) at s (Estrin's
    scheme: a dependency chain of three multiply-adds from s instead of Horner's four; the
    stepping waits on it at every force)."""
    s2 = s * s
    return (c0 + c1 * s) + s2 * ((c2 + c3 * s) + s2 * c4)


@njit(**JIT, inline="always")
def horner_d_of(c1, c2, c3, c4, s):
    """The derivative (d/dx) of `poly_of`'s polynomial at s."""
    return c1 * DERIV[0] + s * (c2 * DERIV[1] + s * (c3 * DERIV[2] + s * (c4 * DERIV[3])))


@njit(**JIT)
def poly(table, i, s):
    """The table's polynomial of interval i at s (`poly_of` of its row)."""
    return poly_of(table[0, i], table[1, i], table[2, i], table[3, i], table[4, i], s)


@njit(**JIT)
def horner_d(table, i, s):
    """The derivative (d/dx) of the table's polynomial of interval i at s."""
    return horner_d_of(table[1, i], table[2, i], table[3, i], table[4, i], s)


@njit(**JIT)
def force(table, q):
    """V'(q) of the table, q clamped to [0, 1] (`sensor_spline.sensor_force`)."""
    i, s = locate(q)
    return poly(table, i, s)
