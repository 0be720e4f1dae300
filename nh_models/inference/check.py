"""`nh predict --check`: the same orbit from the engine's certified integrator (and from the exact
potential when a name or a formula gave one), and the network's error beside its band.

- "sensors": adaptive DOP853 (`nh_data.adaptive`, rtol = atol = 1e-12, steps ending on the
  sensor knots) on the not-a-knot cubic through the same 100 sensor values the network read;
- "exact": the `nh physics` reference of a named potential, or DOP853 (SciPy, rtol = atol =
  1e-12) on a formula's exact V and its exact derivative (complex step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nh_data.errors import NHError
from nh_data.problem import SENSORS, T_END

from .formula import Formula
from .potential_input import Potential


def sensor_orbit(V: np.ndarray, ic, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Certified-integrator orbit on the sensor interpolant at the sorted times t."""
    from nh_data.adaptive import integrate_adaptive

    from ..evaluation.oracle import sensor_dV, sensor_spline

    q, p, status, _ = integrate_adaptive(
        sensor_dV, sensor_spline(V), float(ic[0]), float(ic[1]), t, rtol=1e-12, atol=1e-12,
        max_steps=10_000_000, kinks=SENSORS[1:-1], dense=True,
    )  # fmt: skip
    if status != 0:
        raise NHError(f"--check: the certified integrator failed on these sensors (status {status})")
    return q, p


def exact_orbit(pot: Potential, ic, t: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The orbit of the exact potential at the sorted times t, or None when no exact V is known."""
    if pot.exact is None:
        return None
    if isinstance(pot.exact, Formula):
        from scipy.integrate import solve_ivp

        f = pot.exact
        sol = solve_ivp(
            lambda _, y: [y[1], -float(f.dV(y[0]))], (0.0, float(t[-1])), [float(ic[0]), float(ic[1])],
            method="DOP853", t_eval=t, rtol=1e-12, atol=1e-12,
        )  # fmt: skip
        if not sol.success:
            raise NHError(f"--check: integrating the formula failed ({sol.message})")
        return sol.y[0], sol.y[1]
    from nh_data.physics import reference

    return reference(pot.label, t, float(ic[0]), float(ic[1]))


def check(pot: Potential, ic, t: np.ndarray, q: np.ndarray, p: np.ndarray, bands=None) -> dict[str, Any]:
    """Max |error| of the network against each reference, overall and in the first window,
    and whether the band held. Returns {reference: {...}} and the reference orbits."""
    order = np.argsort(t, kind="stable")
    ts = t[order]
    refs = {"sensors": sensor_orbit(pot.V, ic, ts)}
    ex = exact_orbit(pot, ic, ts)
    if ex is not None:
        refs["exact"] = ex
    out: dict[str, Any] = {}
    first = ts <= T_END
    for name, (qr, pr) in refs.items():
        dq = np.abs(q[order] - qr)
        dp = np.abs(p[order] - pr)
        row = {
            "max_dq": float(dq.max()),
            "max_dp": float(dp.max()),
            "max_dq_window1": float(dq[first].max()) if first.any() else None,
            "max_dp_window1": float(dp[first].max()) if first.any() else None,
            "q": qr[np.argsort(order)],
            "p": pr[np.argsort(order)],
        }
        if bands is not None:  # each time against its own window's band, where it has one
            hq, hp, banded = bands.half_q_t[order], bands.half_p_t[order], bands.calibrated[order]
            row["inside_window1"] = bool(np.all(dq[first] <= hq[first]) and np.all(dp[first] <= hp[first]))
            row["inside_all"] = bool(np.all(dq[banded] <= hq[banded]) and np.all(dp[banded] <= hp[banded]))
        out[name] = row
    return out


def format_check(result: dict[str, Any], bands=None) -> str:
    lines = []
    for name, r in result.items():
        what = "certified DOP853 on the sensors" if name == "sensors" else "exact potential"
        line = f"check vs {what}: max |dq| = {r['max_dq']:.3g}, max |dp| = {r['max_dp']:.3g}"
        if bands is not None:
            line += (
                f"; band +-{bands.half_q:.3g} (q), +-{bands.half_p:.3g} (p) at {bands.level:g}: "
                f"{'held' if r['inside_window1'] else 'NOT held'} in the first window"
            )
            if bands.windows > 1 and (bands.window > 1).any():
                last = int(bands.window[bands.calibrated].max())
                line += f", {'held' if r['inside_all'] else 'NOT held'} in windows 1-{last} (each its own band)"
        lines.append(line)
    return "\n".join(lines)
