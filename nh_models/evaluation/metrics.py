"""Errors of predicted orbits: MSE of q and p, the loss 0.5 (MSE_q + MSE_p) and the relative
L2 error per orbit, summarised overall and per energy stratum of u (a wall-start dataset has
u = 1 or NaN: stratum "wall")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# energy strata of u = (E - V(q0)) / (V0 - V(q0)) (SPEC section 3)
STRATA: tuple[tuple[str, float, float], ...] = (
    ("[0.05,0.35)", 0.05, 0.35),
    ("[0.35,0.65)", 0.35, 0.65),
    ("[0.65,0.95)", 0.65, 0.95),
    ("[0.95,0.99)", 0.95, 0.99),
)
WALL = "wall"  # u = 1 or NaN: the v1 wall start (q0, p0) = (0, 0), E = V0
OTHER = "other"


def orbit_errors(q_hat: np.ndarray, p_hat: np.ndarray, q: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-orbit errors; all inputs (B, W). Returns arrays (B,).

    mse_q, mse_p: mean over the window; loss = 0.5 (mse_q + mse_p) (the
    training loss); rel_l2 = ||(q_hat - q, p_hat - p)|| / ||(q, p)||.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged orbit scores inf, silently
        dq2 = (q_hat - q) ** 2
        dp2 = (p_hat - p) ** 2
        mse_q = dq2.mean(axis=1)
        mse_p = dp2.mean(axis=1)
        norm = np.sqrt((q**2 + p**2).sum(axis=1))
        rel = np.sqrt((dq2 + dp2).sum(axis=1)) / np.where(norm > 0, norm, np.nan)
    return {"mse_q": mse_q, "mse_p": mse_p, "loss": 0.5 * (mse_q + mse_p), "rel_l2": rel}


def stratum_labels(u: np.ndarray) -> np.ndarray:
    """Label every orbit with its energy stratum (u = 1 or NaN -> "wall"; so is u = 0, what the
    data engine stores for wall starts, where u = 0/0: no stratum has u below 0.05)."""
    u = np.asarray(u, dtype=np.float64)
    labels = np.full(u.shape, OTHER, dtype=object)
    for name, lo, hi in STRATA:
        labels[(u >= lo) & (u < hi)] = name
    labels[np.isnan(u) | (u >= 0.99) | (u == 0.0)] = WALL
    return labels


def _stats(err: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {"n": int(mask.sum())}
    for key, values in err.items():
        v = values[mask]
        out[key] = float(np.mean(v)) if v.size else float("nan")
    out["loss_median"] = float(np.median(err["loss"][mask])) if mask.any() else float("nan")
    return out


def summarize(err: dict[str, np.ndarray], u: np.ndarray | None = None) -> dict[str, Any]:
    """Mean of each per-orbit error, overall and per energy stratum present."""
    n = len(err["loss"])
    out: dict[str, Any] = {"overall": _stats(err, np.ones(n, dtype=bool)), "strata": {}}
    if u is not None:
        labels = stratum_labels(u)
        for name in [s[0] for s in STRATA] + [WALL, OTHER]:
            mask = labels == name
            if mask.any():
                out["strata"][name] = _stats(err, mask)
    return out


def finite(x: float) -> float | None:
    """JSON-safe float (NaN/inf -> None)."""
    return float(x) if x is not None and math.isfinite(x) else None
