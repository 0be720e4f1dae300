"""The user's orbits for `nh data import`: a `.npz` or Parquet file, read and checked, as float64 arrays.

Arrays, one row per orbit:

    V       (N, S)  the potential at S >= 4 uniform sensors np.linspace(0, 1, S)
    t       (N, W)  (or (W,), shared by every orbit) sorted times, t[0] = 0, t[-1] <= T = 2
    q, p    (N, W)  the orbit at those times, W >= 2
    q0, p0  (N,)    optional: the initial condition; taken from q[:, 0], p[:, 0] when absent

A `.npz` holds them under these names (`np.savez`); a Parquet file as columns, V, t, q and p
lists (of one length) of numbers, q0 and p0 numbers. Every defect is one NHError naming the
file, the array and the first bad row: a missing array, a wrong shape, a NaN or inf, times that
do not start at 0, are not sorted or leave the window, fewer than 2 orbits, an unreadable file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import NHError
from .problem import T_END

REQUIRED = ("V", "t", "q", "p")
OPTIONAL = ("q0", "p0")
FORMATS = {".npz": "npz", ".parquet": "parquet", ".pq": "parquet"}
MIN_SENSORS = 4  # a cubic spline through the sensors needs 4 of them
IC_TOL = 1e-9  # q0, p0 given: |q0 - q[:, 0]| <= IC_TOL (1 + |q0|)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:  # never unpickles: a data file is data
        return {k: np.asarray(z[k]) for k in z.files if k in REQUIRED + OPTIONAL}


def _column(col: pa.ChunkedArray, name: str) -> np.ndarray:
    """A Parquet column as NumPy: (N,) for numbers, (N, L) for lists of one length L."""
    arr = col.combine_chunks()
    if arr.null_count:
        raise NHError(f"column {name} has empty (null) rows")
    if not (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        return arr.to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        raise NHError(
            f"column {name} holds lists of different lengths (row {int(np.argmax(lengths != lengths[0]))})"
        )
    values = pc.list_flatten(arr)
    if values.null_count:
        raise NHError(f"column {name} has empty (null) values")
    return values.to_numpy(zero_copy_only=False).reshape(len(arr), int(lengths[0]) if len(lengths) else 0)


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {k: _column(table.column(k), k) for k in REQUIRED + OPTIONAL if k in table.column_names}


def read_source(src: str | os.PathLike) -> tuple[dict[str, np.ndarray], str]:
    """(the arrays of REQUIRED and OPTIONAL the file holds, its format "npz" or "parquet")."""
    path = Path(src)
    fmt = FORMATS.get(path.suffix.lower())
    if not path.is_file():
        raise NHError(f"{src}: no such file")
    if fmt is None:
        raise NHError(f"{src}: not a .npz or .parquet file")
    try:
        arrays = _read_npz(path) if fmt == "npz" else _read_parquet(path)
    except NHError as exc:
        raise NHError(f"{src}: {exc}") from None
    except Exception as exc:  # not a zip / Parquet file, truncated, object arrays, ...
        raise NHError(f"cannot read {src} as {fmt}: {_first_line(exc)}") from None
    return arrays, fmt


def _first_row(bad: np.ndarray) -> int:
    """Index of the first row with a True anywhere."""
    return int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])


def _numbers(name: str, a: np.ndarray, shape: tuple, src: str) -> np.ndarray:
    """`a` as float64 of `shape` (None: any length), finite; NHError otherwise."""
    if a.dtype.kind not in "iuf":
        raise NHError(f"{src}: {name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(a.shape, shape, strict=True)
    ):
        want = "(" + ", ".join("?" if w is None else str(w) for w in shape) + ")"
        raise NHError(f"{src}: {name} must have shape {want}, got {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.size and not np.isfinite(a).all():
        raise NHError(f"{src}: {name} has a NaN or inf value (row {_first_row(~np.isfinite(a))})")
    return a


def _check_times(t: np.ndarray, src: str) -> None:
    if (t[:, 0] != 0.0).any():
        i = _first_row(t[:, :1] != 0.0)
        raise NHError(f"{src}: t must start at 0 (row {i} starts at {t[i, 0]:g})")
    if (np.diff(t, axis=1) < 0).any():
        raise NHError(f"{src}: t must be sorted in time (row {_first_row(np.diff(t, axis=1) < 0)} is not)")
    if (t[:, -1] > T_END).any():
        i = _first_row(t[:, -1:] > T_END)
        raise NHError(f"{src}: t leaves the models' window [0, {T_END:g}] (row {i} ends at {t[i, -1]:g})")


def _check_ic(name: str, given: np.ndarray, first: np.ndarray, src: str) -> None:
    bad = np.abs(given - first) > IC_TOL * (1.0 + np.abs(given))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        column = "q" if name == "q0" else "p"
        raise NHError(
            f"{src}: {name} differs from {column}[:, 0] at t = 0 (row {i}: {given[i]:g} vs {first[i]:g})"
        )


def check_arrays(arrays: dict[str, np.ndarray], src: str) -> dict[str, np.ndarray]:
    """The checked arrays as float64: V (N, S), t, q, p (N, W), q0, p0 (N,) (= q[:, 0], p[:, 0])."""
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise NHError(f"{src} lacks {', '.join(missing)} (needs V, t, q, p; q0, p0 are optional)")
    V = _numbers("V", arrays["V"], (None, None), src)
    N, S = V.shape
    if N < 2:
        raise NHError(f"{src}: needs at least 2 orbits, got {N}")
    if S < MIN_SENSORS:
        raise NHError(f"{src}: V needs at least {MIN_SENSORS} sensors per orbit, got {S}")
    q = _numbers("q", arrays["q"], (N, None), src)
    W = q.shape[1]
    if W < 2:
        raise NHError(f"{src}: q needs at least 2 times per orbit, got {W}")
    p = _numbers("p", arrays["p"], (N, W), src)
    t = arrays["t"]
    t = _numbers("t", t, (W,), src) if t.ndim == 1 else _numbers("t", t, (N, W), src)
    t = np.ascontiguousarray(np.broadcast_to(t, (N, W)))
    _check_times(t, src)
    out = {"V": V, "t": t, "q": q, "p": p, "q0": q[:, 0].copy(), "p0": p[:, 0].copy()}
    for name in OPTIONAL:
        if name in arrays:
            _check_ic(name, _numbers(name, arrays[name], (N,), src), out[name], src)
    return out
