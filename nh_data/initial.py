"""Initial conditions (SPEC section 3) and output times (SPEC section 5).

- ``strata`` (v1.33): 4 orbits per potential, one per energy stratum of
  u = (E - V(q0)) / (V0 - V(q0)). q0 ~ U(0, 1), redrawn while
  V0 - V(q0) < 1e-3; u uniform in its stratum; E0 = V(q0) + u (V0 - V(q0));
  p0 = +-sqrt(2 (E0 - V(q0))) with a random sign.
- ``wall`` (v1, the paper): one orbit per potential from rest on the left
  wall, (q0, p0) = (0, 0), E0 = V0. u is stored as 0 (no kinetic energy).

Times: W = 100 points on [0, T]: ``random`` = 0, T and 98 sorted uniform
draws; ``uniform`` = np.linspace(0, T, W). Long orbits (`sample_long_times`, chained
windows): K windows of such times end to end, window k's drawn after window k - 1's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .problem import T_END, V0, WINDOW
from .spline import V_rows

STRATA = np.array([[0.05, 0.35], [0.35, 0.65], [0.65, 0.95], [0.95, 0.99]])
MIN_GAP = 1e-3
IC_MODES = ("strata", "wall")
TIME_MODES = ("random", "uniform")


@dataclass
class Orbits:
    """Initial conditions of R orbits; `pot` indexes the potential of each orbit."""

    pot: np.ndarray  # (R,) int64, row in the potential batch
    q0: np.ndarray  # (R,)
    p0: np.ndarray  # (R,)
    E0: np.ndarray  # (R,)
    u: np.ndarray  # (R,)


def orbits_per_potential(ic: str) -> int:
    return len(STRATA) if ic == "strata" else 1


def sample_initial(rng: np.random.Generator, params: np.ndarray, ic: str, V0: float = V0) -> Orbits:
    """Initial conditions for the potentials `params`: (M, P), drawn from `rng` in a fixed order."""
    M = params.shape[0]
    if ic == "wall":
        z = np.zeros(M)
        return Orbits(np.arange(M, dtype=np.int64), z, z.copy(), np.full(M, V0), z.copy())
    k = len(STRATA)
    pot = np.repeat(np.arange(M, dtype=np.int64), k)  # (R,)
    R = M * k
    prow = params[pot]  # (R, P)
    q0 = rng.random(R)
    Vq = V_rows(q0, prow)
    bad = np.flatnonzero(V0 - Vq < MIN_GAP)
    while bad.size:  # redraw only the failures, in index order: deterministic
        q0[bad] = rng.random(bad.size)
        Vq[bad] = V_rows(q0[bad], prow[bad])
        bad = bad[V0 - Vq[bad] < MIN_GAP]
    stratum = np.tile(np.arange(k), M)
    lo, hi = STRATA[stratum, 0], STRATA[stratum, 1]
    u = lo + (hi - lo) * rng.random(R)
    sign = np.where(rng.random(R) < 0.5, -1.0, 1.0)
    E0 = Vq + u * (V0 - Vq)
    p0 = sign * np.sqrt(2.0 * (E0 - Vq))
    return Orbits(pot, q0, p0, E0, u)


def sample_times(
    rng: np.random.Generator, R: int, mode: str, W: int = WINDOW, T: float = T_END
) -> np.ndarray:
    """Output times (R, W): 0, T and W - 2 sorted uniform draws ('random') or a uniform grid."""
    if mode == "uniform":
        return np.broadcast_to(np.linspace(0.0, T, W), (R, W)).copy()
    inner = np.sort(rng.uniform(0.0, T, size=(R, W - 2)), axis=1)
    return np.concatenate([np.zeros((R, 1)), inner, np.full((R, 1), T)], axis=1)


def sample_long_times(
    rng: np.random.Generator, R: int, mode: str, windows: int, W: int = WINDOW, T: float = T_END
) -> np.ndarray:
    """Output times (R, windows (W - 1) + 1) of orbits spanning `windows` windows [0, T] end to end.

    Window k (0-based) holds k T plus the times of `sample_times` (drawn window after window, so
    the first k windows' times do not depend on how many follow); the shared ends k T appear
    once. windows = 1 is `sample_times` itself, with the same draws.
    """
    if windows == 1:
        return sample_times(rng, R, mode, W, T)
    parts = [np.zeros((R, 1))]
    for k in range(windows):
        parts.append(k * T + sample_times(rng, R, mode, W, T)[:, 1:])
    return np.concatenate(parts, axis=1)
