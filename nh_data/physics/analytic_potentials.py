"""The physical test potentials (SPEC section 7): njit kernels, the registry, input checks.

Each potential carries ``@njit`` kernels ``V(q, params)`` and ``dV(q, params)`` (the
interface of `nh_data.integrators`) and a *branch* force ``dV_branch(q, params, piece)``:
on a piecewise potential, piece j is the interval between kinks j-1 and j, and
``dV_branch`` is that piece's smooth formula continued beyond its ends, so a high-order
step whose sub-steps overshoot a kink still sees one smooth force. ``_dV_branch_by_id``
and ``_V_by_id`` dispatch on the integer ``kernel_id``, so that the reference kernels
(`nh_data.physics.orbits`) take an integer rather than a function and Numba's on-disk
cache serves them across processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from ..errors import NHError
from ..jit_options import JIT
from ..problem import SENSORS, V0

E_TOL = 1e-12  # tolerance on E0 <= V0 (lets the default wall start, E0 == V0, through)
MAX_T = 1e4  # longest accepted t_max
MAX_STEPS = 10**8  # most comparison steps accepted for one trajectory


# ============================================================ potentials (njit kernels)
# Each: V(q, params), dV_branch(q, params, piece), dV(q, params) = dV_branch on q's own piece.

# ---- sho: V = k (q - c)^2, params = [k, c]


@njit(**JIT)
def _sho_V(q, params):
    x = q - params[1]
    return params[0] * x * x


@njit(**JIT)
def _sho_dVb(q, params, piece):
    return 2.0 * params[0] * (q - params[1])


@njit(**JIT)
def _sho_dV(q, params):
    return 2.0 * params[0] * (q - params[1])


# ---- quartic double well: V = A (q - q1)^2 (q - q2)^2, params = [A, q1, q2]


@njit(**JIT)
def _quartic_V(q, params):
    u = (q - params[1]) * (q - params[2])
    return params[0] * u * u


@njit(**JIT)
def _quartic_dVb(q, params, piece):
    a = q - params[1]
    b = q - params[2]
    return 2.0 * params[0] * a * b * (a + b)


@njit(**JIT)
def _quartic_dV(q, params):
    return _quartic_dVb(q, params, 0)


# ---- morse: V = D (1 - exp(-a (q - r)))^2, params = [D, a, r]


@njit(**JIT)
def _morse_V(q, params):
    u = 1.0 - math.exp(-params[1] * (q - params[2]))
    return params[0] * u * u


@njit(**JIT)
def _morse_dVb(q, params, piece):
    e = math.exp(-params[1] * (q - params[2]))
    return 2.0 * params[0] * params[1] * (1.0 - e) * e


@njit(**JIT)
def _morse_dV(q, params):
    return _morse_dVb(q, params, 0)


# ---- mff (mirrored free fall): V = s |q - c|, params = [s, c]; kink at c


@njit(**JIT)
def _mff_V(q, params):
    return params[0] * abs(q - params[1])


@njit(**JIT)
def _mff_dVb(q, params, piece):
    return -params[0] if piece == 0 else params[0]


@njit(**JIT)
def _mff_dV(q, params):
    x = q - params[1]
    if x > 0.0:
        return params[0]
    if x < 0.0:
        return -params[0]
    return 0.0


# ---- smff (softened mff): V = a x / tanh(alpha x), x = q - c, params = [a, alpha, c].
# With y = alpha x: V = (a / alpha) f(y), f(y) = y coth y, dV = a f'(y). f(0) = 1 is a
# removable singularity and f'(y) = coth y - y / sinh^2 y cancels for small y, so for
# |y| < _SMFF_Y_SERIES both come from f(y) = sum_n c_n y^(2n), c_n = 2^(2n) B_2n / (2n)!
# (B: Bernoulli numbers); the first omitted term is < 1e-18 there.

_SMFF_Y_SERIES = 0.2
# c_0..c_7 of f(y) = y coth y = sum_n c_n y^(2n), and 2 n c_n of f'(y) = sum_n 2 n c_n y^(2n-1)
_YCOTH_C = (1.0, 1.0 / 3.0, -1.0 / 45.0, 2.0 / 945.0, -1.0 / 4725.0, 2.0 / 93555.0, -1382.0 / 638512875.0,
            4.0 / 18243225.0)  # fmt: skip
_YCOTH_DC = tuple(2.0 * n * c for n, c in enumerate(_YCOTH_C))[1:]


@njit(**JIT)
def _ycoth_series(y):
    """y coth y for |y| < 0.2 (Horner in y^2)."""
    z = y * y
    acc = 0.0
    for k in range(len(_YCOTH_C) - 1, -1, -1):
        acc = acc * z + _YCOTH_C[k]
    return acc


@njit(**JIT)
def _ycoth_prime_series(y):
    """d/dy (y coth y) for |y| < 0.2."""
    z = y * y
    acc = 0.0
    for k in range(len(_YCOTH_DC) - 1, -1, -1):
        acc = acc * z + _YCOTH_DC[k]
    return y * acc


@njit(**JIT)
def _smff_V(q, params):
    y = params[1] * (q - params[2])
    if abs(y) < _SMFF_Y_SERIES:
        return params[0] / params[1] * _ycoth_series(y)
    return params[0] / params[1] * y / math.tanh(y)


@njit(**JIT)
def _smff_dVb(q, params, piece):
    y = params[1] * (q - params[2])
    if abs(y) < _SMFF_Y_SERIES:
        return params[0] * _ycoth_prime_series(y)
    s = math.sinh(y)
    return params[0] * (1.0 / math.tanh(y) - y / (s * s))


@njit(**JIT)
def _smff_dV(q, params):
    return _smff_dVb(q, params, 0)


# ---- unbounded: with x = q - c, V = -s x for x <= 0, -s x + k x^3 for x > 0 (SPEC's
# 32 q^3 - 48 q^2 + 20 q - 2 is -4 x + 32 x^3). params = [s, k, c]. V, V', V'' are
# continuous at c; V''' jumps from 0 to 6 k.


@njit(**JIT)
def _unbounded_V(q, params):
    x = q - params[2]
    if x <= 0.0:
        return -params[0] * x
    return -params[0] * x + params[1] * x * x * x


@njit(**JIT)
def _unbounded_dVb(q, params, piece):
    if piece == 0:
        return -params[0]
    x = q - params[2]
    return -params[0] + 3.0 * params[1] * x * x


@njit(**JIT)
def _unbounded_dV(q, params):
    return _unbounded_dVb(q, params, 0 if q <= params[2] else 1)


# ---- pendulum: V = g (1 - cos(2 theta (q - c))), params = [g, theta, c]


@njit(**JIT)
def _pendulum_V(q, params):
    return params[0] * (1.0 - math.cos(2.0 * params[1] * (q - params[2])))


@njit(**JIT)
def _pendulum_dVb(q, params, piece):
    w = 2.0 * params[1]
    return params[0] * w * math.sin(w * (q - params[2]))


@njit(**JIT)
def _pendulum_dV(q, params):
    return _pendulum_dVb(q, params, 0)


# ---- atw (asymmetric triangular well): V = V0 (1 - q / lam) for q < lam,
# V0 (1 - (1 - q) / (1 - lam)) otherwise. params = [V0, lam]; kink at lam.


@njit(**JIT)
def _atw_V(q, params):
    if q < params[1]:
        return params[0] * (1.0 - q / params[1])
    return params[0] * (1.0 - (1.0 - q) / (1.0 - params[1]))


@njit(**JIT)
def _atw_dVb(q, params, piece):
    if piece == 0:
        return -params[0] / params[1]
    return params[0] / (1.0 - params[1])


@njit(**JIT)
def _atw_dV(q, params):
    if q < params[1]:
        return -params[0] / params[1]
    if q > params[1]:
        return params[0] / (1.0 - params[1])
    return 0.0


# ---- dispatch by kernel id: the reference kernels take an integer, not a function, so that
# Numba's on-disk cache serves them across processes (a kernel taking a function argument is
# keyed on that dispatcher object, never hits the cache in a new process and grows its index).


@njit(**JIT)
def _dV_branch_by_id(pid, q, params, piece):
    """dV_branch of the potential with kernel_id `pid` (the registry order)."""
    if pid == 0:
        return _sho_dVb(q, params, piece)
    if pid == 1:
        return _quartic_dVb(q, params, piece)
    if pid == 2:
        return _morse_dVb(q, params, piece)
    if pid == 3:
        return _mff_dVb(q, params, piece)
    if pid == 4:
        return _smff_dVb(q, params, piece)
    if pid == 5:
        return _unbounded_dVb(q, params, piece)
    if pid == 6:
        return _pendulum_dVb(q, params, piece)
    if pid == 7:
        return _atw_dVb(q, params, piece)
    return np.nan  # not a registered potential


@njit(**JIT)
def _V_by_id(pid, q, params):
    if pid == 0:
        return _sho_V(q, params)
    if pid == 1:
        return _quartic_V(q, params)
    if pid == 2:
        return _morse_V(q, params)
    if pid == 3:
        return _mff_V(q, params)
    if pid == 4:
        return _smff_V(q, params)
    if pid == 5:
        return _unbounded_V(q, params)
    if pid == 6:
        return _pendulum_V(q, params)
    if pid == 7:
        return _atw_V(q, params)
    return np.nan  # not a registered potential


@njit(**JIT)
def _V_array(pid, params, q, out):
    """out[i] = V(q[i]) for the potential `pid`; q, out: (n,)."""
    for i in range(q.shape[0]):
        out[i] = _V_by_id(pid, q[i], params)


# ============================================================ registry


@dataclass(frozen=True)
class PhysicalPotential:
    """One test potential: formula, kernels, parameters, kinks, kind of reference.

    reference: "analytic" (closed form, any initial condition), "piecewise-exact"
    (piecewise linear V: exact parabolas between kink crossings) or "numeric"
    (Kahan-Li 8 at REF_DT with kink crossings located).
    """

    name: str
    formula: str
    V: Callable  # @njit V(q, params) -> float
    dV: Callable  # @njit dV(q, params) -> float
    dV_branch: Callable  # @njit dV_branch(q, params, piece) -> float
    params: np.ndarray  # float64[P]
    param_names: tuple[str, ...]
    kinks: tuple[float, ...] = ()  # sorted q where a derivative of V jumps
    kink_note: str = ""
    reference_kind: str = "numeric"
    kernel_id: int = -1  # index in POTENTIALS: selects V / dV_branch inside the reference kernels

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", np.ascontiguousarray(self.params, dtype=np.float64))
        if len(self.params) != len(self.param_names):
            raise ValueError(f"{self.name}: {len(self.params)} params, {len(self.param_names)} names")
        if list(self.kinks) != sorted(self.kinks):
            raise ValueError(f"{self.name}: kinks must be sorted")

    @property
    def kink_array(self) -> np.ndarray:
        return np.array(self.kinks, dtype=np.float64)

    def potential(self, q) -> np.ndarray:
        """V at every entry of `q` (any shape)."""
        q = np.asarray(q, dtype=np.float64)
        flat = np.ascontiguousarray(q.ravel())
        out = np.empty_like(flat)
        _V_array(self.kernel_id, self.params, flat, out)
        return out.reshape(q.shape)

    def force(self, q) -> np.ndarray:
        """dV/dq at every entry of `q` (any shape)."""
        q = np.asarray(q, dtype=np.float64)
        return np.array([self.dV(float(x), self.params) for x in q.ravel()]).reshape(q.shape)

    def energy(self, q, p) -> np.ndarray:
        """H = p^2 / 2 + V(q), elementwise."""
        return 0.5 * np.asarray(p, dtype=np.float64) ** 2 + self.potential(q)

    def sensors(self) -> np.ndarray:
        """V on np.linspace(0, 1, 100): the models' input vector, (100,)."""
        return self.potential(SENSORS)


