"""`nh data import`: the user's orbits -> the project's shards and manifest, marked imported, not certified.

    manifest = import_dataset("my_orbits.npz", "parquet_data/mine", val=0.1, test=0.1, seed=0)

The file is read and checked first (`user_data`); nothing is written unless it passes. What the
schema needs beyond V, t, q, p is filled in from the sensors:

- V: the file's when it has the 100 sensors; otherwise resampled to them by the not-a-knot
  cubic spline through its S uniform sensors of [0, 1] (said in the manifest: `resampled`);
- knots, coeffs (b = 98): the not-a-knot cubic spline through the 100 sensors, the same sensor
  interpolant that `nh eval`'s integrators run on (`nh_models.evaluation.oracle.sensor_spline`),
  and what `nh data validate` re-integrates on;
- q0, p0 = q[:, 0], p[:, 0]; E0 = p0^2 / 2 + V(q0) on that spline; u = (E0 - V(q0)) /
  (V_wall - V(q0)) with V_wall = min(V(0), V(1)) (NaN where V(q0) >= V_wall: stratum "wall");
- depth, l, err_est: NaN (not known; the orbits are not certified); pid: one per distinct V row.

Splits: the potentials (rows with the same V) are shuffled by `default_rng(seed)`; `test` and
`val` are fractions of them (at least one potential each when > 0), the rest is train. The
dataset is written into a temporary folder beside `out` and renamed onto it at the end, so a
failure leaves nothing; an `out` that already holds anything is refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.interpolate import BSpline, make_interp_spline

from .build import package_versions
from .errors import NHError
from .fileio import sha256_file, write_json_atomic
from .problem import N_SENSORS, SENSORS, T_END, V0
from .schema import MANIFEST, ROW_GROUP_SIZE, SCHEMA_VERSION, SPLITS, WRITE_OPTIONS, schema_for, shard_name
from .user_data import check_arrays, read_source

ROWS_PER_SHARD = 10_000
INTERPOLANT = (
    "not-a-knot cubic spline through the 100 sensors (knots, coeffs; the sensor interpolant of nh eval)"
)


# ---------------------------------------------------------------- columns


def sensor_values(V: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(V at the 100 sensors (N, 100), how it was resampled or None): S sensors -> 100."""
    S = V.shape[1]
    if S == N_SENSORS:
        return V, None
    spline = make_interp_spline(np.linspace(0.0, 1.0, S), V.T, k=3)  # not-a-knot, every row at once
    how = f"not-a-knot cubic spline through the file's {S} uniform sensors of [0, 1], evaluated at the 100 sensors"
    return np.ascontiguousarray(spline(SENSORS).T), how


