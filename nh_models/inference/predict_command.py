"""The whole `nh predict`: resolve the potential, check the inputs, predict (chained windows,
bands), optionally check against the certified integrator, write the table and the PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from nh_data.errors import NHError
from nh_data.problem import T_END, WINDOW

from .potential_input import resolve_potential
from .predict import energy_along, load_predictor_run, predict, write_table

DEFAULT_LEVEL = 0.9


def parse_ic(text: str) -> tuple[float, float]:
    from nh_data.physics import parse_ic as _parse

    return _parse(text)


def predict_command(
    run: str | os.PathLike,
    spec: str,
    ic: tuple[float, float],
    *,
    t_max: float = T_END,
    times: int = WINDOW,
    band: float | None = None,
    check: bool = False,
    out: str | os.PathLike = "prediction.parquet",
    plot: bool = False,
    device: str = "cpu",
    allow_uncalibrated: bool = False,
) -> dict[str, Any]:
    """Everything of `nh predict`; every input is checked before a file is written.

    band None: the run's calibration at 0.9 when it has one, no band otherwise. With a band,
    times past the run's calibrated windows (t > 2K) are refused (an NHError naming K and the
    `nh calibrate --windows` that covers them) unless `allow_uncalibrated`: then no band there.
    Returns {"out", "plot", "warnings", "notes", "check", "stratum", ...} for the CLI to print.
    """
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise NHError(f"--out must end in .parquet or .csv, got {str(out)!r}")
    if not out.parent.is_dir():
        raise NHError(f"the folder of --out {str(out.parent)!r} does not exist")
    if not (np.isfinite(t_max) and 0 < t_max <= 1e4):
        raise NHError(f"--t-max must be in (0, 1e4], got {t_max!r}")
    if not 2 <= times <= 10**6:
        raise NHError(f"--times must be in [2, 1e6], got {times}")
    if band is not None and not 0.0 < band < 1.0:
        raise NHError(f"--band must lie in (0, 1), got {band!r}")
    pot = resolve_potential(spec)
    model, cal, meta = load_predictor_run(run, device)
    if band is not None and cal is None:
        raise NHError(f"run {run} has no calibration.json; run `nh calibrate {run}` for --band")
    level = band if band is not None else (DEFAULT_LEVEL if cal is not None else None)
    t = np.linspace(0.0, float(t_max), int(times))
    warnings: list[str] = []
    q, p, bands = predict(model, pot.V, ic, t, level, device=device, calibration=cal, warnings=warnings,
                          allow_uncalibrated=allow_uncalibrated, run_name=str(run))  # fmt: skip
    H = energy_along(pot.V, q, p, pot.exact_V if pot.exact is not None else None)
    cols: dict[str, Any] = {"t": t, "q": q, "p": p, "H": H}
    if bands is not None:
        cols |= {"q_lo": bands.q_lo, "q_hi": bands.q_hi, "p_lo": bands.p_lo, "p_hi": bands.p_hi,
                 "calibrated": bands.calibrated}  # fmt: skip
    result: dict[str, Any] = {"model": meta["model_name"], "potential": pot.label, "warnings": warnings,
                              "bands": bands, "check": None, "plot": None}  # fmt: skip
    refs = None
    if check:
        from .check import check as run_check

        result["check"] = run_check(pot, ic, t, q, p, bands)
        refs = {k: {"q": v["q"], "p": v["p"]} for k, v in result["check"].items()}
        for k, v in refs.items():
            cols[f"q_{k}"], cols[f"p_{k}"] = v["q"], v["p"]
    result["out"] = write_table(out, cols)
    if plot:
        from .plot import plot_prediction

        title = f"{meta['model_name']} ({Path(str(run)).name}) from (q0, p0) = ({ic[0]:g}, {ic[1]:g})"
        result["plot"] = plot_prediction(out.with_suffix(".png"), pot, t, q, p, bands, refs, title)
    result["H"] = (float(H[0]), float(np.max(np.abs(H - H[0]))))
    return result
