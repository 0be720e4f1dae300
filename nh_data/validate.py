"""Inspect and verify a dataset directory: `info` (counts, distributions) and `validate`.

`validate` checks, and names the file and row of every problem:

1. the manifest (keys, schema version) and every shard it lists: present,
   sha256 as recorded, Parquet schema == `schema.SCHEMA`, row counts;
2. every row: finite values, sorted times from 0 to T, q[0] = q0, p[0] = p0,
   err_est <= the certificate, spline sizes (b + 6 knots, b + 2 coefficients),
   the stored sensors V equal the stored B-spline at the sensors, energy
   conserved along the orbit;
3. a random sample of rows, re-integrated by an independent path: the stored
   (knots, coeffs) evaluated by SciPy's BSpline must match the engine's
   evaluator, and Kahan-Li 8 at a fixed dt = 2e-5 (error ~1e-11 on these
   potentials, a different method and code from the builder's adaptive
   DOP853) must reproduce q and p within the certificate.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import NHError
from .problem import SENSORS, T_END, V0
from .schema import SCHEMA, SPLITS, read_manifest
from .shard_walk import pick_rows, readable_shards
from .spline import V_pp, V_rows, pack_params
from .validate_imported import validate_imported

REF_METHOD = "kahanli8"
REF_DT = 2e-5
#: margin on top of the certificate for the reference's own error
REF_MARGIN = 1e-9
SPLINE_TOL = 1e-12


def _fixed_to_numpy(col: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """(rows, width) float64 view of a fixed_size_list column (mind slice offsets)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = arr.values.to_numpy(zero_copy_only=False)
    start = arr.offset * width
    return flat[start : start + len(arr) * width].reshape(len(arr), width)


def _list_to_numpy(col) -> list[np.ndarray]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offs = arr.offsets.to_numpy()
    vals = arr.values.to_numpy(zero_copy_only=False)
    return [vals[offs[i] : offs[i + 1]] for i in range(len(arr))]


def read_shard(path: str | os.PathLike) -> dict[str, np.ndarray | list]:
    """All columns of one shard as NumPy arrays (vectors (R, 100); lists of arrays for knots/coeffs)."""
    table = pq.read_table(path)
    out: dict = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_fixed_size_list(col.type):
            out[name] = _fixed_to_numpy(col, col.type.list_size)
        elif pa.types.is_list(col.type):
            out[name] = _list_to_numpy(col)
        else:
            out[name] = col.to_numpy()
    return out


def info(dir: str | os.PathLike) -> dict:
    """Counts and distribution summaries of a dataset (reads every shard)."""
    m = read_manifest(dir)
    cols = ("b", "l", "depth", "E0", "u", "err_est")
    acc: dict[str, dict[str, list]] = {s: {c: [] for c in cols} for s in SPLITS}
    for sh in m["shards"]:
        try:
            t = pq.read_table(Path(dir) / sh["file"], columns=list(cols))
        except (OSError, pa.ArrowException) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NHError(f"{sh['file']}: unreadable ({first}); run `nh data validate {dir}`") from None
        for c in cols:
            acc[sh["split"]][c].append(t.column(c).to_numpy())
    summary = {}
    for split in SPLITS:
        d = {}
        for c in cols:
            x = np.concatenate(acc[split][c]) if acc[split][c] else np.zeros(0)
            if x.size == 0 or np.isnan(x).all():  # imported data: depth, l, err_est unknown
                continue
            if c == "b":
                vals, cnt = np.unique(x, return_counts=True)
                d[c] = {int(v): int(k) for v, k in zip(vals, cnt, strict=True)}
            else:
                q = np.quantile(x, [0.0, 0.5, 0.99, 1.0])
                d[c] = {"min": q[0], "median": q[1], "p99": q[2], "max": q[3], "mean": float(x.mean())}
        summary[split] = d
    return {
        "dir": str(dir),
        "config": m["config"],
        "counts": m["counts"],
        "potentials": m.get("potentials"),
        "rejections": m["rejections"],
        "shards": len(m["shards"]),
        "bytes": sum((Path(dir) / s["file"]).stat().st_size for s in m["shards"]),
        "summary": summary,
    }


