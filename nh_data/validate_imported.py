"""`nh data validate` of an imported dataset (`nh data import`): how far its orbits are from the sensors'.

An imported orbit was integrated (or measured) on the user's potential, which the dataset knows
only at the sensors, so there is no certificate to check. What is checked, naming the file and
row of every problem: the manifest's shards (present, sha256, schema, row counts), every row
(finite values, times sorted from 0, q[0] = q0 and p[0] = p0, the stored spline through the
sensors). Then a random sample of rows is re-integrated on the sensor interpolant (the stored
knots and coefficients, what `nh eval`'s integrators see) with Kahan-Li 8 at dt = 2e-5, and the
deviation max(|q - q_ref|, |p - p_ref|) of each is reported: a measure of how much of the
orbits the sensors explain, not a pass or fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .integrators import integrate
from .problem import SENSORS
from .schema import schema_for
from .shard_walk import pick_rows, readable_shards
from .spline import V_batch, dV_pp, pack_params

REF_METHOD = "kahanli8"
REF_DT = 2e-5
SPLINE_TOL = 1e-9  # the stored spline at the sensors against V, relative to max(1, |V|)


def _read(path: Path) -> dict[str, np.ndarray]:
    """A shard's columns: (R, width) arrays for fixed-size lists, (R, L) for knots and coeffs."""
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        arr = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type):
            flat = arr.flatten().to_numpy(zero_copy_only=False)
            out[name] = flat.reshape(len(arr), -1) if len(arr) else flat.reshape(0, 0)
        else:
            out[name] = arr.to_numpy(zero_copy_only=False)
    return out


def _check_rows(file: str, d: dict, problems: list[str]) -> None:
    def bad(mask: np.ndarray, what: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            more = f" (and {idx.size - 1} more rows)" if idx.size > 1 else ""
            problems.append(f"{file} row {idx[0]}: {what}{more}")

    finite = np.ones(len(d["q0"]), dtype=bool)
    for name in ("V", "t", "q", "p", "coeffs"):
        finite &= np.isfinite(d[name]).all(axis=1)
    for name in ("q0", "p0", "E0"):
        finite &= np.isfinite(d[name])
    bad(~finite, "non-finite value")
    t = d["t"]
    bad((np.diff(t, axis=1) < 0).any(axis=1) | (t[:, 0] != 0.0), "times not sorted from 0")
    bad((d["q"][:, 0] != d["q0"]) | (d["p"][:, 0] != d["p0"]), "q[0], p[0] differ from q0, p0")
    if d["knots"].shape[1] != d["coeffs"].shape[1] + 4:
        problems.append(f"{file}: knots and coeffs do not make cubic splines")
        return
    Vs = np.array(
        [V_batch(SENSORS, pack_params(k, c)[None])[0] for k, c in zip(d["knots"], d["coeffs"], strict=True)]
    )
    scale = np.maximum(1.0, np.abs(d["V"]).max(axis=1))
    bad(
        finite & (np.abs(Vs - d["V"]).max(axis=1) > SPLINE_TOL * scale),
        "the stored spline misses the sensors V",
    )


def _deviation(d: dict, row: int) -> float:
    """max |q - q_ref|, |p - p_ref| of one row against its re-integration on the sensor interpolant."""
    params = pack_params(d["knots"][row], d["coeffs"][row])
    q, p = integrate(dV_pp, params, d["q0"][row], d["p0"][row], d["t"][row], REF_DT, REF_METHOD)
    return float(max(np.abs(q - d["q"][row]).max(), np.abs(p - d["p"][row]).max()))


def validate_imported(dir: str | os.PathLike, manifest: dict, sample: int = 16, seed: int = 0) -> dict:
    """Check an imported dataset and re-integrate `sample` random rows; returns {"problems", "imported":
    True, "checked_rows", "sampled_rows", "max_deviation", "median_deviation", "worst" ("file row i")}."""
    problems: list[str] = []
    W = int(manifest["config"].get("window", 0))
    picks = pick_rows(manifest, sample, seed)
    devs: list[tuple[float, str]] = []
    checked = 0
    note = f" with {W} times per orbit"
    for file, d, rows, mine in readable_shards(dir, manifest, picks, problems, schema_for(W), _read, note):
        _check_rows(file, d, problems)
        checked += rows
        devs += [(_deviation(d, r), f"{file} row {r}") for r in mine]
    values = np.array([v for v, _ in devs])
    return {
        "problems": problems,
        "imported": True,
        "checked_rows": checked,
        "sampled_rows": len(devs),
        "max_deviation": float(values.max()) if devs else 0.0,
        "median_deviation": float(np.median(values)) if devs else 0.0,
        "worst": max(devs)[1] if devs else None,
    }


def format_report(dir: str | os.PathLike, r: dict) -> str:
    """The line `nh data validate` prints for an imported dataset that passed its checks."""
    line = f"{dir}: imported, not certified: {r['checked_rows']} rows checked"
    if not r["sampled_rows"]:
        return line
    return (
        f"{line}; {r['sampled_rows']} re-integrated on the sensor interpolant ({REF_METHOD}, dt = {REF_DT:g}): "
        f"the stored orbits deviate by max {r['max_deviation']:.2g} ({r['worst']}), median {r['median_deviation']:.2g}"
    )