_PHI = (1.0 + math.sqrt(5.0)) / 2.0
_SMFF_ALPHA = 20.0

POTENTIALS: dict[str, PhysicalPotential] = {
    p.name: replace(p, kernel_id=i)
    for i, p in enumerate(
        (
            PhysicalPotential(
                "sho",
                "V(q) = 8 (q - 0.5)^2",
                _sho_V,
                _sho_dV,
                _sho_dVb,
                np.array([8.0, 0.5]),
                ("k", "c"),
                reference_kind="analytic",
            ),
            PhysicalPotential(
                "quartic",
                "V(q) = (625/8) (q - 0.2)^2 (q - 0.8)^2",
                _quartic_V,
                _quartic_dV,
                _quartic_dVb,
                np.array([625.0 / 8.0, 0.2, 0.8]),
                ("A", "q1", "q2"),
            ),
            PhysicalPotential(
                "morse",
                "V(q) = D (1 - exp(-a (q - r)))^2, a = 3 ln((1 + sqrt 5)/2), D = 8/(sqrt 5 - 1)^2, r = 1/3",
                _morse_V,
                _morse_dV,
                _morse_dVb,
                np.array([8.0 / (math.sqrt(5.0) - 1.0) ** 2, 3.0 * math.log(_PHI), 1.0 / 3.0]),
                ("D", "a", "r"),
            ),
            PhysicalPotential(
                "mff",
                "V(q) = 4 |q - 0.5|",
                _mff_V,
                _mff_dV,
                _mff_dVb,
                np.array([4.0, 0.5]),
                ("s", "c"),
                kinks=(0.5,),
                kink_note="V' jumps from -4 to 4 at q = 0.5",
                reference_kind="piecewise-exact",
            ),
            PhysicalPotential(
                "smff",
                "V(q) = a (q - 0.5) / tanh(alpha (q - 0.5)), alpha = 20, a = 4 tanh(alpha/2); V(0.5) = a/alpha",
                _smff_V,
                _smff_dV,
                _smff_dVb,
                np.array([4.0 * math.tanh(_SMFF_ALPHA / 2.0), _SMFF_ALPHA, 0.5]),
                ("a", "alpha", "c"),
            ),
            PhysicalPotential(
                "unbounded",
                "V(q) = -4 (q - 0.5) for q <= 0.5; 32 q^3 - 48 q^2 + 20 q - 2 for q > 0.5",
                _unbounded_V,
                _unbounded_dV,
                _unbounded_dVb,
                np.array([4.0, 32.0, 0.5]),
                ("s", "k", "c"),
                kinks=(0.5,),
                kink_note="V, V', V'' continuous at q = 0.5; V''' jumps from 0 to 192",
            ),
            PhysicalPotential(
                "pendulum",
                "V(q) = g (1 - cos(2 theta (q - 0.5))), theta = pi/3, g = 2/(1 - cos theta)",
                _pendulum_V,
                _pendulum_dV,
                _pendulum_dVb,
                np.array([2.0 / (1.0 - math.cos(math.pi / 3.0)), math.pi / 3.0, 0.5]),
                ("g", "theta", "c"),
            ),
            PhysicalPotential(
                "atw",
                "V(q) = 2 (1 - q/lambda) for q < lambda, else 2 (1 - (1 - q)/(1 - lambda)); lambda = 0.25",
                _atw_V,
                _atw_dV,
                _atw_dVb,
                np.array([2.0, 0.25]),
                ("V0", "lambda"),
                kinks=(0.25,),
                kink_note="V' jumps from -8 to 8/3 at q = 0.25",
                reference_kind="piecewise-exact",
            ),
        )
    )
}


