"""The paper's physical test potentials (SPEC section 7), exact references, integrator comparisons.

Every potential lives on q in [0, 1] with walls V(0) = V(1) = V0 = 2. Each one carries
``@njit`` kernels ``V(q, params)`` and ``dV(q, params)`` (the interface of
`nh_data.integrators`) and a *branch* force ``dV_branch(q, params, piece)``: on a
piecewise potential, piece j is the interval between kinks j-1 and j, and
``dV_branch`` is that piece's smooth formula continued beyond its ends, so a
high-order step whose sub-steps overshoot a kink still sees one smooth force. The
reference kernels pick a potential by its integer ``kernel_id`` rather than taking a
function argument, so Numba's on-disk cache serves them across processes.

References (``reference``), accurate to 1e-10 in q and p:

- sho: closed form for any initial condition.
- mff, atw (piecewise linear): exact. Between kinks the force is constant and the
  orbit a parabola; the kernel jumps from kink crossing to kink crossing (each the
  root of a quadratic) and evaluates the parabola at every output time.
- quartic, morse, smff, pendulum, unbounded: Kahan-Li 8 (17-stage composition of
  leapfrog) at dt = 1e-3 on the analytic force. On unbounded (V''' jumps at q = 0.5)
  a step that crosses the kink is redone as two: the crossing time is the root of
  q(tau) - 0.5 (safeguarded Newton on the step map), so no step straddles it.

Limits. A crossing located from a position is timed to ~ulp(q) / |p|, so the numeric
kernel loses accuracy on orbits that cross a kink very slowly and very often; it raises
NHError when crossings outrun it (~1000 per step). Only unbounded uses it with a kink,
where that needs E within ~1e-10 of V(0.5). The exact kernel has no such limit: about a
V-minimum kink it skips whole periods, so even E0 - V(kink) = 1e-300 costs nothing.

Comparisons (``compare``) run rk4, leapfrog, yoshida4 and yoshida8 through
`nh_data.integrators.integrate` on the analytic dV, output on the same times.
``build_physics`` writes ``NAME.parquet`` / ``NAME.json`` (and ``NAME.png``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numba import njit

from .config import JIT
from .errors import NHError
from .fileio import atomic_write
from .integrators import KAHANLI8, get_method, integrate

V0 = 2.0  # wall height: V(0) = V(1) = V0
N_SENSORS = 100  # V sampled on np.linspace(0, 1, N_SENSORS)
N_OUT = 100  # output times: np.linspace(0, t_max, N_OUT)
COMPARE_METHODS = ("rk4", "leapfrog", "yoshida4", "yoshida8")
REF_WEIGHTS = KAHANLI8.weights  # composition used by the numeric references
REF_DT = 1e-3  # their step (reference error ~1e-13 on [0, 2], see tests/test_physics_reference.py)
E_TOL = 1e-12  # tolerance on E0 <= V0 (lets the default wall start, E0 == V0, through)
MAX_T = 1e4  # longest accepted t_max
MAX_STEPS = 10**8  # most comparison steps accepted for one trajectory
DEFAULT_OUT = "parquet_data/physics"


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
        return self.potential(np.linspace(0.0, 1.0, N_SENSORS))


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


# ============================================================ reference kernels


@njit(**JIT)
def _piece_bounds(kinks, j):
    lo = -np.inf if j == 0 else kinks[j - 1]
    hi = np.inf if j == kinks.shape[0] else kinks[j]
    return lo, hi


@njit(**JIT)
def _start_piece(kinks, acc_left, acc_right, q, p):
    """Piece of a state (q, p); on a kink the direction of motion decides.

    Returns (piece, stuck): stuck when q sits at rest on a kink that pulls inward from
    both sides (a V-minimum kink), where the orbit stays put.
    """
    j = 0
    while j < kinks.shape[0] and kinks[j] < q:
        j += 1
    if j == kinks.shape[0] or kinks[j] != q:
        return j, False
    # q == kinks[j]: piece j is on its left, piece j + 1 on its right
    if p > 0.0:
        return j + 1, False
    if p < 0.0:
        return j, False
    if acc_right[j] > 0.0:
        return j + 1, False
    if acc_left[j] < 0.0:
        return j, False
    return j, True


@njit(**JIT)
def _first_hit(d, p, a):
    """Smallest tau > 0 with d + p tau + a tau^2 / 2 = 0 (inf if none); stable roots."""
    best = np.inf
    if a == 0.0:
        if p != 0.0 and -d / p > 0.0:
            best = -d / p
        return best
    disc = p * p - 2.0 * a * d
    if disc < 0.0:
        return best
    s = math.sqrt(disc)
    m = -p - s if p >= 0.0 else -p + s  # the larger-magnitude numerator: no cancellation
    if m == 0.0:
        return best
    r1 = m / a
    r2 = 2.0 * d / m
    if r1 > 0.0:
        best = r1
    if 0.0 < r2 < best:
        best = r2
    return best


@njit(**JIT)
def _kink_period(kinks, acc, k, v):
    """Period of an orbit passing kink k with speed v and trapped around it: kink k a
    V minimum (acc[k] > 0 on its left, acc[k + 1] < 0 on its right) and both turning
    points inside the adjacent pieces. inf when the orbit is not trapped so."""
    a_l = acc[k]
    a_r = acc[k + 1]
    if not (a_l > 0.0 and a_r < 0.0) or v == 0.0:
        return np.inf
    if k + 1 < kinks.shape[0] and kinks[k] + 0.5 * v * v / -a_r >= kinks[k + 1]:
        return np.inf
    if k >= 1 and kinks[k] - 0.5 * v * v / a_l <= kinks[k - 1]:
        return np.inf
    return 2.0 * v / a_l + 2.0 * v / -a_r


@njit(**JIT)
def _piecewise_linear_orbit(kinks, acc, q0, p0, t_out, q_out, p_out):
    """Exact orbit in a piecewise-linear V: constant acceleration acc[j] on piece j.

    Jumps from kink crossing to kink crossing (roots of quadratics), then evaluates the
    parabola of the current piece at each sorted output time; t_out[0] is the start.
    An orbit trapped around a V-minimum kink repeats exactly after one period from a
    crossing: whole periods are skipped, so tiny-energy orbits (periods near zero) cost
    no more than others; one whose period is below the time resolution is at rest.
    """
    nk = kinks.shape[0]
    acc_left = acc[:nk]
    acc_right = acc[1:]
    t = t_out[0]
    q = q0
    p = p0
    j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
    for i in range(t_out.shape[0]):
        target = t_out[i]
        while not stuck:
            lo, hi = _piece_bounds(kinks, j)
            a = acc[j]
            tau_lo = _first_hit(q - lo, p, a) if lo > -np.inf else np.inf
            tau_hi = _first_hit(q - hi, p, a) if hi < np.inf else np.inf
            tau = min(tau_lo, tau_hi)
            if t + tau > target:
                break
            p = p + a * tau
            k = j - 1 if tau_lo <= tau_hi else j  # the kink crossed
            q = kinks[k]
            t = t + tau
            j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
            period = _kink_period(kinks, acc, k, abs(p))
            if period <= 1e-15 * max(abs(target), 1.0):
                stuck = True  # amplitude ~ period^2: indistinguishable from rest at the kink
            elif period < target - t:
                t = t + math.floor((target - t) / period) * period
        s = target - t
        if stuck:
            q_out[i] = q
            p_out[i] = 0.0
        else:
            a = acc[j]
            q_out[i] = q + p * s + 0.5 * a * s * s
            p_out[i] = p + a * s


@njit(**JIT)
def _branch_step(pid, params, piece, q, p, h, w):
    """One composed leapfrog step (kick-drift-kick, kicks merged) on the branch force."""
    s = w.shape[0]
    p -= 0.5 * w[0] * h * _dV_branch_by_id(pid, q, params, piece)
    for k in range(s):
        q += w[k] * h * p
        f = _dV_branch_by_id(pid, q, params, piece)
        if k < s - 1:
            p -= 0.5 * (w[k] + w[k + 1]) * h * f
        else:
            p -= 0.5 * w[k] * h * f
    return q, p


@njit(**JIT)
def _crossing_time(pid, params, piece, q, p, h, w, b, q1):
    """tau in (0, h) with q(tau) = b on the step map of `piece`, given q - b and q1 - b
    (q1 the end of the full step) of opposite signs.

    Secant start, then safeguarded Newton with dq/dtau ~ p(tau), bisection as fallback.
    Returns (tau, q(tau), p(tau)).
    """
    g0 = q - b
    lo = 0.0
    hi = h
    tau = h * g0 / (g0 - (q1 - b))
    if not (0.0 < tau < h):
        tau = 0.5 * h
    qt = q
    pt = p
    for _ in range(100):
        qt, pt = _branch_step(pid, params, piece, q, p, tau, w)
        g = qt - b
        if g == 0.0:
            break
        if (g > 0.0) == (g0 > 0.0):
            lo = tau
        else:
            hi = tau
        tau_new = tau - g / pt if pt != 0.0 else 0.5 * (lo + hi)
        if not (lo < tau_new < hi):
            tau_new = 0.5 * (lo + hi)
        if abs(tau_new - tau) <= 1e-15 * h or hi - lo <= 1e-15 * h:
            tau = tau_new
            qt, pt = _branch_step(pid, params, piece, q, p, tau, w)
            break
        tau = tau_new
    return tau, qt, pt


@njit(**JIT)
def _composition_orbit(pid, params, kinks, q0, p0, t_out, dt, w, q_out, p_out):
    """Reference orbit: composition steps <= dt on the branch force, landing on every kink
    crossing and on every sorted output time (t_out[0] is the start).

    Returns the number of steps whose kink crossings were not all resolved (0 when all went
    well; more only for orbits crossing a kink ~1000 times within one step).
    """
    unresolved = 0
    nk = kinks.shape[0]
    acc_left = np.empty(nk)
    acc_right = np.empty(nk)
    for k in range(nk):
        acc_left[k] = -_dV_branch_by_id(pid, kinks[k], params, k)
        acc_right[k] = -_dV_branch_by_id(pid, kinks[k], params, k + 1)
    q = q0
    p = p0
    j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
    q_out[0] = q
    p_out[0] = p
    for i in range(1, t_out.shape[0]):
        span = t_out[i] - t_out[i - 1]
        n = int(np.ceil(span / dt - 1e-9))
        if stuck or n <= 0:
            q_out[i] = q
            p_out[i] = p
            continue
        h = span / n
        for _ in range(n):
            r = h  # time left in this step
            done = False
            for _guard in range(1000):  # sub-steps between kink crossings within this step
                lo, hi = _piece_bounds(kinks, j)
                r_sub = r
                if (q == lo or q == hi) and p != 0.0:
                    # leaving a kink against the force: the orbit returns after ~2|p/a|; a
                    # sub-step of half that cannot pass the turning point and re-cross unseen
                    a_j = -_dV_branch_by_id(pid, q, params, j)
                    if p * a_j < 0.0:
                        r_sub = min(r, 0.5 * abs(p / a_j))
                full = r_sub >= r
                q1, p1 = _branch_step(pid, params, j, q, p, r_sub, w)
                if lo <= q1 <= hi:
                    q = q1
                    p = p1
                    if full:
                        done = True
                        break
                    r -= r_sub
                    continue
                b = hi if q1 > hi else lo
                if q == b:  # on the kink but heading the other way: switch piece, no time passes
                    j = j + 1 if q1 > hi else j - 1
                    continue
                tau, qt, pt = _crossing_time(pid, params, j, q, p, r_sub, w, b, q1)
                q = b
                p = pt
                r -= tau
                j, stuck = _start_piece(kinks, acc_left, acc_right, q, p)
                if stuck or r <= 0.0:
                    done = True
                    break
            if not done:
                unresolved += 1
            if stuck:
                p = 0.0
                break
        q_out[i] = q
        p_out[i] = p
    return unresolved


# ============================================================ public API: reference, comparisons


def analytic_sho(
    pot: PhysicalPotential, t: np.ndarray, q0: float, p0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form harmonic orbit: omega = sqrt(2 k), any start (q0, p0) at t = 0."""
    k, c = pot.params
    omega = math.sqrt(2.0 * k)
    x0 = q0 - c
    wt = omega * np.asarray(t, dtype=np.float64)
    q = c + x0 * np.cos(wt) + p0 / omega * np.sin(wt)
    p = -x0 * omega * np.sin(wt) + p0 * np.cos(wt)
    at0 = wt == 0.0  # the start itself, bit for bit (c + (q0 - c) need not round to q0)
    return np.where(at0, q0, q), np.where(at0, p0, p)


