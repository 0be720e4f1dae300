"""`nh predict --potential SPEC`: a potential from a name, a file or a formula, as the 100
sensor values a network reads, plus the checks of what a network can be trusted with.

SPEC, tried in this order:

- a name of `nh physics` (`sho`, `morse`, ...): the exact potential at the sensors;
- a file (.csv, .npy, .parquet) holding either the 100 sensor values, or two columns
  (q, V) at any points covering [0, 1], resampled to the sensors by a cubic spline;
- a formula in q (`"8*(q-0.5)**2"`), read by `formula.Formula`: data, never code.

`check_inputs` splits what is wrong into errors (NHError: no prediction can mean anything)
and warnings (a prediction exists but the networks never saw such input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nh_data.errors import NHError
from nh_data.problem import N_SENSORS, SENSORS, V0

from .formula import Formula

FILE_SUFFIXES = (".csv", ".npy", ".parquet")
WALL_TOL = 1e-6  # |V(0) - 2|, |V(1) - 2| above this: "walls not at 2"
V_LIMIT = 10.0  # |V| above this anywhere: outside the training range
E_TOL = 1e-12  # E0 == V_wall within this counts as the wall start


@dataclass
class Potential:
    """A potential given to `nh predict`: its sensors and, when known, the exact V."""

    label: str
    kind: str  # "physics" | "file" | "formula"
    V: np.ndarray  # (100,) at SENSORS
    exact: object | None = None  # a PhysicalPotential (name) or a Formula; None for a file

    def exact_V(self, q) -> np.ndarray | None:
        if self.exact is None:
            return None
        if isinstance(self.exact, Formula):
            return self.exact(q)
        return self.exact.potential(q)


def _two_columns(q: np.ndarray, V: np.ndarray, where: str) -> np.ndarray:
    """V resampled at the sensors from points (q, V) by a not-a-knot cubic spline."""
    from scipy.interpolate import CubicSpline

    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(V))):
        raise NHError(f"{where}: the (q, V) columns hold non-finite values")
    order = np.argsort(q, kind="stable")
    q, V = q[order], V[order]
    if np.any(np.diff(q) <= 0):
        raise NHError(f"{where}: the q column repeats a value")
    if len(q) < 4:
        raise NHError(f"{where}: need at least 4 (q, V) points, got {len(q)}")
    if q[0] > 1e-9 or q[-1] < 1.0 - 1e-9:
        raise NHError(f"{where}: the q column must cover [0, 1], got [{q[0]:g}, {q[-1]:g}]")
    return CubicSpline(q, V, bc_type="not-a-knot")(SENSORS)


def _from_table(a: np.ndarray, where: str) -> np.ndarray:
    """Sensors from a 1-D vector (100 values) or a 2-D table (100 x 1, 1 x 100 or N x 2 (q, V))."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim == 1:
        if a.size != N_SENSORS:
            raise NHError(
                f"{where}: expected {N_SENSORS} sensor values (or two columns q, V), got {a.size} values"
            )
        return a
    if a.ndim == 2 and a.shape[1] == 2:
        return _two_columns(a[:, 0], a[:, 1], where)
    raise NHError(f"{where}: expected {N_SENSORS} sensor values or two columns q, V, got shape {a.shape}")


def _read_csv(path: Path) -> np.ndarray:
    import csv

    rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise NHError(f"{path}: the file is empty")
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    try:
        table = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise NHError(f"{path}: not a table of numbers ({exc})") from None
    if table.ndim != 2:
        raise NHError(f"{path}: rows of different lengths")
    if header is not None and "q" in header and "V" in header:
        table = table[:, [header.index("q"), header.index("V")]]
    return table


def _read_parquet(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path)
    except Exception as exc:  # not a Parquet file
        raise NHError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    names = t.column_names
    if "q" in names and "V" in names:
        return np.column_stack([t["q"].to_numpy(), t["V"].to_numpy()]).astype(np.float64)
    col = t["V"] if "V" in names else (t[names[0]] if len(names) == 1 else None)
    if col is None:
        raise NHError(f"{path}: expected a column V (100 sensor values) or columns q, V; got {names}")
    if str(col.type).startswith(("fixed_size_list", "list")):
        if t.num_rows != 1:
            raise NHError(f"{path}: a list column V must hold exactly one potential, got {t.num_rows} rows")
        return np.asarray(col[0].as_py(), dtype=np.float64)
    return col.to_numpy().astype(np.float64)