def get_potential(name: str) -> PhysicalPotential:
    """The registered potential `name`; NHError listing the valid names otherwise."""
    try:
        return POTENTIALS[name]
    except (KeyError, TypeError):
        raise NHError(f"unknown potential {name!r}; valid: {', '.join(POTENTIALS)}, all") from None


# ============================================================ input validation


def check_ic(pot: PhysicalPotential, q0: float, p0: float) -> float:
    """Validate a start (q0, p0) for `pot`; return its energy E0 = p0^2/2 + V(q0).

    The start must lie in [0, 1] with E0 <= V0 (to 1e-12), so the walls confine the orbit.
    """
    if not (math.isfinite(q0) and math.isfinite(p0)):
        raise NHError(f"initial condition must be finite, got q0={q0}, p0={p0}")
    if not 0.0 <= q0 <= 1.0:
        raise NHError(f"initial q0={q0} lies outside the box [0, 1]")
    E0 = 0.5 * p0 * p0 + pot.V(float(q0), pot.params)
    if E0 > V0 + E_TOL:
        raise NHError(
            f"initial condition (q0={q0}, p0={p0}) has energy E0={E0:.6g} above the walls V0={V0:g}: "
            "the orbit is not confined to [0, 1]"
        )
    return float(E0)


def parse_ic(text: str) -> tuple[float, float]:
    """Parse 'Q0,P0' into two floats (NHError when malformed)."""
    parts = str(text).split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        q0, p0 = (float(s) for s in parts)
    except ValueError:
        raise NHError(f"--ic must be Q0,P0 (two numbers separated by a comma), got {text!r}") from None
    return q0, p0


def parse_float(text: str, name: str) -> float:
    """Parse a number given on the command line (NHError naming the option when malformed)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise NHError(f"{name} must be a number, got {text!r}") from None


def _check_times(t_max: float, dt: float | None = None) -> None:
    if not (math.isfinite(t_max) and t_max > 0.0):
        raise NHError(f"t_max must be a positive number, got {t_max}")
    if t_max > MAX_T:
        raise NHError(f"t_max={t_max:g} is above the limit {MAX_T:g}")
    if dt is not None:
        if not (math.isfinite(dt) and dt > 0.0):
            raise NHError(f"dt must be a positive number, got {dt}")
        if math.ceil(t_max / dt - 1e-9) > MAX_STEPS:
            raise NHError(f"dt={dt:g} needs more than {MAX_STEPS:.0e} steps for t_max={t_max:g}")
