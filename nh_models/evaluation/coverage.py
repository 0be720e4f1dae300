"""Coverage of calibrated bands (`nh_models.calibration`) on held-out orbits: per energy stratum
at levels 0.5, 0.9 and 0.99 with the mean band width, and its decay along chained windows.

The split-conformal guarantee holds for one window drawn like the calibration orbits. A
chained window starts from a predicted state, not a true one, so its errors compound and
the band (the same width) covers fewer orbits as time goes on: `chained_coverage` measures
how many, the truth there being Yoshida 8 at dt = 1e-3 on the sensor interpolant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nh_data.problem import WINDOW

from ..calibration import POOLED, Calibration
from .metrics import STRATA, WALL, stratum_labels
from .oracle import integrator_predict
from .structure import chain

LEVELS = (0.5, 0.9, 0.99)
CHAIN_LEVEL = 0.9
N_CHAIN = 200  # test orbits whose chained windows are scored


def _labels(cal: Calibration, u: np.ndarray) -> np.ndarray:
    labels = stratum_labels(u)
    return np.where(np.isin(labels, cal.strata), labels, POOLED)


def coverage_summary(cal: Calibration, scores: np.ndarray, u: np.ndarray, levels=LEVELS) -> dict[str, Any]:
    """Per stratum (and overall): n, the fraction of orbits whose score is within the band, and
    the band's full widths (2 Q sigma, for q and for p) averaged over the orbits, at each level."""
    labels = _labels(cal, u)
    out: dict[str, Any] = {"score": cal.kind, "strata": {}}
    names = [s[0] for s in STRATA] + [WALL, POOLED]
    Qs = {lv: np.array([cal.quantile(lb, lv) for lb in labels]) for lv in levels}  # (N,) per level
    for name in ["overall", *names]:
        mask = np.ones(len(u), dtype=bool) if name == "overall" else labels == name
        if not mask.any():
            continue
        row: dict[str, Any] = {"n": int(mask.sum()), "coverage": {}, "width_q": {}, "width_p": {}}
        for lv in levels:
            Q = Qs[lv][mask]
            row["coverage"][f"{lv:g}"] = float(np.mean(scores[mask] <= Q))
            row["width_q"][f"{lv:g}"] = float(np.mean(2 * Q * cal.sigma_q))
            row["width_p"][f"{lv:g}"] = float(np.mean(2 * Q * cal.sigma_p))
        out["strata"][name if name != POOLED else "uncalibrated"] = row
    return out


def chained_coverage(cal: Calibration, predict, V, ic, u, n_windows: int, window: float,
                     W: int = WINDOW, level: float = CHAIN_LEVEL) -> list[dict[str, float]]:  # fmt: skip
    """Fraction of orbits inside the one-window band (same width) in each chained window."""
    t, q_hat, p_hat = chain(predict, V, ic, n_windows, window, W)
    q, p = integrator_predict(V, np.broadcast_to(t, q_hat.shape), ic, "yoshida8", 1e-3)
    Q = np.array([cal.quantile(lb, level) for lb in _labels(cal, u)])
    rows = []
    for k in range(n_windows):
        sl = slice(k * (W - 1), (k + 1) * (W - 1) + 1)
        s = cal.scores_of(q_hat[:, sl], p_hat[:, sl], q[:, sl], p[:, sl])
        rows.append({"window": k + 1, "t_end": float(t[sl][-1]), "coverage": float(np.mean(s <= Q))})
    return rows
