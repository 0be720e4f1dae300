"""`predict(run, V, ic, t) -> (q, p, bands)`: a trained operator on one potential, any times.

Times beyond the 2-second window are answered by chaining windows exactly as `nh eval`
does (`nh_models.evaluation.structure.chain`: the predicted end state of a window is the
start of the next): a time t in (2k, 2(k + 1)] is predicted at t - 2k from the start of
window k, and t = 0 is the initial condition itself. So predicting at chain's own grid
gives chain's numbers.

Bands come from the run's calibration.json (`nh_models.calibration`): at `level`, the
simultaneous split-conformal band of the orbit's energy stratum. Its guarantee holds for
one window (t <= 2); later windows keep the same width and are marked uncalibrated.
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
from nh_data.problem import T_END, WINDOW

from ..calibration import Calibration, load_calibration
from ..evaluation.predictors import model_predictor
from ..evaluation.structure import chain
from .potential_input import check_inputs

MAX_TIME = 1e4
MAX_POINTS = 10**6


@dataclass
class Bands:
    """Band columns of one predicted orbit at `level` (half-widths constant over the orbit)."""

    level: float
    stratum: str
    half_q: float
    half_p: float
    q_lo: np.ndarray
    q_hi: np.ndarray
    p_lo: np.ndarray
    p_hi: np.ndarray
    calibrated: np.ndarray  # (N,) bool: inside the first window, where the guarantee holds
    notes: list[str] = field(default_factory=list)


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


def chained(predictor, V: np.ndarray, ic: np.ndarray, t: np.ndarray, window: float = T_END):
    """q, p (N,) at times t (any order) of one orbit, windows chained as `nh eval` chains them."""
    V = V[None]
    ic = np.asarray(ic, dtype=np.float64).reshape(1, 2)
    k = np.maximum(np.ceil(t / window - 1e-12).astype(np.int64) - 1, 0)  # window of each time
    n_windows = int(k.max()) + 1
    if n_windows > 1:
        _, qc, pc = chain(predictor, V, ic, n_windows - 1, window, WINDOW)  # starts of windows 1..n-1
        starts = np.stack([qc[0, :: WINDOW - 1], pc[0, :: WINDOW - 1]], axis=1)  # (n_windows, 2)
    else:
        starts = ic
    q = np.empty_like(t)
    p = np.empty_like(t)
    for w in np.unique(k):
        sel = k == w
        qw, pw = predictor(V, (t[sel] - w * window)[None], starts[w : w + 1])
        q[sel], p[sel] = qw[0], pw[0]
    at0 = t == 0.0
    q[at0], p[at0] = ic[0, 0], ic[0, 1]
    return q, p


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
) -> tuple[np.ndarray, np.ndarray, Bands | None]:
    """q(t), p(t) of H = p^2/2 + V(q) from (q0, p0) = ic, predicted by a trained operator.

    run_or_model: a run folder (its best checkpoint and calibration.json) or an OperatorModel.
    V: (100,) the potential at the sensors; ic: (q0, p0); t: (N,) times in [0, 1e4].
    level: band level in (0, 1) (None: no band); needs a calibration (the run's, or
    `calibration=`). Inputs outside what any prediction can mean are an NHError (see
    `potential.check_inputs`); its warnings are appended to `warnings` when a list is given.
    Returns (q, p, bands) with bands None when level is None.
    """
    if isinstance(run_or_model, torch.nn.Module):
        model, cal = run_or_model, calibration
    else:
        model, cal, _ = load_predictor_run(run_or_model, device)
        cal = calibration or cal
    V = np.asarray(V, dtype=np.float64)
    t = check_times(t)
    strata = cal.strata if cal is not None else None
    _, _, stratum, notes = check_inputs(V, tuple(np.asarray(ic, dtype=np.float64).reshape(-1)[:2]), strata)
    if warnings is not None:
        warnings.extend(notes)
    q, p = chained(model_predictor(model, device), V, np.asarray(ic, dtype=np.float64), t)
    if level is None:
        return q, p, None
    if cal is None:
        raise NHError("no calibration for a band: run `nh calibrate RUN` (or train anew) first")
    if not 0.0 < level < 1.0:
        raise NHError(f"--band must lie in (0, 1), got {level!r}")
    band_notes = []
    if stratum not in cal.strata:
        band_notes.append(f"stratum {stratum} was not calibrated: the band pools every calibration orbit")
    hq, hp = cal.half_widths(stratum, level)
    if not math.isfinite(hq):
        band_notes.append(f"too few calibration orbits for level {level:g}: the band is infinite")
    calibrated = t <= T_END
    if not calibrated.all():
        band_notes.append(
            f"the band's guarantee holds for the first {T_END:g}-s window only; later windows are chained "
            "predictions whose coverage decays (see `nh eval`)"
        )
    bands = Bands(level, stratum, hq, hp, q - hq, q + hq, p - hp, p + hp, calibrated, band_notes)
    return q, p, bands


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
