"""Random potentials (SPEC section 2, v1.33 per-sample depth scaling).

Per potential, with every random number drawn from the caller's Generator in a
fixed order (so a shard's content depends on its seed only):

- b ~ U{2, ..., 7} interior control values, l ~ U[0.01, 0.2] the GRF length
  scale, D ~ U(0.5, 3.5) the depth;
- interior abscissae x_1 < ... < x_b, x_j uniform in stratum j of [0, 1]
  (width 1/b) with a margin of 0.05 from the walls and 0.025 between strata;
- GRF values g_j at x_j (squared-exponential kernel, Cholesky), min-max mapped
  to [V0 - D, V0 - 0.1];
- control values c = (V0, mapped g_1..g_b, V0) are the coefficients of a
  clamped cubic B-spline with averaged knots (`spline.clamped_knots`). By the
  convex-hull property V <= V0 on [0, 1], with V(0) = V(1) = V0.

Sensors: V at `N_SENSORS` uniform points of [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grf import grf_sample
from .problem import SENSORS, V0
from .spline import V_batch, clamped_knots, pack_params_into, params_width

B_MIN, B_MAX = 2, 7
L_MIN, L_MAX = 0.01, 0.2
DEPTH_MIN, DEPTH_MAX = 0.5, 3.5
HEADROOM = 0.1
WALL_MARGIN = 0.05
STRATA_GAP = 0.025
V_ABS_MAX = 10.0
#: widest params row: B_MAX + 2 coefficients
P_MAX = params_width(B_MAX + 2)


@dataclass
class Potentials:
    """A batch of M potentials. Ragged spline data as lists of arrays."""

    b: np.ndarray  # (M,) int64
    l: np.ndarray  # (M,)
    depth: np.ndarray  # (M,)
    knots: list[np.ndarray]  # M x (b + 6,)
    coeffs: list[np.ndarray]  # M x (b + 2,)
    params: np.ndarray  # (M, P_MAX) packed piecewise polynomials
    V: np.ndarray  # (M, N_SENSORS) V on the sensors

    def __len__(self) -> int:
        return int(self.b.shape[0])

    def take(self, idx: np.ndarray) -> Potentials:
        idx = np.asarray(idx)
        return Potentials(
            self.b[idx],
            self.l[idx],
            self.depth[idx],
            [self.knots[i] for i in idx],
            [self.coeffs[i] for i in idx],
            self.params[idx],
            self.V[idx],
        )


def stratified_abscissae(u: np.ndarray, b: int) -> np.ndarray:
    """Map uniform draws u: (M, b) in [0, 1) to stratified abscissae (M, b), sorted by construction."""
    j = np.arange(b)
    lo = j / b + np.where(j == 0, WALL_MARGIN, STRATA_GAP / 2)
    hi = (j + 1) / b - np.where(j == b - 1, WALL_MARGIN, STRATA_GAP / 2)
    return lo + (hi - lo) * u


def scale_depth(g: np.ndarray, depth: np.ndarray, V0: float = V0) -> np.ndarray:
    """Min-max map each row of g: (M, b) to [V0 - depth, V0 - HEADROOM] (v1.33 scaling)."""
    gmin = g.min(axis=1, keepdims=True)
    gmax = g.max(axis=1, keepdims=True)
    v = (g - gmin) / (gmax - gmin)
    d = depth[:, None]
    return (V0 - d) + v * (d - HEADROOM)


def sample_potentials(rng: np.random.Generator, n: int, V0: float = V0) -> Potentials:
    """Draw n random potentials from `rng` (SPEC section 2, v1.33).

    The draws are made in one fixed order (b, l, depth, abscissae, normals) as
    whole arrays, so the result depends only on the generator state and n.
    """
    b = rng.integers(B_MIN, B_MAX + 1, size=n)
    l = rng.uniform(L_MIN, L_MAX, size=n)
    depth = rng.uniform(DEPTH_MIN, DEPTH_MAX, size=n)
    ux = rng.random((n, B_MAX))
    z = rng.standard_normal((n, B_MAX))

    knots: list[np.ndarray] = [np.empty(0)] * n
    coeffs: list[np.ndarray] = [np.empty(0)] * n
    params = np.zeros((n, P_MAX))
    for bb in range(B_MIN, B_MAX + 1):
        idx = np.flatnonzero(b == bb)
        if idx.size == 0:
            continue
        x = stratified_abscissae(ux[idx, :bb], bb)  # (m, bb)
        g = grf_sample(x, l[idx], z[idx, :bb])  # (m, bb)
        c_in = scale_depth(g, depth[idx], V0)  # (m, bb)
        for r, i in enumerate(idx):
            xr = np.concatenate(([0.0], x[r], [1.0]))
            t = clamped_knots(xr)
            c = np.concatenate(([V0], c_in[r], [V0]))
            knots[i] = t
            coeffs[i] = c
            pack_params_into(t, c, params[i])
    V = V_batch(SENSORS, params)
    return Potentials(b.astype(np.int64), l, depth, knots, coeffs, params, V)


def potential_rejections(pots: Potentials) -> np.ndarray:
    """Reason code per potential: 0 ok, 1 non-finite sensor values, 2 |V| > V_ABS_MAX on the sensors."""
    code = np.zeros(len(pots), dtype=np.int64)
    finite = np.all(np.isfinite(pots.V), axis=1) & np.all(np.isfinite(pots.params), axis=1)
    code[~finite] = 1
    big = np.any(np.abs(np.where(np.isfinite(pots.V), pots.V, 0.0)) > V_ABS_MAX, axis=1)
    code[finite & big] = 2
    return code
