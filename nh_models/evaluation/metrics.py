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


BOOTSTRAPS = 1000  # resamples of `paired_comparison`'s bootstrap
_CHUNK = 50  # resamples drawn at once (memory: _CHUNK x orbits indices)


def paired_comparison(
    mine: np.ndarray, theirs: np.ndarray, boots: int = BOOTSTRAPS, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """How a model's per-orbit losses `mine` compare with another row's `theirs` on the same orbits.

    - model_wins: the share of orbits on which the model is more accurate, and model_wins_se,
      its standard error sqrt(w (1 - w) / n);
    - mean_ratio: mean(mine) / mean(theirs), and mean_ratio_lo / mean_ratio_hi, the `level`
      percentile interval of a paired bootstrap over the orbits (each resample draws the same
      orbits on both sides). The mean of a heavy-tailed loss is set by a few orbits: where the
      interval holds 1, the split does not say which mean is lower. Left out where either side
      has a non-finite loss or theirs has a zero mean.
    """
    mine, theirs = np.asarray(mine, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if mine.shape != theirs.shape or mine.ndim != 1 or mine.size == 0:
        raise ValueError(f"need two equal, non-empty 1-D arrays of per-orbit losses, got {mine.shape} and {theirs.shape}")
    if boots < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need boots >= 1 and 0 < level < 1, got {boots} and {level}")
    n = mine.size
    win = float(np.mean(mine < theirs))
    out = {"model_wins": win, "model_wins_se": math.sqrt(win * (1.0 - win) / n)}
    if not (np.all(np.isfinite(mine)) and np.all(np.isfinite(theirs))) or theirs.sum() <= 0.0:
        return out
    rng = np.random.default_rng(seed)
    ratios = np.empty(boots)
    for s in range(0, boots, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, boots - s), n))
        den = theirs[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[s : s + len(idx)] = mine[idx].sum(axis=1) / den
    lo, hi = np.nanpercentile(ratios, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    out.update(mean_ratio=float(mine.mean() / theirs.mean()), mean_ratio_lo=float(lo), mean_ratio_hi=float(hi))
    return out
