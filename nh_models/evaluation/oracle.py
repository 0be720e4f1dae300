"""The sensor interpolant, integrator predictors and the "oracle model".

Everything that compares a network with a classical integrator goes through
this module, so that both see the same information: the potential only as its
100 sensor values V(x_i), x_i = i / 99, on [0, 1].

- `sensor_spline(V)`: the not-a-knot cubic spline through the sensors, packed
  as one parameter row per potential for the Numba kernels `sensor_V` and
  `sensor_dV` (the force interface of `nh_data.integrators`). Not-a-knot
  reproduces every cubic exactly, so harmonic potentials have no
  interpolation error.
- `integrator_predict(V, t, ic, method, dt)`: integrates every orbit on that
  interpolant, answering the (possibly unsorted, not starting at 0) query
  times exactly (steps land on the query times).
- `integrator_native(V, t, ic, method, dt)`: the same orbits integrated on the
  integrator's own uniform grid k * dt (what an integrator costs when it is
  free to choose its steps), answered at the query times by cubic Hermite
  dense output (q' = p, p' = -V'(q); fourth order).
- `OracleModel`: an `OperatorModel`-compatible `torch.nn.Module` whose
  forward is a converged integration (Yoshida 8, dt = 1e-3 by default) on the
  sensor interpolant. It tests the evaluation machinery: every metric of a
  correct model must come out near zero for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from nh_data.errors import NHError
from nh_data.integrators import get_method, integrate_batch
from nh_data.jit_options import JIT, PARALLEL_JIT
from nh_data.problem import N_SENSORS

# A predictor maps numpy (V (B, 100), t (B, W), ic (B, 2)) to (q, p), each (B, W) float64.
Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------- sensor interpolant


def sensor_spline(V: np.ndarray) -> np.ndarray:
    """Pack the not-a-knot cubic spline through each row of sensor values.

    V: (B, 100) or (100,). Returns params (B, 4 * 99) float64: for interval i,
    params[4 i : 4 i + 4] = (c3, c2, c1, c0) with
    V(q) = c3 dx^3 + c2 dx^2 + c1 dx + c0, dx = q - x_i. Equals
    ``scipy.interpolate.CubicSpline(x, V, bc_type="not-a-knot")`` (tested), but
    runs as a Numba kernel over rows, so that the integrators' cost of reading
    the sensors stays small in the work-precision timings.
    """
    V = np.asarray(V, dtype=np.float64)
    single = V.ndim == 1
    V = np.ascontiguousarray(np.atleast_2d(V))
    if V.shape[1] != N_SENSORS:
        raise NHError(f"expected {N_SENSORS} sensor values per potential, got {V.shape[1]}")
    if not np.all(np.isfinite(V)):
        raise NHError("sensor values must be finite")
    params = np.empty((V.shape[0], 4 * (N_SENSORS - 1)))
    _spline_rows(V, _CP, _INV, params)
    return params[0] if single else params


def _thomas_factors(n: int) -> tuple[np.ndarray, np.ndarray]:
    """LU factors of the constant tridiagonal (1, 4, 1) system of size n - 3 (shared by every row)."""
    m = max(n - 3, 1)
    cp = np.empty(m)
    inv = np.empty(m)
    for k in range(m):
        den = 4.0 - (cp[k - 1] if k else 0.0)
        inv[k] = 1.0 / den
        cp[k] = inv[k]
    return cp, inv


_CP, _INV = _thomas_factors(N_SENSORS - 1)


@njit(**JIT)
def _spline_row(y, cp, inv, M, out):
    """Not-a-knot cubic spline through y at x_i = i / n (n + 1 points), packed (c3, c2, c1, c0) per interval.

    Second derivatives M: M_{i-1} + 4 M_i + M_{i+1} = r_i = 6 (y_{i+1} - 2 y_i + y_{i-1}) / h^2
    for i = 1..n-1; not-a-knot (M_0 - 2 M_1 + M_2 = 0, same at the right end)
    turns rows 1 and n-1 into 6 M_1 = r_1 and 6 M_{n-1} = r_{n-1}. The rows in
    between are a constant tridiagonal system (Thomas algorithm, factors cp, inv
    precomputed). M is a work array of n + 1 entries.
    """
    n = y.shape[0] - 1
    h = 1.0 / n
    s = 6.0 / (h * h)
    M[1] = (y[2] - 2.0 * y[1] + y[0]) * s / 6.0
    M[n - 1] = (y[n] - 2.0 * y[n - 1] + y[n - 2]) * s / 6.0
    m = n - 3  # unknowns M_2..M_{n-2}; forward sweep stores d'_k in M[k + 2]
    for k in range(m):
        i = k + 2
        rhs = (y[i + 1] - 2.0 * y[i] + y[i - 1]) * s
        if k == 0:
            rhs -= M[1]
        else:
            rhs -= M[i - 1]
        if k == m - 1:
            rhs -= M[n - 1]
        M[i] = rhs * inv[k]
    for k in range(m - 2, -1, -1):
        M[k + 2] -= cp[k] * M[k + 3]
    M[0] = 2.0 * M[1] - M[2]
    M[n] = 2.0 * M[n - 1] - M[n - 2]
    for i in range(n):
        out[4 * i] = (M[i + 1] - M[i]) / (6.0 * h)
        out[4 * i + 1] = 0.5 * M[i]
        out[4 * i + 2] = (y[i + 1] - y[i]) / h - h * (2.0 * M[i] + M[i + 1]) / 6.0
        out[4 * i + 3] = y[i]


@njit(**PARALLEL_JIT)
def _spline_rows(V, cp, inv, params):
    for b in prange(V.shape[0]):
        M = np.empty(V.shape[1])
        _spline_row(V[b], cp, inv, M, params[b])


@njit(**JIT)
def _interval(q, params):
    n = params.shape[0] // 4
    if not q == q:  # NaN in, NaN out (int(nan) is undefined)
        return -1, 0.0
    i = int(np.floor(q * (n)))
    if i < 0:
        i = 0
    elif i > n - 1:
        i = n - 1
    return i, q - i / n


@njit(**JIT)
def sensor_V(q, params):
    """The sensor interpolant V(q) (end cubics extrapolate outside [0, 1])."""
    i, dx = _interval(q, params)
    if i < 0:
        return np.nan
    k = 4 * i
    return ((params[k] * dx + params[k + 1]) * dx + params[k + 2]) * dx + params[k + 3]


@njit(**JIT)
def sensor_dV(q, params):
    """The interpolant's derivative V'(q), the force interface of the integrators."""
    i, dx = _interval(q, params)
    if i < 0:
        return np.nan
    k = 4 * i
    return (3.0 * params[k] * dx + 2.0 * params[k + 1]) * dx + params[k + 2]


@njit(**PARALLEL_JIT)
def _sensor_V_rows(params, q, out):
    for b in prange(q.shape[0]):
        for j in range(q.shape[1]):
            out[b, j] = sensor_V(q[b, j], params[b])


def sensor_V_rows(params: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The interpolant V(q) elementwise: params (B, 396), q (B, W) -> (B, W)."""
    params = np.ascontiguousarray(np.atleast_2d(params), dtype=np.float64)
    q = np.ascontiguousarray(q, dtype=np.float64)
    if params.shape[0] == 1 and q.shape[0] > 1:
        params = np.ascontiguousarray(np.broadcast_to(params, (q.shape[0], params.shape[1])))
    out = np.empty(q.shape)
    _sensor_V_rows(params, q, out)
    return out


