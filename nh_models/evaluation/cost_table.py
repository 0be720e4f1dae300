"""A SympONet beside the integrators at its own cost, on its own sensor interpolant (issue 21).

`equal_cost_table(model, data)` states the model's force evaluations per orbit
(`model.force_evaluations_per_orbit(W)`), gives each method of `sensor_integrators` the step
count that spends at most as many, and times everything side by side in us/orbit on one core
(torch, float64, the same batch): the model, its prior alone (`learned: false`) and each
integrator; then RK4 again at the step count whose measured time equals the model's.

`compiled=True` times both sides as compiled code instead (`nh_models.compiled`: Numba, float64,
the same arithmetic; in torch the per-operation overhead sets the model's time) when the model
and its fixed parts compile (`compiled.why_not`), torch otherwise; `timing` in the result says
which ran.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .metrics import orbit_errors, paired_comparison
from .sensor_integrators import METHODS, READOUT, evaluations, integrate, steps_for
from .work_precision import _best_time


def _timed(fn, repeats: int) -> tuple[Any, float]:
    """fn's result and its best time over `repeats` calls (work_precision's `_best_time`)."""
    last: dict[str, Any] = {}
    seconds = _best_time(lambda: last.update(out=fn()), repeats)
    return last["out"], seconds


def _errors(q, p, data) -> np.ndarray:
    if isinstance(q, torch.Tensor):
        q, p = q.double().numpy(), p.double().numpy()
    return orbit_errors(q, p, data.q, data.p)["loss"]


AT_TIME = ("rk4", "processed")  # the baselines also run at the model's measured time per orbit
REFERENCE_STEPS = 8000  # RK4 on the sensor spline: 4.7e-23 from 16,000 steps on `normal` (mean loss)


def interpolant_reference(data) -> tuple[np.ndarray, np.ndarray]:
    """(q, p) of RK4 with REFERENCE_STEPS steps on the quintic sensor spline at data's query times
    (compiled, float64): the orbits every method on the spline converges to."""
    from ..compiled.integrators import integrate

    return integrate(data.V, data.t, data.ic, "rk4", REFERENCE_STEPS, lanes=16)


def interpolation_floor(data, reference: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """The mean loss of `interpolant_reference` (or `reference`, its result) against data's orbits:
    what the spline of the sensors, not any integration, costs against orbits integrated on the
    potential itself."""
    q, p = interpolant_reference(data) if reference is None else reference
    return float(np.mean(orbit_errors(q, p, data.q, data.p)["loss"]))


def cost_row(errs: np.ndarray, evaluations: int, steps: int, seconds: float, model_errs: np.ndarray | None) -> dict:
    """Mean and median loss over the orbits, and beside the model's losses `paired_comparison`:
    the share of orbits on which the model is more accurate (with its standard error) and the
    ratio of the means (with its bootstrap interval). The mean of a heavy-tailed error is set by
    a few orbits, the win rate by all of them. One row of `equal_cost_table` and of
    bench/compiled_cost.py's table."""
    B = len(errs)
    row = {
        "evaluations": int(evaluations),
        "steps": int(steps),
        "loss": float(np.mean(errs)) if np.all(np.isfinite(errs)) else math.inf,
        "median": float(np.median(errs)),
        "us_per_orbit": 1e6 * seconds / B,
    }
    if model_errs is not None:
        row.update(paired_comparison(model_errs, errs))
    return row


def equal_cost_table(
    model, data, repeats: int = 3, threads: int = 1, compiled: bool = False, lanes: int = 1
) -> dict[str, Any]:
    """Rows {label: {evaluations, steps, loss, us_per_orbit}} for the model, its prior alone and
    each integrator at the model's force evaluations per orbit, plus RK4 and the classical processed
    leapfrog at the model's time (AT_TIME).

    data: TestData (V, t, ic, q, p as numpy arrays); the model is copied to float64 on the CPU.
    compiled: time the compiled kernels of both sides if the model compiles (else torch's code);
    lanes: with compiled, that many orbits stepped side by side on each thread (`compiled.lanes`;
    one at a time for `readout: scaled`, which the lanes do not run).
    """
    import copy

    import numba

    previous = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    try:
        net = copy.deepcopy(model).double().cpu().eval()
        B, W = data.t.shape
        budget = net.force_evaluations_per_orbit(W)
        parts = [("model", net), *net.fixed_parts()]
        backend = _backend(parts, data, threads, compiled, lanes)
        rows: dict[str, Any] = {}
        with torch.inference_mode():
            mine = None
            for label, m in parts:
                (q, p), sec = _timed(backend["models"][label], repeats)
                errs = _errors(q, p, data)
                rows[label] = cost_row(errs, m.force_evaluations_per_orbit(W), m.config.steps, sec, mine)
                mine = errs if mine is None else mine
            integ = backend["integrate"]
            for method in METHODS:
                n = steps_for(method, budget)
                (q, p), sec = _timed(lambda n=n, method=method: integ(method, n), repeats)
                rows[method] = cost_row(_errors(q, p, data), evaluations(method, n), n, sec, mine)
            for method in AT_TIME:
                rows[f"{method} at equal time"] = _at_time(integ, method, data, rows["model"]["us_per_orbit"], repeats, mine)
    finally:
        torch.set_num_threads(previous[0])
        numba.set_num_threads(previous[1])
    return {
        "evaluations_per_orbit": budget,
        "n_orbits": int(B),
        "n_times": int(W),
        "threads": threads,
        "timing": backend["name"],
        "readout": {"model": _model_readout(model), "integrators": READOUT},
        "rows": rows,
        "interpolation_floor": interpolation_floor(data),
    }


