"""The physics files: ``build_physics`` writes DIR/NAME.parquet and DIR/NAME.json (and
NAME.png), ``load_physics`` reads them back, ``format_table`` prints the comparison."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NHError
from ..fileio import atomic_write
from ..integrators import get_method
from ..problem import PHYSICS_DT, T_END
from .analytic_potentials import POTENTIALS, PhysicalPotential, _check_times, check_ic, get_potential
from .comparison import N_OUT, compare, effective_step
from .orbits import REF_DT, reference

DEFAULT_OUT = "parquet_data/physics"


def _columns(pot: PhysicalPotential, res: dict) -> dict[str, np.ndarray]:
    cols = {"t": res["t"], "V": pot.sensors(), "q_ref": res["q_ref"], "p_ref": res["p_ref"]}
    for m, r in res["methods"].items():
        cols[f"q_{m}"] = r["q"]
        cols[f"p_{m}"] = r["p"]
    return cols


def build_physics(
    name: str,
    out_dir: str | os.PathLike = DEFAULT_OUT,
    *,
    dt: float = PHYSICS_DT,
    t_max: float = T_END,
    ic: tuple[float, float] = (0.0, 0.0),
    plot: bool = False,
) -> dict:
    """Write DIR/NAME.parquet and DIR/NAME.json (and DIR/NAME.png with plot=True).

    Parquet: 100 rows, columns t, V (sensor k on row k), q_ref, p_ref, q_<m>, p_<m> for
    m in rk4, leapfrog, yoshida4, yoshida8. Returns the JSON summary as a dict.
    Every input is checked before anything is written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    pot = get_potential(name)
    q0, p0 = float(ic[0]), float(ic[1])
    check_ic(pot, q0, p0)
    _check_times(t_max, dt)
    res = compare(name, t_max, dt, (q0, p0))
    h, n_steps = effective_step(t_max, dt)
    summary = {
        "name": name,
        "formula": pot.formula,
        "params": dict(zip(pot.param_names, pot.params.tolist(), strict=True)),
        "kinks": list(pot.kinks),
        "kink_note": pot.kink_note,
        "ic": [q0, p0],
        "E0": res["E0"],
        "t_max": float(t_max),
        "n_out": N_OUT,
        "dt": float(dt),
        "errors": "max_err_q, max_err_p, energy_drift: on each method's native grid t = k dt against the "
        "reference; max_err_*_out: at the 100 output times, after cubic Hermite resampling (the parquet columns)",
        "timing": "time_per_trajectory_s: median wall time of one nh_data.integrators.integrate call "
        "(input checks included, compilation excluded); force_evals: the cost independent of the machine",
        "reference": {
            "kind": pot.reference_kind,
            "method": {
                "analytic": "closed form",
                "piecewise-exact": "exact parabolas between kink crossings",
                "numeric": f"kahanli8, dt={REF_DT:g}, steps land on kink crossings",
            }[pot.reference_kind],
            "energy_drift": res["ref_energy_drift"],
        },
        "methods": {
            m: {
                "max_err_q": r["max_err_q"],
                "max_err_p": r["max_err_p"],
                "energy_drift": r["energy_drift"],
                "max_err_q_out": r["max_err_q_out"],
                "max_err_p_out": r["max_err_p_out"],
                "time_per_trajectory_s": r["time_per_trajectory_s"],
                "step": h,
                "n_steps": n_steps,
                "force_evals": n_steps * get_method(m).force_evals_per_step,
            }
            for m, r in res["methods"].items()
        },
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.table(_columns(pot, res))
    atomic_write(out / f"{name}.parquet", lambda tmp: pq.write_table(table, tmp))
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / f"{name}.json", lambda tmp: Path(tmp).write_text(text))
    if plot:
        from .plot import plot_physics

        t_dense = np.linspace(0.0, t_max, 20 * N_OUT + 1)  # smooth reference curves for the figure
        dense = (t_dense, *reference(name, t_dense, q0, p0))
        atomic_write(out / f"{name}.png", lambda tmp: plot_physics(pot, res, tmp, dense=dense))
    return summary


def build_all(
    out_dir: str | os.PathLike = DEFAULT_OUT,
    *,
    dt: float = PHYSICS_DT,
    t_max: float = T_END,
    ic: tuple[float, float] = (0.0, 0.0),
    plot: bool = False,
    progress: bool = True,
) -> dict[str, dict]:
    """build_physics for every potential; {name: summary}. The start is checked for all first."""
    from ..progress import iterate

    for name in POTENTIALS:
        check_ic(POTENTIALS[name], float(ic[0]), float(ic[1]))
    _check_times(t_max, dt)
    summaries = {}
    for name in iterate(POTENTIALS, desc="nh physics", unit="potential", enabled=progress):
        summaries[name] = build_physics(name, out_dir, dt=dt, t_max=t_max, ic=ic, plot=plot)
    return summaries


def format_table(summaries: dict[str, dict]) -> str:
    """One line per potential x method: max error in q and p, energy drift, time/trajectory."""
    head = (
        f"{'potential':<10} {'method':<9} {'max|dq|':>10} {'max|dp|':>10} {'max|dH|':>10} {'time/traj':>10}"
    )
    lines = [head, "-" * len(head)]
    for name, s in summaries.items():
        for m, r in s["methods"].items():
            tt = r["time_per_trajectory_s"]
            tt_s = f"{tt * 1e6:8.1f}us" if tt is not None else f"{'-':>10}"
            lines.append(
                f"{name:<10} {m:<9} {r['max_err_q']:10.2e} {r['max_err_p']:10.2e} {r['energy_drift']:10.2e} {tt_s}"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class PhysicsData:
    """A built physics case: times (W,), sensors V (100,), reference and method orbits (W,)."""

    name: str
    t: np.ndarray
    V: np.ndarray
    q_ref: np.ndarray
    p_ref: np.ndarray
    methods: dict[str, tuple[np.ndarray, np.ndarray]]
    meta: dict

    @property
    def ic(self) -> tuple[float, float]:
        return float(self.meta["ic"][0]), float(self.meta["ic"][1])


def load_physics(out_dir: str | os.PathLike, name: str, *, build: bool = True) -> PhysicsData:
    """Read DIR/NAME.parquet + .json; build them with the defaults first if missing and build=True."""
    import pyarrow.parquet as pq

    get_potential(name)
    out = Path(out_dir)
    pq_path, js_path = out / f"{name}.parquet", out / f"{name}.json"
    if not (pq_path.exists() and js_path.exists()):
        if not build:
            raise NHError(f"no physics case {name!r} in {out}; run `nh physics {name} --out {out}`")
        build_physics(name, out)
    try:
        table = pq.read_table(pq_path)
        meta = json.loads(js_path.read_text())
    except Exception as exc:  # noqa: BLE001 - any read failure is a corrupt file for the user
        raise NHError(f"cannot read physics case {name!r} from {out}: {exc}") from None
    cols = {c: table.column(c).to_numpy() for c in table.column_names}
    missing = {"t", "V", "q_ref", "p_ref"} - cols.keys()
    if missing:
        raise NHError(f"{pq_path} lacks columns {sorted(missing)}")
    methods = {
        c[2:]: (cols[c], cols["p_" + c[2:]])
        for c in table.column_names
        if c.startswith("q_") and c != "q_ref"
    }
    return PhysicsData(name, cols["t"], cols["V"], cols["q_ref"], cols["p_ref"], methods, meta)
