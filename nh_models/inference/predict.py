"""`predict(run, V, ic, t) -> (q, p, bands)`: a trained operator on one potential or a batch, any times.

Times beyond the 2-second window are answered by chaining windows exactly as `nh eval`
does (`nh_models.evaluation.structure.chain`: the predicted end state of a window is the
start of the next): a time t in (2k, 2(k + 1)] is predicted at t - 2k from the start of
window k, and t = 0 is the initial condition itself. So predicting at chain's own grid
gives chain's numbers.

Bands come from the run's calibration.json (`nh_models.calibration`): at `level`, the
simultaneous split-conformal band of the orbit's energy stratum in each chained window.
A calibration of K windows (`nh calibrate RUN --windows K`) holds one band per window, and
window k's band is used in window k (t in (2(k - 1), 2k]). Times past the calibrated windows
(t > 2K) are refused when a band is asked for; `allow_uncalibrated=True` predicts them
without a band (NaN band columns, `calibrated` False) and says so in the band's notes.

One orbit: V (100,), ic (2,), t (N,) -> q, p (N,). A batch: V (B, 100), ic (B, 2), t (B, N)
(or (N,), the same times for every orbit) -> q, p (B, N), one model load and batched
inference; each orbit's numbers equal its own one-orbit prediction to round-off.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nh_data.errors import NHError
from nh_data.problem import T_END

from ..calibration import Calibration, load_calibration
from ..evaluation.predictors import model_predictor
from ..evaluation.structure import chained, window_of
from ..zoo import PREFIX
from .potential_input import check_inputs

MAX_TIME = 1e4
MAX_POINTS = 10**6  # query times per orbit
MAX_BATCH_POINTS = 10**8  # query times of a whole batch


@dataclass
class Bands:
    """Band columns of a predicted orbit at `level` (arrays (N,)), or of a batch (arrays (B, N),
    `stratum` a list, half-widths (B,) and (B, K, 2)). Band columns are NaN where there is no
    band (past the calibrated windows, with allow_uncalibrated)."""

    level: float
    stratum: str | list[str]
    half_q: float | np.ndarray  # window 1's half-width of the q band
    half_p: float | np.ndarray
    q_lo: np.ndarray
    q_hi: np.ndarray
    p_lo: np.ndarray
    p_hi: np.ndarray
    calibrated: np.ndarray  # bool: inside the calibrated windows (t <= K T), where the guarantee holds
    notes: list[str] = field(default_factory=list)
    windows: int = 1  # K: the chained windows the run's calibration covers
    window: np.ndarray | None = None  # the chained window (1-based) of each time
    half_q_t: np.ndarray | None = None  # the half-width of the q band at each time (NaN: no band)
    half_p_t: np.ndarray | None = None
    half_widths: np.ndarray | None = None  # (K, 2): (q, p) half-widths of each calibrated window


def load_predictor_run(run: str | os.PathLike, device: str = "cpu"):
    """(model, calibration or None, checkpoint meta) of a run folder's best checkpoint, or of a
    shipped entry when `run` is a `zoo.Pretrained`."""
    from ..training.checkpoint import build_model, checkpoint_path, load_checkpoint
    from ..zoo import Pretrained, load_pretrained

    if isinstance(run, Pretrained):
        return load_pretrained(run.name, device)
    ckpt = load_checkpoint(checkpoint_path(run, "best"), device)
    model = build_model(ckpt, device)
    cal = load_calibration(run, ckpt["digest"])
    return model, cal, {"model_name": ckpt["model_name"], "data_dir": ckpt.get("data_dir")}


def check_times(t) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if t.size == 0 or t.size > MAX_POINTS:
        raise NHError(f"need between 1 and {MAX_POINTS:,} query times, got {t.size}")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.max(t) > MAX_TIME:
        raise NHError(f"query times must be finite and in [0, {MAX_TIME:g}]")
    return t


def _batch_inputs(V, ic, t) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(V (B, 100), ic (B, 2), t (B, N), whether one orbit was given), checked."""
    V = np.asarray(V, dtype=np.float64)
    if V.ndim <= 1:
        return V[None], np.asarray(ic, dtype=np.float64).reshape(-1)[:2][None], check_times(t)[None], True
    if V.ndim != 2 or V.shape[0] < 1:
        raise NHError(f"V must be (100,) for one orbit or (B, 100) for a batch, got shape {V.shape}")
    B = V.shape[0]
    ic = np.asarray(ic, dtype=np.float64)
    if ic.shape != (B, 2):
        raise NHError(f"a batch of {B} potentials needs ic of shape ({B}, 2), got {ic.shape}")
    t = np.asarray(t, dtype=np.float64)
    if t.ndim == 1:
        t = np.broadcast_to(check_times(t), (B, t.size))
    elif t.ndim != 2 or t.shape[0] != B:
        raise NHError(f"a batch of {B} potentials needs t of shape ({B}, N) or (N,), got {t.shape}")
    if t.shape[1] == 0 or t.shape[1] > MAX_POINTS or t.size > MAX_BATCH_POINTS:
        raise NHError(f"need between 1 and {MAX_POINTS:,} query times per orbit ({MAX_BATCH_POINTS:,} in all), "
                      f"got {t.shape}")  # fmt: skip
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.max(t) > MAX_TIME:
        raise NHError(f"query times must be finite and in [0, {MAX_TIME:g}]")
    return V, ic, t, False


