"""Coverage of calibrated bands (`nh_models.calibration`) on held-out orbits: per energy stratum
at levels 0.5, 0.9 and 0.99 with the mean band width, and its decay along chained windows.

The split-conformal guarantee holds for one window drawn like the calibration orbits. A
chained window starts from a predicted state, not a true one, so its errors compound and
the band (the same width) covers fewer orbits as time goes on: `chained_coverage` measures
how many, the truth there being Yoshida 8 at dt = 1e-3 on the sensor interpolant.

A calibration of K chained windows (`nh calibrate --windows K`) has a band per window:
`window_coverage` scores window k's band in window k, on long certified orbits that are
neither calibration nor test orbits (`long_window_coverage`: the engine's evaluation stream,
drawn like the test data; or the test orbits themselves when they reach past one window).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nh_data.errors import NHError
from nh_data.problem import T_END, WINDOW

from ..calibration import POOLED, Calibration, long_orbit_errors, scores_from_errors, window_errors
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


def window_coverage(cal: Calibration, errors: np.ndarray, u: np.ndarray, level: float = CHAIN_LEVEL) -> list[dict]:
    """Per chained window k = 1..K of the calibration: the fraction of orbits inside window k's own
    band over the whole window, its standard error sqrt(c (1 - c) / n), the mean full widths
    (2 Q sigma) and the coverage per stratum. errors: `calibration.window_errors` (n, >= K, 2);
    an orbit with no time in a window is not counted there."""
    labels = _labels(cal, u)
    rows = []
    for k in range(1, cal.windows + 1):
        s = scores_from_errors(errors[:, k - 1], cal.sigma_q, cal.sigma_p)
        present = ~np.isnan(s)
        Q = np.array([cal.quantile(lb, level, k) for lb in labels])
        inside = s <= Q
        n = int(present.sum())
        c = float(np.mean(inside[present])) if n else math.nan
        rows.append({
            "window": k, "t_end": k * T_END, "n": n, "level": level, "coverage": c,
            "se": math.sqrt(c * (1 - c) / n) if n else math.nan,
            "width_q": float(np.mean(2 * Q[present] * cal.sigma_q)) if n else math.nan,
            "width_p": float(np.mean(2 * Q[present] * cal.sigma_p)) if n else math.nan,
            "strata": {name if name != POOLED else "uncalibrated": float(np.mean(inside[present & (labels == name)]))
                       for name in dict.fromkeys(labels[present])},
        })  # fmt: skip
    return rows


def long_window_coverage(cal: Calibration, predict, data, potentials: int, seed: int = 0,
                         progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """{"windows": `window_coverage` rows, "windows_source": where the orbits came from}, or
    {"windows_note": why not}. The orbits: `data`'s own (a TestData) when they reach past one
    window, else the long orbits of `potentials` new potentials drawn like `data.source`'s from
    the engine's evaluation stream of `seed` (never a training, calibration or test orbit),
    integrated and certified to t = K T like the calibration's."""
    if cal.windows < 2:
        return {}
    if float(np.max(data.t)) > T_END:
        err = window_errors(predict, data.V, data.ic, data.t, data.q, data.p, cal.windows)
        u, source = data.u, {"orbits": "test", "n": len(data.u)}
    elif potentials > 0:
        try:
            (err,), u = long_orbit_errors([predict], data.source, potentials, cal.windows, stream="evaluation",
                                          seed=seed, progress=progress)  # fmt: skip
        except NHError as exc:
            return {"windows_note": f"no per-window coverage: {exc}"}
        source = {"orbits": "evaluation stream", "seed": seed, "potentials": potentials, "n": len(u)}
    else:
        return {}
    return {"windows": window_coverage(cal, err, u), "windows_source": source}