def energy(V: np.ndarray, q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """H = p^2 / 2 + V(q) with V the sensor interpolant; V (B, 100), q, p (B, W)."""
    return 0.5 * p**2 + sensor_V_rows(sensor_spline(np.atleast_2d(V)), q)


# ---------------------------------------------------------------- integrator predictors


def _as_inputs(V, t, ic):
    V = np.atleast_2d(np.asarray(V, dtype=np.float64))
    t = np.atleast_2d(np.asarray(t, dtype=np.float64))
    ic = np.atleast_2d(np.asarray(ic, dtype=np.float64))
    B = V.shape[0]
    if t.shape[0] == 1 and B > 1:
        t = np.broadcast_to(t, (B, t.shape[1]))
    if ic.shape != (B, 2) or t.shape[0] != B:
        raise NHError(f"inconsistent shapes: V {V.shape}, t {t.shape}, ic {ic.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise NHError("query times must be finite and >= 0")
    return V, t, ic


def integrator_predict(V, t, ic, method: str = "yoshida8", dt: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Integrate each orbit on its sensor interpolant; (q, p) at the query times.

    V (B, 100), t (B, W) any order (>= 0), ic (B, 2) = (q0, p0) at t = 0.
    Steps of at most `dt` land exactly on every query time.
    """
    V, t, ic = _as_inputs(V, t, ic)
    get_method(method)
    order = np.argsort(t, axis=1, kind="stable")  # (B, W)
    ts = np.take_along_axis(t, order, axis=1)
    t_out = np.concatenate([np.zeros((t.shape[0], 1)), ts], axis=1)  # start every orbit at t = 0
    q, p = integrate_batch(sensor_dV, sensor_spline(V), ic[:, 0], ic[:, 1], t_out, dt, method)
    q_out = np.empty_like(t)
    p_out = np.empty_like(t)
    np.put_along_axis(q_out, order, q[:, 1:], axis=1)
    np.put_along_axis(p_out, order, p[:, 1:], axis=1)
    return q_out, p_out


def native_grid(t_max: float, dt: float) -> np.ndarray:
    """Uniform grid 0, h, ..., t_max with h = t_max / ceil(t_max / dt) <= dt."""
    n = max(1, int(np.ceil(t_max / dt - 1e-9)))
    return np.linspace(0.0, t_max, n + 1)


@njit(**JIT)
def _hermite_row(params, t0, h, q, p, t, q_out, p_out):
    """Cubic Hermite dense output of one uniform-grid orbit at the query times t."""
    G = q.shape[0]
    last = -1
    f0 = 0.0
    f1 = 0.0
    for j in range(t.shape[0]):
        k = int(np.floor((t[j] - t0) / h))
        if k < 0:
            k = 0
        elif k > G - 2:
            k = G - 2
        if k != last:  # queries are usually sorted: two force evaluations per grid interval at most
            f0 = -sensor_dV(q[k], params)
            f1 = -sensor_dV(q[k + 1], params)
            last = k
        s = (t[j] - (t0 + k * h)) / h
        h00 = (1.0 + 2.0 * s) * (1.0 - s) ** 2
        h10 = s * (1.0 - s) ** 2
        h01 = s * s * (3.0 - 2.0 * s)
        h11 = s * s * (s - 1.0)
        q_out[j] = h00 * q[k] + h * h10 * p[k] + h01 * q[k + 1] + h * h11 * p[k + 1]
        p_out[j] = h00 * p[k] + h * h10 * f0 + h01 * p[k + 1] + h * h11 * f1


@njit(**PARALLEL_JIT)
def _hermite_rows(params, t0, h, q, p, t, q_out, p_out):
    for b in prange(q.shape[0]):
        _hermite_row(params[b], t0, h, q[b], p[b], t[b], q_out[b], p_out[b])


def hermite(params: np.ndarray, tg: np.ndarray, q: np.ndarray, p: np.ndarray, t: np.ndarray):
    """Cubic Hermite dense output of uniform-grid solutions at query times.

    tg (G,) uniform grid; q, p (B, G) states on it; t (B, W) query times in
    [tg[0], tg[-1]]. Uses q' = p and p' = -V'(q) (sensor interpolant params[b]): fourth order.
    Returns (q, p) at t, each (B, W).
    """
    t = np.ascontiguousarray(t, dtype=np.float64)
    q_out = np.empty(t.shape)
    p_out = np.empty(t.shape)
    _hermite_rows(
        np.ascontiguousarray(params),
        float(tg[0]),
        float(tg[1] - tg[0]),
        np.ascontiguousarray(q),
        np.ascontiguousarray(p),
        t,
        q_out,
        p_out,
    )
    return q_out, p_out


def integrator_native(V, t, ic, method: str, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Integrate on the native uniform grid of step <= dt, answer the query times by Hermite.

    The integrator takes ceil(T / dt) steps (T = max query time), independent
    of how many query times there are; this is how an integrator is timed in
    the work-precision diagram.
    """
    V, t, ic = _as_inputs(V, t, ic)
    t_max = float(t.max())
    if t_max <= 0:
        return np.broadcast_to(ic[:, :1], t.shape).copy(), np.broadcast_to(ic[:, 1:], t.shape).copy()
    params = sensor_spline(V)
    tg = native_grid(t_max, dt)
    q, p = integrate_batch(sensor_dV, params, ic[:, 0], ic[:, 1], tg, dt, method)  # (B, G)
    return hermite(params, tg, q, p, t)


# ---------------------------------------------------------------- the oracle model


@dataclass(frozen=True)
class OracleConfig:
    """A converged integrator standing in for a trained network."""

    method: str = "yoshida8"
    dt: float = 1e-3


class OracleModel(torch.nn.Module):
    """`OperatorModel`-compatible module whose forward is a converged integration.

    forward(V (B, 100), t (B, W), ic (B, 2)) -> (q, p) (B, W), in the input
    dtype and device. Computes in float64 on the CPU; has no trainable
    parameters (a float64 buffer tells the evaluator to feed it float64).
    """

    def __init__(self, config: OracleConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = OracleConfig(**config)
        self.config = config or OracleConfig()
        get_method(self.config.method)
        self.name = "oracle"
        self.register_buffer("_dtype_probe", torch.zeros((), dtype=torch.float64))

    def forward(
        self, V: torch.Tensor, t: torch.Tensor, ic: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, p = integrator_predict(
            V.detach().cpu().double().numpy(),  # (B, 100)
            t.detach().cpu().double().numpy(),  # (B, W)
            ic.detach().cpu().double().numpy(),  # (B, 2)
            self.config.method,
            self.config.dt,
        )
        as_t = lambda a: torch.from_numpy(a).to(device=t.device, dtype=t.dtype)  # noqa: E731
        return as_t(q), as_t(p)  # (B, W) each

    def regularizer(self) -> torch.Tensor:
        return torch.zeros((), dtype=torch.float64)


BASELINES = ("rk4", "leapfrog", "yoshida4")  # the integrators every model is compared with


def integrator_predictor(method: str, dt: float, native: bool = True) -> Predictor:
    """An integrator on the sensor interpolant as a predictor (native grid + Hermite by default)."""

    def predict(V, t, ic):
        if native:
            return integrator_native(V, t, ic, method, dt)
        return integrator_predict(V, t, ic, method, dt)

    return predict