def uncalibrated_message(windows: int, t_max: float, run: str = "RUN") -> str:
    """The one-line refusal of times past the calibrated windows."""
    need = max(windows + 1, math.ceil(t_max / T_END - 1e-12))
    more = (  # a shipped entry (`zoo:NAME`) is not a folder to calibrate
        f"`nh models build {run[len(PREFIX):]}` and `nh calibrate RUN --windows {need}`" if run.startswith(PREFIX)
        else f"`nh calibrate {run} --windows {need}`"
    )  # fmt: skip
    return (
        f"the bands of {run} are calibrated for {windows} chained window{'s' if windows > 1 else ''} "
        f"(t <= {windows * T_END:g}) and the times reach {t_max:g}: run {more} for bands to "
        f"t = {need * T_END:g}, or pass --allow-uncalibrated (no band past t = {windows * T_END:g})"
    )


def predict(
    run_or_model: str | os.PathLike | torch.nn.Module,
    V,
    ic,
    t,
    level: float | None = None,
    *,
    device: str = "cpu",
    calibration: Calibration | None = None,
    warnings: list[str] | None = None,
    allow_uncalibrated: bool = False,
    run_name: str | None = None,
) -> tuple[np.ndarray, np.ndarray, Bands | None]:
    """q(t), p(t) of H = p^2/2 + V(q) from (q0, p0) = ic, predicted by a trained operator.

    run_or_model: a run folder (its best checkpoint and calibration.json) or an OperatorModel.
    One orbit: V (100,) the potential at the sensors, ic (q0, p0), t (N,) times in [0, 1e4].
    A batch: V (B, 100), ic (B, 2), t (B, N) or (N,); one model load, batched inference.
    level: band level in (0, 1) (None: no band); needs a calibration (the run's, or
    `calibration=`). Times past its K calibrated windows (t > 2K) are an NHError unless
    `allow_uncalibrated` (then no band there). Inputs outside what any prediction can mean are
    an NHError (see `potential.check_inputs`); its warnings are appended to `warnings` when a
    list is given (a batch's prefixed with the orbit's index).
    Returns (q, p, bands) with bands None when level is None; q, p (N,) or (B, N).
    """
    if isinstance(run_or_model, torch.nn.Module):
        model, cal = run_or_model, calibration
    else:
        model, cal, _ = load_predictor_run(run_or_model, device)
        cal = calibration or cal
        run_name = run_name or str(run_or_model)
    V, ic, t, single = _batch_inputs(V, ic, t)
    strata = cal.strata if cal is not None else None
    labels = []
    for i in range(len(V)):
        _, _, stratum, notes = check_inputs(V[i], tuple(ic[i]), strata)
        labels.append(stratum)
        if warnings is not None:
            warnings.extend(notes if single else [f"orbit {i}: {n}" for n in notes])
    if level is not None:  # every input checked before the network runs
        if cal is None:
            raise NHError("no calibration for a band: run `nh calibrate RUN` (or train anew) first")
        if not 0.0 < level < 1.0:
            raise NHError(f"--band must lie in (0, 1), got {level!r}")
        if float(t.max()) > cal.windows * T_END and not allow_uncalibrated:
            raise NHError(uncalibrated_message(cal.windows, float(t.max()), run_name or "RUN"))
    q, p = chained(model_predictor(model, device), V, ic, t)
    bands = None if level is None else _bands(cal, level, labels, t, q, p)
    if single:
        q, p = q[0], p[0]
        if bands is not None:
            bands = _one(bands)
    return q, p, bands