def _check_rows(file: str, d: dict, cfg: dict, problems: list[str]) -> None:
    """Row-level checks of one shard; appends 'file row i: ...' lines."""
    R = len(d["q0"])
    T = float(cfg.get("T", T_END))

    def bad(mask: np.ndarray, what: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            more = f" (and {idx.size - 1} more rows)" if idx.size > 1 else ""
            problems.append(f"{file} row {idx[0]}: {what}{more}")

    finite = np.ones(R, dtype=bool)
    for name in ("V", "t", "q", "p"):
        finite &= np.all(np.isfinite(d[name]), axis=1)
    for name in ("q0", "p0", "E0", "u", "depth", "l", "err_est"):
        finite &= np.isfinite(d[name])
    bad(~finite, "non-finite value")
    t = d["t"]
    bad(
        (np.any(np.diff(t, axis=1) < 0, axis=1)) | (t[:, 0] != 0.0) | (np.abs(t[:, -1] - T) > 1e-12),
        "times not sorted on [0, T]",
    )
    bad((d["q"][:, 0] != d["q0"]) | (d["p"][:, 0] != d["p0"]), "q[0], p[0] differ from q0, p0")
    bad(~(d["err_est"] <= cfg.get("cert_tol", 1e-8)), "err_est above the certificate")
    nk = np.array([len(k) for k in d["knots"]])
    nc = np.array([len(c) for c in d["coeffs"]])
    bad((nk != d["b"] + 6) | (nc != d["b"] + 2), "spline sizes do not match b")
    ok = finite & (nk == nc + 4)
    params_width = 2 + 6 * max(int(nc.max(initial=4)) - 3, 1)
    P = np.zeros((R, params_width))
    for i in np.flatnonzero(ok):
        row = pack_params(d["knots"][i], d["coeffs"][i])
        P[i, : row.size] = row
    Vs = np.zeros((R, SENSORS.size))
    H = np.zeros_like(d["q"])
    for i in np.flatnonzero(ok):
        Vs[i] = V_rows(SENSORS, np.broadcast_to(P[i], (SENSORS.size, params_width)))
        H[i] = 0.5 * d["p"][i] ** 2 + V_rows(
            d["q"][i], np.broadcast_to(P[i], (d["q"].shape[1], params_width))
        )
    bad(ok & np.any(np.abs(Vs - d["V"]) > 1e-12, axis=1), "sensor values V differ from the stored B-spline")
    escale = cfg.get("V0", V0) - d["V"].min(axis=1)
    drift = np.abs(H - d["E0"][:, None]).max(axis=1)
    bad(ok & ~(drift < cfg.get("energy_drift", 1e-4) * escale), "energy not conserved along the orbit")


def _reintegrate(file: str, row: int, d: dict, problems: list[str], tol: float) -> float:
    """Independent re-integration of one row; returns the max deviation in q and p."""
    import scipy.interpolate as si

    from .integrators import integrate

    knots, coeffs = d["knots"][row], d["coeffs"][row]
    params = pack_params(knots, coeffs)
    x = np.linspace(-0.1, 1.1, 241)
    ref_V = si.BSpline(knots, coeffs, 3)(x)
    ours = np.array([V_pp(float(v), params) for v in x])
    if np.abs(ref_V - ours).max() > SPLINE_TOL * max(1.0, np.abs(ref_V).max()):
        problems.append(f"{file} row {row}: SciPy BSpline(knots, coeffs) differs from the engine's evaluator")
    from .spline import dV_pp

    q, p = integrate(dV_pp, params, d["q0"][row], d["p0"][row], d["t"][row], REF_DT, REF_METHOD)
    dev = max(np.abs(q - d["q"][row]).max(), np.abs(p - d["p"][row]).max())
    if not dev <= tol:
        problems.append(
            f"{file} row {row}: stored orbit differs from an independent re-integration by {dev:.3g} (> {tol:.3g})"
        )
    return float(dev)


def validate(dir: str | os.PathLike, sample: int = 16, seed: int = 0, progress: bool = False) -> dict:
    """Verify a dataset; returns {"problems": [...], "checked_rows", "sampled_rows", "max_deviation"}.

    An empty problem list means the dataset passed. NHError if there is no
    readable manifest.
    """
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 0:
        raise NHError(f"--sample must be a non-negative integer, got {sample}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NHError(f"--seed must be a non-negative integer, got {seed}")
    m = read_manifest(dir)
    if m.get("imported"):  # `nh data import`: no certificate to check
        return validate_imported(dir, m, sample=sample, seed=seed)
    cfg = m["config"]
    problems: list[str] = []
    tol = float(cfg.get("cert_tol", 1e-8)) + REF_MARGIN
    picks = pick_rows(m, sample, seed)
    checked = 0
    max_dev = 0.0
    for file, d, rows, mine in readable_shards(dir, m, picks, problems, SCHEMA, read_shard):
        _check_rows(file, d, cfg, problems)
        checked += rows
        for r in mine:
            max_dev = max(max_dev, _reintegrate(file, r, d, problems, tol))
    return {
        "problems": problems,
        "checked_rows": checked,
        "sampled_rows": len(picks),
        "max_deviation": max_dev,
    }


def format_info(d: dict) -> str:
    """Human-readable text of `info`'s result."""
    cfg = d["config"]
    lines = [f"{d['dir']}: {d['shards']} shards, {d['bytes'] / 1e6:.1f} MB"]
    if cfg.get("imported"):
        lines.append(
            f"imported from {cfg['source']} ({cfg['format']}), not certified: {cfg['orbits']} orbits of "
            f"{cfg['n']} potentials, {cfg['sensors_in']} sensors" + (" (resampled to 100)" if cfg["resampled"] else "")
        )
    else:
        lines.append(
            f"config: n={cfg['n']} seed={cfg['seed']} ic={cfg['ic']} times={cfg['times']} "
            f"integrator={cfg['integrator']}" + (f" dt={cfg['dt']}" if cfg.get("dt") else "")
        )
    for split in SPLITS:
        pots = (d.get("potentials") or {}).get(split, "?")
        lines.append(f"{split}: {d['counts'][split]} rows from {pots} potentials")
        rej = {k: v for k, v in d["rejections"].get(split, {}).items() if v}
        lines.append(f"  rejected: {rej or 'none'}")
        for col, s in d["summary"].get(split, {}).items():
            if col == "b":
                lines.append(f"  b: {s}")
            else:
                lines.append(
                    f"  {col}: min {s['min']:.3g}  median {s['median']:.3g}  mean {s['mean']:.3g}  "
                    f"p99 {s['p99']:.3g}  max {s['max']:.3g}"
                )
    return "\n".join(lines)
