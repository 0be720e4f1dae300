"""Classical integrators against the reference on a physical potential.

``compare`` runs rk4, leapfrog, yoshida4 and yoshida8 through
`nh_data.integrators.integrate` on the analytic dV, each on its native grid
t_k = k dt, and resamples every solution at the output times by cubic Hermite
interpolation with the exact slopes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from ..integrators import get_method, integrate
from ..problem import PHYSICS_DT, T_END, WINDOW
from .analytic_potentials import PhysicalPotential, _check_times, check_ic, get_potential
from .orbits import reference

N_OUT = WINDOW  # output times: np.linspace(0, t_max, N_OUT)
COMPARE_METHODS = ("rk4", "leapfrog", "yoshida4", "yoshida8")


def native_grid(t_max: float, dt: float) -> np.ndarray:
    """A fixed-step method's own grid on [0, t_max]: t_k = k dt, the last step shortened
    to land on t_max. `integrate` on this grid takes exactly one step per interval."""
    n = max(1, math.ceil(t_max / dt - 1e-9))
    t = np.arange(n + 1, dtype=np.float64) * dt  # (n + 1,)
    t[-1] = t_max
    return t


def effective_step(t_max: float, dt: float) -> tuple[float, int]:
    """(h, n_steps) of a comparison run: steps of dt on the native grid (the last may be shorter)."""
    return float(dt), native_grid(t_max, dt).shape[0] - 1


def hermite_resample(pot: PhysicalPotential, t_grid, q_grid, p_grid, t) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Hermite interpolation of a grid solution at times t, with the exact slopes
    dq/dt = p and dp/dt = -V'(q) at the grid points (as the reference code resampled)."""
    from scipy.interpolate import CubicHermiteSpline

    q = CubicHermiteSpline(t_grid, q_grid, p_grid)(t)
    p = CubicHermiteSpline(t_grid, p_grid, -pot.force(q_grid))(t)
    return q, p


def _time_per_call(fn: Callable[[], object], repeats: int = 5, min_time: float = 2e-3) -> float:
    """Median wall time of one call of `fn` (already compiled): `repeats` batches of calls."""
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, min(1000, int(min_time / one)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return float(np.median(samples))


def compare(
    name: str,
    t_max: float = T_END,
    dt: float = PHYSICS_DT,
    ic: tuple[float, float] = (0.0, 0.0),
    *,
    methods: tuple[str, ...] = COMPARE_METHODS,
    n_out: int = N_OUT,
    timing: bool = True,
) -> dict:
    """Reference and classical integrators on `name`, each run at fixed step `dt`.

    Every method runs on its native grid t_k = k dt (`native_grid`), where its errors and
    energy drift are measured against the reference with no interpolation in between.
    For the table and the figure each solution is also resampled at n_out uniform times in
    [0, t_max] by cubic Hermite interpolation (`hermite_resample`).

    Returns {"t", "q_ref", "p_ref", "E0", "t_grid", "q_ref_grid", "p_ref_grid", "methods": {m: {"q", "p" (n_out,),
    "q_grid", "p_grid" (n_grid,), "max_err_q", "max_err_p", "energy_drift" (native grid),
    "max_err_q_out", "max_err_p_out" (at the n_out times), "time_per_trajectory_s"}}}.
    """
    pot = get_potential(name)
    q0, p0 = float(ic[0]), float(ic[1])
    E0 = check_ic(pot, q0, p0)
    _check_times(t_max, dt)
    for m in methods:
        get_method(m)
    t = np.linspace(0.0, t_max, n_out)  # (n_out,)
    q_ref, p_ref = reference(name, t, q0, p0)
    t_grid = native_grid(t_max, dt)  # (n_grid,)
    q_ref_g, p_ref_g = reference(name, t_grid, q0, p0)
    out: dict = {"t": t, "q_ref": q_ref, "p_ref": p_ref, "E0": E0, "methods": {}}
    out.update(t_grid=t_grid, q_ref_grid=q_ref_g, p_ref_grid=p_ref_g)
    out["ref_energy_drift"] = float(np.max(np.abs(pot.energy(q_ref, p_ref) - E0)))
    for m in methods:
        q_g, p_g = integrate(pot.dV, pot.params, q0, p0, t_grid, dt, m)  # (n_grid,)
        q, p = hermite_resample(pot, t_grid, q_g, p_g, t)  # (n_out,)
        res = {
            "q": q,
            "p": p,
            "q_grid": q_g,
            "p_grid": p_g,
            "max_err_q": float(np.max(np.abs(q_g - q_ref_g))),
            "max_err_p": float(np.max(np.abs(p_g - p_ref_g))),
            "energy_drift": float(np.max(np.abs(pot.energy(q_g, p_g) - E0))),
            "max_err_q_out": float(np.max(np.abs(q - q_ref))),
            "max_err_p_out": float(np.max(np.abs(p - p_ref))),
            "time_per_trajectory_s": None,
        }
        if timing:
            res["time_per_trajectory_s"] = _time_per_call(
                lambda m=m: integrate(pot.dV, pot.params, q0, p0, t_grid, dt, m)
            )
        out["methods"][m] = res
    return out
