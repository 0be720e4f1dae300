"""A SympONet beside the integrators at its own cost, on its own sensor interpolant (issue 21).

`equal_cost_table(model, data)` states the model's force evaluations per orbit
(`model.force_evaluations_per_orbit(W)`), gives each method of `sensor_integrators` the step
count that spends at most as many, and times everything side by side in us/orbit on one core
(torch, float64, the same batch): the model, its prior alone (`learned: false`) and each
integrator; then RK4 again at the step count whose measured time equals the model's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .metrics import orbit_errors
from .sensor_integrators import METHODS, READOUT, evaluations, integrate, steps_for
from .work_precision import _best_time


def _timed(fn, repeats: int) -> tuple[Any, float]:
    """fn's result and its best time over `repeats` calls (work_precision's `_best_time`)."""
    last: dict[str, Any] = {}
    seconds = _best_time(lambda: last.update(out=fn()), repeats)
    return last["out"], seconds


def _errors(q: torch.Tensor, p: torch.Tensor, data) -> np.ndarray:
    return orbit_errors(q.double().numpy(), p.double().numpy(), data.q, data.p)["loss"]


def _row(errs: np.ndarray, evaluations: int, steps: int, seconds: float, model_errs: np.ndarray | None) -> dict:
    """Mean and median loss over the orbits, and the share of orbits on which the model is more
    accurate than this row (with its standard error): the mean of a heavy-tailed error is set by
    a few orbits, the win rate by all of them."""
    B = len(errs)
    row = {
        "evaluations": int(evaluations),
        "steps": int(steps),
        "loss": float(np.mean(errs)) if np.all(np.isfinite(errs)) else math.inf,
        "median": float(np.median(errs)),
        "us_per_orbit": 1e6 * seconds / B,
    }
    if model_errs is not None:
        win = float(np.mean(model_errs < errs))
        row["model_wins"] = win
        row["model_wins_se"] = math.sqrt(win * (1 - win) / B)
    return row


def equal_cost_table(model, data, repeats: int = 3, threads: int = 1) -> dict[str, Any]:
    """Rows {label: {evaluations, steps, loss, us_per_orbit}} for the model, its prior alone and
    each integrator at the model's force evaluations per orbit, plus RK4 at the model's time.

    data: TestData (V, t, ic, q, p as numpy arrays); the model is copied to float64 on the CPU.
    """
    import copy

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = copy.deepcopy(model).double().cpu().eval()
        V, t, ic = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in (data.V, data.t, data.ic))
        B, W = t.shape
        budget = net.force_evaluations_per_orbit(W)
        rows: dict[str, Any] = {}
        with torch.inference_mode():
            models = [("model", net), *net.fixed_parts()]
            mine = None
            for label, m in models:
                (q, p), sec = _timed(lambda m=m: m(V, t, ic), repeats)
                errs = _errors(q, p, data)
                rows[label] = _row(errs, m.force_evaluations_per_orbit(W), m.config.steps, sec, mine)
                mine = errs if mine is None else mine
            for method in METHODS:
                n = steps_for(method, budget)
                (q, p), sec = _timed(lambda n=n, method=method: integrate(V, t, ic, method, n), repeats)
                rows[method] = _row(_errors(q, p, data), evaluations(method, n), n, sec, mine)
            rows["rk4 at equal time"] = _rk4_at_time(V, t, ic, data, rows["model"]["us_per_orbit"], repeats, mine)
    finally:
        torch.set_num_threads(previous)
    return {
        "evaluations_per_orbit": budget,
        "n_orbits": int(B),
        "n_times": int(W),
        "threads": threads,
        "readout": {"model": _model_readout(model), "integrators": READOUT},
        "rows": rows,
    }


def _rk4_at_time(V, t, ic, data, target_us: float, repeats: int, mine: np.ndarray) -> dict[str, Any]:
    """RK4 at the step count whose time per orbit matches `target_us` (linear fit of time in steps)."""
    B = t.shape[0]
    times = {}
    for n in (25, 100):
        _, sec = _timed(lambda n=n: integrate(V, t, ic, "rk4", n), repeats)
        times[n] = 1e6 * sec / B
    per_step = (times[100] - times[25]) / 75
    fixed = times[25] - 25 * per_step
    n = max(1, int(round((target_us - fixed) / per_step))) if per_step > 0 else 100
    (q, p), sec = _timed(lambda: integrate(V, t, ic, "rk4", n), repeats)
    return _row(_errors(q, p, data), evaluations("rk4", n), n, sec, mine)


def _model_readout(model) -> str:
    if getattr(model.config, "readout", "") == "hermite":
        return "cubic Hermite interpolation between the processed grid states"
    if getattr(model.config, "grid", "") in ("fixed", "processed"):
        return "a last partial step from the stored grid state (one step of t - floor(t / h) h)"
    return "one integration of h = t / steps per query time"