def _branch_accelerations(pot: PhysicalPotential) -> np.ndarray:
    """-V' on every piece of a piecewise-linear potential, (n_kinks + 1,)."""
    edges = [-1.0, *pot.kinks, 2.0]
    return np.array(
        [-pot.dV_branch(0.5 * (edges[j] + edges[j + 1]), pot.params, j) for j in range(len(pot.kinks) + 1)]
    )


def _times(t) -> np.ndarray:
    t = np.ascontiguousarray(t, dtype=np.float64).reshape(-1)
    if t.shape[0] < 1 or not np.all(np.isfinite(t)) or t[0] < 0.0 or np.any(np.diff(t) < 0.0):
        raise NHError("times must be finite, sorted and >= 0")
    return t


def reference_numeric(
    name: str, t, q0: float = 0.0, p0: float = 0.0, *, dt: float = REF_DT, weights: np.ndarray = REF_WEIGHTS
) -> tuple[np.ndarray, np.ndarray]:
    """Composition-method orbit with kink crossings located, for any registered potential.

    The reference of the non-analytic potentials; exposed so tests can run it on sho/mff.
    """
    pot = get_potential(name)
    t = _times(t)
    t0 = np.concatenate([[0.0], t]) if t[0] > 0.0 else t
    q = np.empty_like(t0)
    p = np.empty_like(t0)
    unresolved = _composition_orbit(
        pot.kernel_id,
        pot.params,
        pot.kink_array,
        float(q0),
        float(p0),
        t0,
        float(dt),
        np.ascontiguousarray(weights, dtype=np.float64),
        q,
        p,
    )
    if unresolved:
        raise NHError(
            f"{name}: the reference integration could not resolve the kink crossings of the orbit from "
            f"(q0={q0}, p0={p0}) in {unresolved} steps (it crosses a kink too often per step of {dt:g})"
        )
    return (q[1:], p[1:]) if t0.shape[0] > t.shape[0] else (q, p)