def _backend(parts, data, threads: int, compiled: bool, lanes: int = 1) -> dict[str, Any]:
    """What is timed: {name, models: {label: call}, integrate: (method, steps) -> (q, p)}."""
    if not compiled:
        return _torch_backend(parts, data)
    from ..compiled import why_not

    reason = next((r for r in (why_not(m) for _, m in parts) if r is not None), None)
    if reason is not None:
        return _torch_backend(parts, data, f"torch (float64); not compiled: {reason}")
    return _compiled_backend(parts, data, threads, lanes)


def _torch_backend(parts, data, name: str = "torch (float64)") -> dict[str, Any]:
    """The callables to time: each model part and `integrate(method, steps)`, in torch."""
    V, t, ic = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in (data.V, data.t, data.ic))
    return {
        "name": name,
        "models": {label: (lambda m=m: m(V, t, ic)) for label, m in parts},
        "integrate": lambda method, n: integrate(V, t, ic, method, n),
    }


def _compiled_backend(parts, data, threads: int, lanes: int = 1) -> dict[str, Any]:
    """The same callables as compiled kernels (Numba; with `threads` > 1 their parallel variants;
    `lanes` orbits side by side on each thread), compiled before they are timed."""
    from ..compiled import export, forward
    from ..compiled.integrators import integrate as compiled_integrate

    V, t, ic = (np.ascontiguousarray(a, dtype=np.float64) for a in (data.V, data.t, data.ic))
    params = {label: export(m) for label, m in parts}
    parallel = threads > 1
    if any(prm["scaled"] and prm["learned"] for prm in params.values()):
        lanes = 1  # `readout: scaled` runs one orbit at a time, and so then does every row
    for prm in params.values():  # compile outside the timings
        forward(prm, V[:1], t[:1], ic[:1], parallel=parallel, lanes=lanes)
    for method in METHODS:
        compiled_integrate(V[:1], t[:1], ic[:1], method, 2, parallel=parallel, lanes=lanes)
    side = "one orbit at a time" if lanes == 1 else f"{lanes} orbits side by side"
    return {
        "name": f"compiled (Numba, float64; nh_models.compiled; {side})",
        "models": {
            label: (lambda prm=prm: forward(prm, V, t, ic, parallel=parallel, lanes=lanes)) for label, prm in params.items()
        },
        "integrate": lambda method, n: compiled_integrate(V, t, ic, method, n, parallel=parallel, lanes=lanes),
    }


def _at_time(integ, method: str, data, target_us: float, repeats: int, mine: np.ndarray) -> dict[str, Any]:
    """`method` at the step count whose time per orbit matches `target_us` (linear fit of time in steps)."""
    B = data.t.shape[0]
    times = {}
    for n in (25, 100):
        _, sec = _timed(lambda n=n: integ(method, n), repeats)
        times[n] = 1e6 * sec / B
    per_step = (times[100] - times[25]) / 75
    fixed = times[25] - 25 * per_step
    n = max(1, int(round((target_us - fixed) / per_step))) if per_step > 0 else 100
    (q, p), sec = _timed(lambda: integ(method, n), repeats)
    return cost_row(_errors(q, p, data), evaluations(method, n), n, sec, mine)


def _model_readout(model) -> str:
    readout = getattr(model.config, "readout", "")
    if readout == "hermite":
        return "cubic Hermite interpolation between the processed grid states"
    if readout == "scaled":
        return "a last partial step with the correction and the processor scaled to it"
    if readout == "corrected":
        return "a last partial step from the stored grid state, chi with the learned read-out generator (no further lookup)"
    if getattr(model.config, "grid", "") in ("fixed", "processed"):
        return "a last partial step from the stored grid state (one step of t - floor(t / h) h)"
    return "one integration of h = t / steps per query time"
