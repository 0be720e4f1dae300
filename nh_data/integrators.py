"""Fixed-step integrators for H(q, p) = p^2/2 + V(q): one coefficient table each,
one shared stepper per family (see ../shared/SPEC.md section 4).

Two families:

- `Composition`: symmetric compositions of the leapfrog (Stormer-Verlet,
  kick-drift-kick) map with sub-step weights w_1..w_s (sum 1, palindromic).
  Leapfrog, Yoshida 4 (triple jump), Yoshida 8 ("solution A", 15 stages) and
  Kahan-Li 8 (17 stages). Symplectic and time-reversible.
- `ExplicitRK`: explicit Runge-Kutta Butcher tableaux (classic RK4), applied
  to the first-order system dq/dt = p, dp/dt = -V'(q). Not symplectic.

Force interface: the potential's derivative is an ``@njit`` function
``dV(q: float, params: float64[:]) -> float``; ``params`` carries whatever the
potential needs (spline knots and coefficients, physical constants). Numba
specialises every kernel on the function it is given.

Output times: between consecutive output times t_i < t_{i+1} the stepper takes
n = ceil((t_{i+1} - t_i) / dt) equal steps of h = (t_{i+1} - t_i) / n <= dt, so
every output lands exactly on its time with no interpolation error.

Three tiers (as in stumpy): `integrate` / `integrate_batch` validate and
package; `_integrate_batch` is the ``parallel=True`` driver writing one row per
sample; `_step` / `_integrate_one` do the maths on scalars and arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from .errors import NHError
from .jit_options import JIT, JIT_FN, PARALLEL_JIT_FN

_COMPOSITION = 0
_RK = 1


def _check_composition(name: str, w: np.ndarray) -> None:
    if abs(w.sum() - 1.0) > 1e-13:
        raise ValueError(f"{name}: weights sum to {w.sum()!r}, not 1")
    if not np.allclose(w, w[::-1], rtol=0, atol=1e-15):
        raise ValueError(f"{name}: composition weights are not palindromic")


@dataclass(frozen=True)
class Composition:
    """Symmetric composition of leapfrog sub-steps of size w_k * dt."""

    name: str
    order: int
    weights: np.ndarray
    symplectic: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        w = np.ascontiguousarray(self.weights, dtype=np.float64)
        object.__setattr__(self, "weights", w)
        _check_composition(self.name, w)

    @property
    def force_evals_per_step(self) -> int:
        return len(self.weights)  # first-same-as-last: s evaluations a step


@dataclass(frozen=True)
class ExplicitRK:
    """Explicit Runge-Kutta method given by its Butcher tableau (a, b, c)."""

    name: str
    order: int
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    symplectic: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        a = np.ascontiguousarray(self.a, dtype=np.float64)
        b = np.ascontiguousarray(self.b, dtype=np.float64)
        c = np.ascontiguousarray(self.c, dtype=np.float64)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        s = len(b)
        if a.shape != (s, s) or c.shape != (s,):
            raise ValueError(f"{self.name}: inconsistent tableau shapes")
        if np.any(np.triu(a) != 0):
            raise ValueError(f"{self.name}: tableau is not explicit")
        if abs(b.sum() - 1.0) > 1e-14 or not np.allclose(a.sum(axis=1), c, atol=1e-14):
            raise ValueError(f"{self.name}: tableau violates sum(b) = 1 or c = row sums of a")

    @property
    def force_evals_per_step(self) -> int:
        return len(self.b)


def triple_jump(w: np.ndarray, order: int) -> np.ndarray:
    """Raise a symmetric composition of order `order` (even) to `order + 2`."""
    k = 1.0 / (order + 1)
    w1 = 1.0 / (2.0 - 2.0**k)
    w0 = -(2.0**k) / (2.0 - 2.0**k)
    return np.concatenate([w1 * w, w0 * w, w1 * w])


def _palindrome(half: list[float], centre: float) -> np.ndarray:
    h = np.array(half, dtype=np.float64)
    return np.concatenate([h, [centre], h[::-1]])


# Yoshida (1990) eighth order, "solution A": w1..w7, w0 = 1 - 2 (w1 + ... + w7),
# composed as S(w7) ... S(w1) S(w0) S(w1) ... S(w7).
_YOSHIDA8_W = [
    -1.61582374150097,
    -2.44699182370524,
    -0.00716989419708120,
    2.44002732616735,
    0.157739928123617,
    1.82020630970714,
    1.04242620869991,
]
# Kahan & Li (1997) eighth order, 17 stages: weights 1..8, centre 9, mirrored.
_KAHANLI8_W = [
    0.13020248308889008087881763,
    0.56116298177510838456196441,
    -0.38947496264484728640807860,
    0.15884190655515560089621075,
    -0.39590389413323757733623154,
    0.18453964097831570709183254,
    0.25837438768632204729397911,
    0.29501172360931029887096624,
]
_KAHANLI8_CENTRE = -0.60550853383003451169892108

LEAPFROG = Composition("leapfrog", 2, np.array([1.0]))
YOSHIDA4 = Composition("yoshida4", 4, triple_jump(np.array([1.0]), 2))
YOSHIDA8 = Composition(
    "yoshida8",
    8,
    _palindrome(_YOSHIDA8_W[::-1], 1.0 - 2.0 * float(np.sum(_YOSHIDA8_W))),
)
KAHANLI8 = Composition(
    "kahanli8",
    8,
    # the published centre makes the weights sum to 1 only to ~1e-15; recompute it
    _palindrome(_KAHANLI8_W, 1.0 - 2.0 * float(np.sum(_KAHANLI8_W))),
)
RK4 = ExplicitRK(
    "rk4",
    4,
    a=np.array([[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]], dtype=np.float64),
    b=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    c=np.array([0, 0.5, 0.5, 1.0]),
)
assert abs(KAHANLI8.weights[8] - _KAHANLI8_CENTRE) < 1e-14

METHODS: dict[str, Composition | ExplicitRK] = {
    m.name: m for m in (LEAPFROG, YOSHIDA4, YOSHIDA8, KAHANLI8, RK4)
}


def get_method(name: str) -> Composition | ExplicitRK:
    try:
        return METHODS[name]
    except KeyError:
        raise NHError(f"unknown integrator {name!r}; valid: {', '.join(METHODS)}") from None


def _method_arrays(m: Composition | ExplicitRK):
    """(kind, w, a, b, c) arrays in the layout the kernels take."""
    empty1 = np.zeros(1)
    empty2 = np.zeros((1, 1))
    if isinstance(m, Composition):
        return _COMPOSITION, m.weights, empty2, empty1, empty1
    return _RK, empty1, m.a, m.b, m.c


# ---------------------------------------------------------------- kernels


def composition_step(force, jit=JIT):
    """The step of the composed leapfrog (kick-drift-kick, kicks merged), the one copy of it:
    ``step(a, b, q, p, h, w) -> (q, p)`` on the force ``force(q, a, b)``, an @njit function
    bound by closure (so that a kernel that calls the step can be cached: a jitted function
    passed as a value cannot). `jit`: the step's Numba options (JIT_FN when a or b is a function).
    """

    @njit(**jit)
    def step(a, b, q, p, h, w):
        s = w.shape[0]
        p -= 0.5 * w[0] * h * force(q, a, b)
        for k in range(s):
            q += w[k] * h * p
            f = force(q, a, b)
            if k < s - 1:
                p -= 0.5 * (w[k] + w[k + 1]) * h * f
            else:
                p -= 0.5 * w[k] * h * f
        return q, p

    return step


@njit(**JIT_FN)
def _dV_value(q, dV, params):
    """The force interface of this module, dV(q, params), with dV passed as a value."""
    return dV(q, params)


#: one step of the composed leapfrog on ``dV(q, params)``: ``_step_composition(dV, params, q, p, h, w)``
_step_composition = composition_step(_dV_value, JIT_FN)


@njit(**JIT_FN)
def _step_rk(dV, params, q, p, h, a, b, kq, kp):
    """One explicit Runge-Kutta step of dq/dt = p, dp/dt = -dV(q); kq, kp: stage scratch (s,)."""
    s = b.shape[0]
    for i in range(s):
        qi = q
        pi = p
        for j in range(i):
            qi += h * a[i, j] * kq[j]
            pi += h * a[i, j] * kp[j]
        kq[i] = pi
        kp[i] = -dV(qi, params)
    for i in range(s):
        q += h * b[i] * kq[i]
        p += h * b[i] * kp[i]
    return q, p


@njit(**JIT_FN)
def _step(dV, params, q, p, h, kind, w, a, b, kq, kp):
    if kind == _COMPOSITION:
        return _step_composition(dV, params, q, p, h, w)
    return _step_rk(dV, params, q, p, h, a, b, kq, kp)


@njit(**JIT_FN)
def _integrate_one(dV, params, q0, p0, t_out, dt, kind, w, a, b, q_out, p_out):
    """Integrate from t_out[0] through every t_out[i] (sorted), writing rows."""
    q = q0
    p = p0
    kq = np.empty(b.shape[0])  # Runge-Kutta stage scratch, allocated once per orbit
    kp = np.empty(b.shape[0])
    q_out[0] = q
    p_out[0] = p
    for i in range(1, t_out.shape[0]):
        span = t_out[i] - t_out[i - 1]
        n = int(np.ceil(span / dt - 1e-9))
        if n > 0:
            h = span / n
            for _ in range(n):
                q, p = _step(dV, params, q, p, h, kind, w, a, b, kq, kp)
        q_out[i] = q
        p_out[i] = p


@njit(**PARALLEL_JIT_FN)
def _integrate_batch(dV, params, q0, p0, t_out, dt, kind, w, a, b, q_out, p_out):
    for i in prange(q0.shape[0]):
        _integrate_one(dV, params[i], q0[i], p0[i], t_out[i], dt, kind, w, a, b, q_out[i], p_out[i])


# ---------------------------------------------------------------- public API


def _check_times(t_out: np.ndarray) -> None:
    if t_out.ndim == 0 or t_out.shape[-1] < 1:
        raise NHError("need at least one output time")
    if not np.all(np.isfinite(t_out)) or np.any(np.diff(t_out, axis=-1) < 0):
        raise NHError("output times must be finite and sorted")


def integrate(dV, params, q0: float, p0: float, t_out, dt: float, method: str = "yoshida8"):
    """Integrate one orbit; return (q, p) at the sorted times `t_out`.

    The orbit starts at t_out[0] from (q0, p0). `dV` is an @njit force
    function ``dV(q, params)``; every step is at most `dt`.
    """
    t_out = np.ascontiguousarray(t_out, dtype=np.float64)
    params = np.ascontiguousarray(params, dtype=np.float64)
    _check_times(t_out)
    if not dt > 0:
        raise NHError(f"dt must be positive, got {dt}")
    kind, w, a, b, _ = _method_arrays(get_method(method))
    q_out = np.empty_like(t_out)
    p_out = np.empty_like(t_out)
    _integrate_one(dV, params, float(q0), float(p0), t_out, float(dt), kind, w, a, b, q_out, p_out)
    return q_out, p_out


def integrate_batch(dV, params, q0, p0, t_out, dt: float, method: str = "yoshida8"):
    """Integrate B orbits in parallel; return (q, p), each (B, W).

    params: (B, P) one row per orbit (or (P,) shared); q0, p0: (B,);
    t_out: (B, W) or (W,) shared. Results do not depend on the thread count.
    """
    q0 = np.ascontiguousarray(q0, dtype=np.float64).reshape(-1)
    p0 = np.ascontiguousarray(p0, dtype=np.float64).reshape(-1)
    B = q0.shape[0]
    params = np.asarray(params, dtype=np.float64)
    if params.ndim == 1:
        params = np.broadcast_to(params, (B, params.shape[0]))
    t_out = np.asarray(t_out, dtype=np.float64)
    if t_out.ndim == 1:
        t_out = np.broadcast_to(t_out, (B, t_out.shape[0]))
    params = np.ascontiguousarray(params)
    t_out = np.ascontiguousarray(t_out)
    if p0.shape[0] != B or params.shape[0] != B or t_out.shape[0] != B:
        raise NHError("q0, p0, params and t_out must have the same number of rows")
    _check_times(t_out)
    if not dt > 0:
        raise NHError(f"dt must be positive, got {dt}")
    kind, w, a, b, _ = _method_arrays(get_method(method))
    q_out = np.empty(t_out.shape)
    p_out = np.empty(t_out.shape)
    _integrate_batch(dV, params, q0, p0, t_out, float(dt), kind, w, a, b, q_out, p_out)
    return q_out, p_out