def reference(name: str, t, q0: float = 0.0, p0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Reference orbit (q, p) at sorted times t >= 0 from (q0, p0) at t = 0, to 1e-10.

    Analytic for sho, exact piecewise parabolas for mff and atw, Kahan-Li 8 at
    dt = 1e-3 with kink crossings located for the others. Validates the start.
    """
    pot = get_potential(name)
    q0, p0 = float(q0), float(p0)
    check_ic(pot, q0, p0)
    t = _times(t)
    if pot.reference_kind == "analytic":
        return analytic_sho(pot, t, q0, p0)
    if pot.reference_kind == "piecewise-exact":
        t0 = np.concatenate([[0.0], t]) if t[0] > 0.0 else t
        q = np.empty_like(t0)
        p = np.empty_like(t0)
        _piecewise_linear_orbit(pot.kink_array, _branch_accelerations(pot), q0, p0, t0, q, p)
        return (q[1:], p[1:]) if t0.shape[0] > t.shape[0] else (q, p)
    return reference_numeric(name, t, q0, p0)


def native_grid(t_max: float, dt: float) -> np.ndarray:
    """A fixed-step method's own grid on [0, t_max]: t_k = k dt, the last step shortened
    to land on t_max. `integrate` on this grid takes exactly one step per interval."""
    n = max(1, math.ceil(t_max / dt - 1e-9))
    t = np.arange(n + 1, dtype=np.float64) * dt  # (n + 1,)
    t[-1] = t_max
    return t


def effective_step(t_max: float, dt: float) -> tuple[float, int]:
    """(h, n_steps) of a comparison run: steps of dt on the native grid (the last may be shorter)."""
    return float(dt), native_grid(t_max, dt).shape[0] - 1


def hermite_resample(pot: PhysicalPotential, t_grid, q_grid, p_grid, t) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Hermite interpolation of a grid solution at times t, with the exact slopes
    dq/dt = p and dp/dt = -V'(q) at the grid points (as the reference code resampled)."""
    from scipy.interpolate import CubicHermiteSpline

    q = CubicHermiteSpline(t_grid, q_grid, p_grid)(t)
    p = CubicHermiteSpline(t_grid, p_grid, -pot.force(q_grid))(t)
    return q, p


def _time_per_call(fn: Callable[[], object], repeats: int = 5, min_time: float = 2e-3) -> float:
    """Median wall time of one call of `fn` (already compiled): `repeats` batches of calls."""
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, min(1000, int(min_time / one)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return float(np.median(samples))


def compare(
    name: str,
    t_max: float = 2.0,
    dt: float = 0.02,
    ic: tuple[float, float] = (0.0, 0.0),
    *,
    methods: tuple[str, ...] = COMPARE_METHODS,
    n_out: int = N_OUT,
    timing: bool = True,
) -> dict:
    """Reference and classical integrators on `name`, each run at fixed step `dt`.

    Every method runs on its native grid t_k = k dt (`native_grid`), where its errors and
    energy drift are measured against the reference with no interpolation in between.
    For the table and the figure each solution is also resampled at n_out uniform times in
    [0, t_max] by cubic Hermite interpolation (`hermite_resample`).

    Returns {"t", "q_ref", "p_ref", "E0", "t_grid", "q_ref_grid", "p_ref_grid", "methods": {m: {"q", "p" (n_out,),
    "q_grid", "p_grid" (n_grid,), "max_err_q", "max_err_p", "energy_drift" (native grid),
    "max_err_q_out", "max_err_p_out" (at the n_out times), "time_per_trajectory_s"}}}.
    """
    pot = get_potential(name)
    q0, p0 = float(ic[0]), float(ic[1])
    E0 = check_ic(pot, q0, p0)
    _check_times(t_max, dt)
    for m in methods:
        get_method(m)
    t = np.linspace(0.0, t_max, n_out)  # (n_out,)
    q_ref, p_ref = reference(name, t, q0, p0)
    t_grid = native_grid(t_max, dt)  # (n_grid,)
    q_ref_g, p_ref_g = reference(name, t_grid, q0, p0)
    out: dict = {"t": t, "q_ref": q_ref, "p_ref": p_ref, "E0": E0, "methods": {}}
    out.update(t_grid=t_grid, q_ref_grid=q_ref_g, p_ref_grid=p_ref_g)
    out["ref_energy_drift"] = float(np.max(np.abs(pot.energy(q_ref, p_ref) - E0)))
    for m in methods:
        q_g, p_g = integrate(pot.dV, pot.params, q0, p0, t_grid, dt, m)  # (n_grid,)
        q, p = hermite_resample(pot, t_grid, q_g, p_g, t)  # (n_out,)
        res = {
            "q": q,
            "p": p,
            "q_grid": q_g,
            "p_grid": p_g,
            "max_err_q": float(np.max(np.abs(q_g - q_ref_g))),
            "max_err_p": float(np.max(np.abs(p_g - p_ref_g))),
            "energy_drift": float(np.max(np.abs(pot.energy(q_g, p_g) - E0))),
            "max_err_q_out": float(np.max(np.abs(q - q_ref))),
            "max_err_p_out": float(np.max(np.abs(p - p_ref))),
            "time_per_trajectory_s": None,
        }
        if timing:
            res["time_per_trajectory_s"] = _time_per_call(
                lambda m=m: integrate(pot.dV, pot.params, q0, p0, t_grid, dt, m)
            )
        out["methods"][m] = res
    return out


# ============================================================ files


def _columns(pot: PhysicalPotential, res: dict) -> dict[str, np.ndarray]:
    cols = {"t": res["t"], "V": pot.sensors(), "q_ref": res["q_ref"], "p_ref": res["p_ref"]}
    for m, r in res["methods"].items():
        cols[f"q_{m}"] = r["q"]
        cols[f"p_{m}"] = r["p"]
    return cols


def build_physics(
    name: str,
    out_dir: str | os.PathLike = DEFAULT_OUT,
    *,
    dt: float = 0.02,
    t_max: float = 2.0,
    ic: tuple[float, float] = (0.0, 0.0),
    plot: bool = False,
) -> dict:
    """Write DIR/NAME.parquet and DIR/NAME.json (and DIR/NAME.png with plot=True).

    Parquet: 100 rows, columns t, V (sensor k on row k), q_ref, p_ref, q_<m>, p_<m> for
    m in rk4, leapfrog, yoshida4, yoshida8. Returns the JSON summary as a dict.
    Every input is checked before anything is written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    pot = get_potential(name)
    q0, p0 = float(ic[0]), float(ic[1])
    check_ic(pot, q0, p0)
    _check_times(t_max, dt)
    res = compare(name, t_max, dt, (q0, p0))
    h, n_steps = effective_step(t_max, dt)
    summary = {
        "name": name,
        "formula": pot.formula,
        "params": dict(zip(pot.param_names, pot.params.tolist(), strict=True)),
        "kinks": list(pot.kinks),
        "kink_note": pot.kink_note,
        "ic": [q0, p0],
        "E0": res["E0"],
        "t_max": float(t_max),
        "n_out": N_OUT,
        "dt": float(dt),
        "errors": "max_err_q, max_err_p, energy_drift: on each method's native grid t = k dt against the "
        "reference; max_err_*_out: at the 100 output times, after cubic Hermite resampling (the parquet columns)",
        "timing": "time_per_trajectory_s: median wall time of one nh_data.integrators.integrate call "
        "(input checks included, compilation excluded); force_evals: the cost independent of the machine",
        "reference": {
            "kind": pot.reference_kind,
            "method": {
                "analytic": "closed form",
                "piecewise-exact": "exact parabolas between kink crossings",
                "numeric": f"kahanli8, dt={REF_DT:g}, steps land on kink crossings",
            }[pot.reference_kind],
            "energy_drift": res["ref_energy_drift"],
        },
        "methods": {
            m: {
                "max_err_q": r["max_err_q"],
                "max_err_p": r["max_err_p"],
                "energy_drift": r["energy_drift"],
                "max_err_q_out": r["max_err_q_out"],
                "max_err_p_out": r["max_err_p_out"],
                "time_per_trajectory_s": r["time_per_trajectory_s"],
                "step": h,
                "n_steps": n_steps,
                "force_evals": n_steps * get_method(m).force_evals_per_step,
            }
            for m, r in res["methods"].items()
        },
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table(_columns(pot, res))
    atomic_write(out / f"{name}.parquet", lambda tmp: pq.write_table(table, tmp))
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / f"{name}.json", lambda tmp: Path(tmp).write_text(text))
    if plot:
        from .physics_plot import plot_physics

        t_dense = np.linspace(0.0, t_max, 20 * N_OUT + 1)  # smooth reference curves for the figure
        dense = (t_dense, *reference(name, t_dense, q0, p0))
        atomic_write(out / f"{name}.png", lambda tmp: plot_physics(pot, res, tmp, dense=dense))
    return summary


def build_all(
    out_dir: str | os.PathLike = DEFAULT_OUT,
    *,
    dt: float = 0.02,
    t_max: float = 2.0,
    ic: tuple[float, float] = (0.0, 0.0),
    plot: bool = False,
    progress: bool = True,
) -> dict[str, dict]:
    """build_physics for every potential; {name: summary}. The start is checked for all first."""
    from tqdm import tqdm

    for name in POTENTIALS:
        check_ic(POTENTIALS[name], float(ic[0]), float(ic[1]))
    _check_times(t_max, dt)
    summaries = {}
    for name in tqdm(POTENTIALS, desc="nh physics", unit="potential", disable=not progress):
        summaries[name] = build_physics(name, out_dir, dt=dt, t_max=t_max, ic=ic, plot=plot)
    return summaries


def format_table(summaries: dict[str, dict]) -> str:
    """One line per potential x method: max error in q and p, energy drift, time/trajectory."""
    head = (
        f"{'potential':<10} {'method':<9} {'max|dq|':>10} {'max|dp|':>10} {'max|dH|':>10} {'time/traj':>10}"
    )
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        for m, r in s["methods"].items():
            tt = r["time_per_trajectory_s"]
            tt_s = f"{tt * 1e6:8.1f}us" if tt is not None else f"{'-':>10}"
            lines.append(
                f"{name:<10} {m:<9} {r['max_err_q']:10.2e} {r['max_err_p']:10.2e} {r['energy_drift']:10.2e} {tt_s}"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class PhysicsData:
    """A built physics case: times (W,), sensors V (100,), reference and method orbits (W,)."""

    name: str
    t: np.ndarray
    V: np.ndarray
    q_ref: np.ndarray
    p_ref: np.ndarray
    methods: dict[str, tuple[np.ndarray, np.ndarray]]
    meta: dict

    @property
    def ic(self) -> tuple[float, float]:
        return float(self.meta["ic"][0]), float(self.meta["ic"][1])


def load_physics(out_dir: str | os.PathLike, name: str, *, build: bool = True) -> PhysicsData:
    """Read DIR/NAME.parquet + .json; build them with the defaults first if missing and build=True."""
    import pyarrow.parquet as pq

    get_potential(name)
    out = Path(out_dir)
    pq_path, js_path = out / f"{name}.parquet", out / f"{name}.json"
    if not (pq_path.exists() and js_path.exists()):
        if not build:
            raise NHError(f"no physics case {name!r} in {out}; run `nh physics {name} --out {out}`")
        build_physics(name, out)
    try:
        table = pq.read_table(pq_path)
        meta = json.loads(js_path.read_text())
    except Exception as exc:  # noqa: BLE001 - any read failure is a corrupt file for the user
        raise NHError(f"cannot read physics case {name!r} from {out}: {exc}") from None
    cols = {c: table.column(c).to_numpy() for c in table.column_names}
    missing = {"t", "V", "q_ref", "p_ref"} - cols.keys()
    if missing:
        raise NHError(f"{pq_path} lacks columns {sorted(missing)}")
    methods = {
        c[2:]: (cols[c], cols["p_" + c[2:]])
        for c in table.column_names
        if c.startswith("q_") and c != "q_ref"
    }
    return PhysicsData(name, cols["t"], cols["V"], cols["q_ref"], cols["p_ref"], methods, meta)
