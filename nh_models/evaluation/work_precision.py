"""Work-precision: error against wall time per trajectory, integrators on their native grid at
several dt, a model as one point; `equal_cost` finds the RK4 step that costs what the model
costs, and RK4's error there."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from .metrics import orbit_errors
from .oracle import BASELINES, integrator_native, native_grid
from .predictors import model_dtype
from .settings import EvalSettings


def _best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def integrator_work_precision(
    V: np.ndarray,
    t: np.ndarray,
    ic: np.ndarray,
    q: np.ndarray,
    p: np.ndarray,
    methods=BASELINES,
    dts=EvalSettings.dts,
    repeats: int = 3,
    progress: bool = False,
) -> dict[str, list[dict[str, float]]]:
    """Error (mean loss over the orbits) and wall time per trajectory of each integrator at each dt.

    Each integrator runs batched (`integrate_batch`, Numba, all threads) on its
    native uniform grid and answers the query times by Hermite dense output;
    the time covers the interpolant, the integration and the dense output
    (compilation excluded by a warm-up call).
    """
    from nh_data.progress import bar as progress_bar

    B = V.shape[0]
    out: dict[str, list[dict[str, float]]] = {}
    bar = progress_bar(len(methods) * len(dts), desc="work-precision", unit="point", enabled=progress, leave=False)
    for method in methods:
        integrator_native(V[:2], t[:2], ic[:2], method, max(dts))  # warm-up (compile)
        rows = []
        for dt in sorted(dts, reverse=True):
            bar.set_postfix_str(f"{method} dt={dt:g}", refresh=False)
            bar.update()
            result = {}

            def run(dt=dt, method=method, result=result):
                result["qp"] = integrator_native(V, t, ic, method, dt)

            seconds = _best_time(run, repeats)
            q_hat, p_hat = result["qp"]
            err = orbit_errors(q_hat, p_hat, q, p)
            bad = ~np.isfinite(err["loss"])  # orbits that blew up (left the box at too large a step)
            rows.append(
                {
                    "dt": float(dt),
                    "steps": int(len(native_grid(float(t.max()), dt)) - 1),
                    "time_per_traj_s": seconds / B,
                    "loss": float(np.mean(err["loss"])) if not bad.any() else math.inf,
                    "rel_l2": float(np.mean(err["rel_l2"])) if not bad.any() else math.inf,
                    "n_diverged": int(bad.sum()),
                }
            )
        out[method] = rows
    bar.close()
    return out


def time_model(
    model: torch.nn.Module,
    V: np.ndarray,
    t: np.ndarray,
    ic: np.ndarray,
    device: str | torch.device = "cpu",
    batch_size: int = 2048,
    repeats: int = 3,
) -> dict[str, float]:
    """Inference wall time per trajectory on `device` with large batches.

    Inputs are moved to the device once (transfers excluded); one warm-up
    batch is excluded; CUDA is synchronised around each timing.
    """
    model.eval()
    dtype = model_dtype(model)
    B = min(batch_size, V.shape[0])
    dev = torch.device(device)
    Vt = torch.as_tensor(V[:B], dtype=dtype, device=dev)  # (B, 100)
    tt = torch.as_tensor(t[:B], dtype=dtype, device=dev)  # (B, W)
    ict = torch.as_tensor(ic[:B], dtype=dtype, device=dev)  # (B, 2)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def run():
        with torch.inference_mode():
            model(Vt, tt, ict)
        sync()

    run()  # warm-up
    seconds = _best_time(run, repeats)
    return {"time_per_traj_s": seconds / B, "batch": int(B), "device": str(dev)}


def equal_cost(rk4_rows: list[dict[str, float]], model_time: float) -> dict[str, Any]:
    """The RK4 step whose cost per trajectory equals `model_time`, and RK4's error there.

    Log-log interpolation of RK4's (time, dt) and (dt, loss) curves. Outside the
    measured range the cost is taken proportional to 1/dt and the error
    follows the slope of the two nearest points; such values are flagged
    ``extrapolated``.
    """
    rows = sorted(rk4_rows, key=lambda r: r["dt"])  # small dt (expensive) first
    log_dt = np.log([r["dt"] for r in rows])
    log_time = np.log([r["time_per_traj_s"] for r in rows])
    # a diverged point (loss inf, or None once through JSON) makes every value interpolated from it inf
    log_loss = np.log([max(r["loss"], 1e-300) if r["loss"] is not None else math.inf for r in rows])
    lt = math.log(model_time)
    order = np.argsort(log_time)
    extrapolated = not (log_time.min() <= lt <= log_time.max())
    if not extrapolated:
        ldt = float(np.interp(lt, log_time[order], log_dt[order]))
    elif lt < log_time.min():  # cheaper than RK4 at the largest dt
        i = int(np.argmax(log_dt))
        ldt = log_dt[i] + (log_time[i] - lt)
    else:  # dearer than RK4 at the smallest dt
        i = int(np.argmin(log_dt))
        ldt = log_dt[i] - (lt - log_time[i])
    if log_dt.min() <= ldt <= log_dt.max():
        lloss = float(np.interp(ldt, log_dt, log_loss))
    else:
        j = [0, 1] if ldt < log_dt.min() else [-2, -1]
        slope = (log_loss[j[1]] - log_loss[j[0]]) / (log_dt[j[1]] - log_dt[j[0]])
        k = j[0] if ldt < log_dt.min() else j[1]
        if ldt < log_dt.min():
            slope = 0.0  # below the smallest dt the error is at its floor: do not extrapolate downwards
        lloss = float(log_loss[k] + slope * (ldt - log_dt[k]))
    loss = math.exp(lloss) if math.isfinite(lloss) else math.inf
    return {"dt": math.exp(ldt), "loss": loss, "extrapolated": bool(extrapolated)}


def fit_order(dts: np.ndarray, errors: np.ndarray) -> float:
    """Least-squares slope of log(error) against log(dt)."""
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])