def sensor_splines(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(knots (104,), coefficients (N, 100)) of the not-a-knot cubic spline through each row of V (N, 100)."""
    spline = make_interp_spline(SENSORS, V.T, k=3)
    return np.asarray(spline.t, dtype=np.float64), np.ascontiguousarray(spline.c.T)


def spline_at(knots: np.ndarray, coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """V_i(x_i) of row i's spline (knots, coeffs[i]) (extrapolated outside [0, 1]): (N,)."""
    basis = BSpline.design_matrix(x, knots, 3, extrapolate=True)  # (N, 100), 4 entries a row
    return np.asarray(basis.multiply(coeffs).sum(axis=1)).ravel()


def potential_ids(V: np.ndarray) -> np.ndarray:
    """One id per distinct row of V, numbered by first appearance: (N,) int64."""
    _, first, inverse = np.unique(V, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # unique rows renumbered in order of first appearance
    return order[inverse.ravel()].astype(np.int64)


def columns(a: dict[str, np.ndarray]) -> tuple[dict, str | None]:
    """Every SCHEMA column of the checked arrays `a` (`user_data.check_arrays`), and the resampling note."""
    V, resampled = sensor_values(a["V"])
    knots, coeffs = sensor_splines(V)
    N = len(V)
    Vq0 = spline_at(knots, coeffs, a["q0"])
    kinetic = 0.5 * a["p0"] ** 2
    gap = np.minimum(V[:, 0], V[:, -1]) - Vq0
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(gap > 0, kinetic / gap, np.nan)
    nan = np.full(N, np.nan)
    cols = {
        "V": V, "t": a["t"], "q": a["q"], "p": a["p"], "q0": a["q0"], "p0": a["p0"], "E0": kinetic + Vq0,
        "u": u, "depth": nan, "l": nan, "err_est": nan, "pid": potential_ids(V),
        "b": np.full(N, coeffs.shape[1] - 2, dtype=np.int64), "knots": knots, "coeffs": coeffs,
    }  # fmt: skip
    return cols, resampled


# ---------------------------------------------------------------- splits


def _fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1):
        raise NHError(f"--{name} must be a fraction in [0, 1), got {value!r}")
    return float(value)


def split_rows(pid: np.ndarray, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices of each split (in file order): the potentials shuffled by default_rng(seed)."""
    val, test = _fraction(val, "val"), _fraction(test, "test")
    if val + test >= 1:
        raise NHError(f"--val + --test must leave a train split, got {val:g} + {test:g}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NHError(f"--seed must be a non-negative integer, got {seed!r}")
    P = int(pid.max()) + 1
    n_test = max(1, round(test * P)) if test > 0 else 0
    n_val = max(1, round(val * P)) if val > 0 else 0
    if P - n_test - n_val < 1:
        need = (test > 0) + (val > 0) + 1
        raise NHError(
            f"{P} distinct potential(s) cannot fill the train, val and test splits asked for; need {need}"
        )
    perm = np.random.default_rng(seed).permutation(P)
    split_of = np.empty(P, dtype=np.int64)
    split_of[perm[:n_test]] = 2
    split_of[perm[n_test : n_test + n_val]] = 1
    split_of[perm[n_test + n_val :]] = 0
    code = split_of[pid]
    return {s: np.flatnonzero(code == k) for k, s in enumerate(SPLITS)}


# ---------------------------------------------------------------- writing


def _table(cols: dict, rows: np.ndarray, schema: pa.Schema) -> pa.Table:
    arrays = []
    for field in schema:
        x = cols[field.name]
        if field.name == "knots":  # one knot vector for every row
            offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * len(x))
            arrays.append(pa.ListArray.from_arrays(offsets, pa.array(np.tile(x, len(rows)))))
        elif field.name == "coeffs":
            part = x[rows]
            offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * part.shape[1])
            arrays.append(pa.ListArray.from_arrays(offsets, pa.array(part.reshape(-1))))
        elif pa.types.is_fixed_size_list(field.type):
            flat = pa.array(np.ascontiguousarray(x[rows]).reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
        else:
            arrays.append(pa.array(x[rows], type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _write_shards(tmp: Path, cols: dict, splits: dict[str, np.ndarray], shard_rows: int) -> list[dict]:
    schema = schema_for(cols["t"].shape[1])
    shards = []
    for split in SPLITS:
        rows = splits[split]
        for k, start in enumerate(range(0, len(rows), shard_rows)):
            name = shard_name(split, k)
            part = rows[start : start + shard_rows]
            with pq.ParquetWriter(tmp / name, schema, **WRITE_OPTIONS) as w:
                w.write_table(_table(cols, part, schema), row_group_size=ROW_GROUP_SIZE)
            shards.append(
                {"file": name, "split": split, "rows": len(part), "sha256": sha256_file(tmp / name)}
            )
    return shards


def _manifest(src: Path, fmt: str, a: dict, cols: dict, resampled, splits, shards, val, test, seed) -> dict:
    pid = cols["pid"]
    config = {
        "imported": True, "certified": False, "source": str(src.resolve()), "source_sha256": sha256_file(src),
        "format": fmt, "orbits": len(pid), "n": int(pid.max()) + 1, "sensors_in": int(a["V"].shape[1]),
        "resampled": resampled, "interpolant": INTERPOLANT, "window": int(cols["t"].shape[1]),
        "t_max": float(cols["t"][:, -1].max()), "T": T_END, "V0": V0, "n_sensors": N_SENSORS,
        "val": val, "test": test, "seed": int(seed),
        "computed": {
            "E0": "p0^2/2 + V(q0) on the interpolant", "u": "(E0 - V(q0)) / (min(V(0), V(1)) - V(q0)), NaN: wall",
            "depth, l, err_est": "NaN (not known)", "pid": "one per distinct V row",
        },
    }  # fmt: skip
    return {
        "schema_version": SCHEMA_VERSION,
        "imported": True,
        "certified": False,
        "config": config,
        "seeds": {"split": int(seed), "scheme": "numpy default_rng(seed).permutation of the potentials"},
        "counts": {s: int(len(splits[s])) for s in SPLITS},
        "potentials": {s: int(len(np.unique(pid[splits[s]]))) for s in SPLITS},
        "rejections": {s: {} for s in SPLITS},
        "versions": package_versions(),
        "shards": shards,
    }


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NHError(f"--out {out} already holds data; choose a new or empty folder")


def import_dataset(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    shard_rows: int = ROWS_PER_SHARD,
) -> dict:
    """Import the user's file `src` into the new dataset folder `out`; returns its manifest.

    NHError, with nothing written, for a bad file (`user_data`), bad fractions or seed, too few
    potentials for the splits asked for, or an `out` that already holds anything."""
    src, out = Path(src), Path(out)
    _check_out(out)
    arrays, fmt = read_source(src)
    a = check_arrays(arrays, str(src))
    cols, resampled = columns(a)
    splits = split_rows(cols["pid"], val, test, seed)
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
        raise NHError(f"shard_rows must be a positive integer, got {shard_rows!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.import-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        shards = _write_shards(tmp, cols, splits, shard_rows)
        manifest = _manifest(src, fmt, a, cols, resampled, splits, shards, val, test, seed)
        write_json_atomic(tmp / MANIFEST, manifest)
        _check_out(out)  # nothing appeared there meanwhile
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