def _bands(cal: Calibration, level: float, labels: list[str], t, q, p) -> Bands:
    """The batch's bands: window k's half-widths in window k, none past the calibrated windows."""
    K = cal.windows
    notes = []
    missing = sorted({s for s in labels if s not in cal.strata})
    if missing:
        notes.append(f"stratum {', '.join(missing)} was not calibrated: the band pools every calibration orbit")
    widths = np.array([[cal.half_widths(s, level, k) for k in range(1, K + 1)] for s in labels])  # (B, K, 2)
    if not np.all(np.isfinite(widths)):
        notes.append(f"too few calibration orbits for level {level:g}: the band is infinite")
    win = window_of(t) + 1  # (B, N) 1-based
    inside = win <= K
    rows = np.broadcast_to(np.arange(len(t))[:, None], t.shape)
    at = np.minimum(win, K) - 1
    hq = np.where(inside, widths[rows, at, 0], np.nan)
    hp = np.where(inside, widths[rows, at, 1], np.nan)
    if not inside.all():
        notes.append(
            f"no band past t = {K * T_END:g}: the run is calibrated for {K} chained window{'s' if K > 1 else ''} "
            f"(`nh calibrate RUN --windows N` calibrates more)"
        )
    return Bands(level, labels, widths[:, 0, 0], widths[:, 0, 1], q - hq, q + hq, p - hp, p + hp, inside, notes,
                 K, win, hq, hp, widths)  # fmt: skip


def _one(b: Bands) -> Bands:
    """A batch of one's bands as one orbit's."""
    return Bands(b.level, b.stratum[0], float(b.half_q[0]), float(b.half_p[0]), b.q_lo[0], b.q_hi[0], b.p_lo[0],
                 b.p_hi[0], b.calibrated[0], b.notes, b.windows, b.window[0], b.half_q_t[0], b.half_p_t[0],
                 b.half_widths[0])  # fmt: skip


def energy_along(V: np.ndarray, q: np.ndarray, p: np.ndarray, exact=None) -> np.ndarray:
    """H = p^2/2 + V(q) along the predicted orbit: the exact V when known, else the sensor interpolant."""
    from ..evaluation.oracle import energy

    if exact is not None:
        return 0.5 * p**2 + exact(q)
    return energy(V[None], q[None], p[None])[0]


def write_table(path: str | os.PathLike, columns: dict[str, Any]) -> Path:
    """The prediction as Parquet or CSV (by the extension), written atomically."""
    from nh_data.fileio import atomic_write

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise NHError(f"--out must end in .parquet or .csv, got {str(path)!r}")
    if not path.parent.is_dir():
        raise NHError(f"the folder of --out {str(path.parent)!r} does not exist")
    import pyarrow as pa

    table = pa.table({k: np.asarray(v) for k, v in columns.items()})
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    else:
        import pyarrow.csv as pcsv

        atomic_write(path, lambda tmp: pcsv.write_csv(table, tmp))
    return path