def read_potential_file(path: str | Path) -> np.ndarray:
    """The 100 sensor values held by a CSV, .npy or Parquet file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise NHError(f"potential file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise NHError(f"{path}: not a readable .npy array ({exc})") from None
    elif suffix == ".csv":
        a = _read_csv(path)
    elif suffix == ".parquet":
        a = _read_parquet(path)
    else:
        raise NHError(f"potential file {str(path)!r}: use .csv, .npy or .parquet")
    return _from_table(a, str(path))


def _is_file(spec: str) -> bool:
    try:
        return Path(spec).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a file
        return False


def resolve_potential(spec: str) -> Potential:
    """A potential from SPEC: a physics name, a file or a formula in q (see the module docstring)."""
    from nh_data.physics import POTENTIALS

    spec = str(spec).strip()
    if spec in POTENTIALS:
        pot = POTENTIALS[spec]
        return Potential(spec, "physics", pot.sensors(), pot)
    if Path(spec).suffix.lower() in FILE_SUFFIXES or _is_file(spec):
        return Potential(Path(spec).name, "file", read_potential_file(spec))
    f = Formula(spec)
    return Potential(f"V(q) = {f.text}", "formula", f(SENSORS), f)


# ---------------------------------------------------------------- what a network can be trusted with


def sensor_value(V: np.ndarray, q0: float) -> float:
    """V(q0) on the sensor interpolant (what the integrators of `--check` see)."""
    from ..evaluation.oracle import sensor_spline, sensor_V

    return float(sensor_V(float(q0), sensor_spline(V)))


def check_inputs(
    V: np.ndarray, ic: tuple[float, float], strata: list[str] | None = None
) -> tuple[float, float, str, list[str]]:
    """Errors (NHError) and warnings for sensors V (100,) and a start (q0, p0).

    Errors: non-finite or wrong-length V, non-finite (q0, p0), q0 outside [0, 1], E0 >= the
    lower wall V_wall = min(V(0), V(1)) (the particle is not confined; the wall start
    (q0, p0) = (0, 0) or (1, 0) with E0 = V_wall, the paper's, is allowed). Warnings: walls
    not at 2, V > 2 inside, |V| > 10, E0 outside the training strata (`strata`: the names the
    run was calibrated on; default: the strata of u in [0.05, 0.99) and the wall start).
    Returns (E0, u, the orbit's stratum label, warnings).
    """
    from ..evaluation.metrics import OTHER, STRATA, WALL, stratum_labels

    V = np.asarray(V, dtype=np.float64)
    if V.shape != (N_SENSORS,):
        raise NHError(f"the potential must have {N_SENSORS} sensor values, got shape {V.shape}")
    if not np.all(np.isfinite(V)):
        bad = int(np.flatnonzero(~np.isfinite(V))[0])
        raise NHError(f"the potential is not finite at q = {SENSORS[bad]:.4g} (sensor {bad})")
    q0, p0 = (float(x) for x in ic)
    if not (math.isfinite(q0) and math.isfinite(p0)):
        raise NHError(f"initial condition must be finite, got q0={q0}, p0={p0}")
    if not 0.0 <= q0 <= 1.0:
        raise NHError(f"initial q0={q0:g} lies outside the box [0, 1]")
    V_wall = float(min(V[0], V[-1]))
    Vq0 = float(V[0]) if q0 == 0.0 else float(V[-1]) if q0 == 1.0 else sensor_value(V, q0)
    E0 = 0.5 * p0 * p0 + Vq0
    wall_start = p0 == 0.0 and q0 in (0.0, 1.0) and abs(E0 - V_wall) <= E_TOL
    if E0 >= V_wall - E_TOL and not wall_start:
        raise NHError(
            f"E0 = {E0:.6g} >= V_wall = {V_wall:.6g} (the lower of V(0), V(1)): the particle is not "
            "confined to [0, 1]; lower |p0| or start deeper in the well"
        )
    warnings = []
    if abs(V[0] - V0) > WALL_TOL or abs(V[-1] - V0) > WALL_TOL:
        warnings.append(
            f"walls not at {V0:g}: V(0) = {V[0]:.4g}, V(1) = {V[-1]:.4g} (trained on V(0) = V(1) = {V0:g})"
        )
    if np.max(V[1:-1]) > V0 + WALL_TOL:
        k = int(np.argmax(V[1:-1])) + 1
        warnings.append(
            f"V > {V0:g} inside: V({SENSORS[k]:.3g}) = {V[k]:.4g} (trained on V <= {V0:g} inside)"
        )
    if np.max(np.abs(V)) > V_LIMIT:
        warnings.append(f"|V| > {V_LIMIT:g}: max |V| = {np.max(np.abs(V)):.4g} (outside the training range)")
    u = 1.0 if wall_start else (E0 - Vq0) / (V_wall - Vq0)
    label = WALL if wall_start else str(stratum_labels(np.array([u]))[0])
    if label == WALL and not wall_start:  # u >= 0.99 inside the box: no training stratum
        label = OTHER
    known = strata if strata is not None else [s[0] for s in STRATA] + [WALL]
    if label not in known:
        warnings.append(
            f"E0 outside the training strata: u = (E0 - V(q0)) / (V_wall - V(q0)) = {u:.3g}, "
            f"the run knows {', '.join(known)}"
        )
    return E0, u, label, warnings
