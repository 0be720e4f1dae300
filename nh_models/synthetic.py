"""A tiny dataset in the exact `nh data build` schema, made of harmonic potentials.

For fast tests and smoke runs of the training stack: no Numba, no integrator.
Every orbit is exact in closed form. Per row (one orbit per potential):

    V(q) = omega^2 (q - c)^2 / 2 + V_min,  V_min = V0 - omega^2 max(c, 1 - c)^2 / 2
    q(t) = c + A cos(omega t + phi),        p(t) = -A omega sin(omega t + phi)

so the higher wall is exactly V0 = 2 and the orbit stays inside [0, 1]
(A < min(c, 1 - c)). Columns follow the nh_data schema: `b = 0` (no GRF
control values), `l = 0`, `err_est = 0` (exact), `knots = [c]` and
`coeffs = [omega, V_min]` (the harmonic parameters instead of spline ones).
Query times follow SPEC section 5 (v1.33): t = 0, t = 2 and 98 sorted uniform draws.

    write_synthetic_dataset("data/tiny", n_train=512, n_val=128, n_test=128, seed=0)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nh_data.errors import NHError

V0 = 2.0  # wall height (SPEC section 1)
T_END = 2.0  # time window [0, T]
N_SENSORS = 100  # V sampled at np.linspace(0, 1, 100)
N_TIMES = 100  # query times per orbit
VECTOR_COLUMNS = ("V", "t", "q", "p")
SCHEMA_VERSION = 1

try:  # the data engine owns the on-disk schema once it exists
    from nh_data.schema import SCHEMA  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - until nh_data/schema.py lands
    _vec = pa.list_(pa.float64(), N_SENSORS)
    SCHEMA = pa.schema(
        [
            ("V", _vec),
            ("t", _vec),
            ("q", _vec),
            ("p", _vec),
            ("q0", pa.float64()),
            ("p0", pa.float64()),
            ("E0", pa.float64()),
            ("u", pa.float64()),
            ("depth", pa.float64()),
            ("l", pa.float64()),
            ("err_est", pa.float64()),
            ("pid", pa.int64()),
            ("b", pa.int64()),
            ("knots", pa.list_(pa.float64())),
            ("coeffs", pa.list_(pa.float64())),
        ]
    )


def harmonic_orbits(rng: np.random.Generator, n: int, pid0: int = 0) -> dict[str, np.ndarray]:
    """Columns of `n` random harmonic orbits (closed form), as NumPy arrays.

    Returns V, t, q, p: (n, 100); q0, p0, E0, u, depth, l, err_est: (n,); pid, b: (n,) int64;
    c, omega, V_min: (n,) (for knots/coeffs).
    """
    c = rng.uniform(0.4, 0.6, n)  # centre of the well
    omega = rng.uniform(2.0, 6.0, n)  # angular frequency: 0.6 to 1.9 periods in [0, 2]
    V_min = V0 - 0.5 * omega**2 * np.maximum(c, 1.0 - c) ** 2  # >= -4.5
    A = rng.uniform(0.05, 0.95, n) * np.minimum(c, 1.0 - c)  # amplitude, orbit inside (0, 1)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)

    x = np.linspace(0.0, 1.0, N_SENSORS)
    V = 0.5 * omega[:, None] ** 2 * (x[None, :] - c[:, None]) ** 2 + V_min[:, None]  # (n, 100)
    t = np.empty((n, N_TIMES))
    t[:, 0] = 0.0
    t[:, -1] = T_END
    t[:, 1:-1] = np.sort(rng.uniform(0.0, T_END, (n, N_TIMES - 2)), axis=1)
    phase = omega[:, None] * t + phi[:, None]  # (n, W)
    q = c[:, None] + A[:, None] * np.cos(phase)  # (n, W)
    p = -A[:, None] * omega[:, None] * np.sin(phase)  # (n, W)

    q0, p0 = q[:, 0].copy(), p[:, 0].copy()
    Vq0 = 0.5 * omega**2 * (q0 - c) ** 2 + V_min
    E0 = 0.5 * p0**2 + Vq0  # = omega^2 A^2 / 2 + V_min
    u = (E0 - Vq0) / (V0 - Vq0)
    return {
        "V": V,
        "t": t,
        "q": q,
        "p": p,
        "q0": q0,
        "p0": p0,
        "E0": E0,
        "u": u,
        "depth": V0 - V_min,
        "l": np.zeros(n),
        "err_est": np.zeros(n),
        "pid": np.arange(pid0, pid0 + n, dtype=np.int64),
        "b": np.zeros(n, dtype=np.int64),
        "c": c,
        "omega": omega,
        "V_min": V_min,
    }


def _table(cols: dict[str, np.ndarray]) -> pa.Table:
    """An Arrow table in SCHEMA's column order from the arrays of `harmonic_orbits`."""
    n = len(cols["pid"])
    arrays: dict[str, pa.Array] = {}
    for name in VECTOR_COLUMNS:
        flat = pa.array(np.ascontiguousarray(cols[name], dtype=np.float64).reshape(-1))
        arrays[name] = pa.FixedSizeListArray.from_arrays(flat, cols[name].shape[1])
    offsets1 = pa.array(np.arange(n + 1, dtype=np.int32))
    offsets2 = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
    arrays["knots"] = pa.ListArray.from_arrays(offsets1, pa.array(cols["c"]))
    coeffs = np.stack([cols["omega"], cols["V_min"]], axis=1).reshape(-1)
    arrays["coeffs"] = pa.ListArray.from_arrays(offsets2, pa.array(coeffs))
    for name in ("q0", "p0", "E0", "u", "depth", "l", "err_est", "pid", "b"):
        arrays[name] = pa.array(cols[name])
    return pa.Table.from_arrays([arrays[f.name].cast(f.type) for f in SCHEMA], schema=SCHEMA)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_parquet(table: pa.Table, path: Path, row_group_size: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    n_train: int = 512,
    n_val: int = 128,
    n_test: int = 128,
    seed: int = 0,
    *,
    rows_per_shard: int | None = None,
    row_group_size: int = 65536,
    overwrite: bool = True,
) -> dict:
    """Write harmonic-orbit shards `<split>-NNNNN.parquet` and `manifest.json` into `out_dir`.

    n_train, n_val, n_test: rows (orbits, one per potential); a split with 0 rows is left out.
    rows_per_shard: rows per Parquet file (None: one file per split).
    Same arguments -> same bytes. Returns the manifest (also written to out_dir/manifest.json).
    """
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    if any(n < 0 for n in counts.values()) or counts["train"] == 0:
        raise NHError(f"synthetic dataset needs n_train >= 1 and n_val, n_test >= 0, got {counts}")
    if rows_per_shard is not None and rows_per_shard < 1:
        raise NHError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not overwrite and (out / "manifest.json").exists():
        raise NHError(f"{out} already holds a dataset (manifest.json); refusing to overwrite")
    for old in out.glob("*-[0-9][0-9][0-9][0-9][0-9].parquet"):
        old.unlink()

    split_seeds = np.random.SeedSequence(seed).spawn(3)
    shards: list[dict] = []
    pid0 = 0
    for (split, n), ss in zip(counts.items(), split_seeds, strict=True):
        if n == 0:
            continue
        cols = harmonic_orbits(np.random.default_rng(ss), n, pid0)
        pid0 += n
        table = _table(cols)
        step = rows_per_shard or n
        for k, start in enumerate(range(0, n, step)):
            name = f"{split}-{k:05d}.parquet"
            part = table.slice(start, min(step, n - start))
            _write_parquet(part, out / name, row_group_size)
            shards.append(
                {"file": name, "split": split, "rows": part.num_rows, "sha256": _sha256(out / name)}
            )
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "config": {
            "generator": "nh_models.synthetic",
            "potential": "harmonic",
            "seed": int(seed),
            "n_train": counts["train"],
            "n_val": counts["val"],
            "n_test": counts["test"],
        },
        "counts": {k: v for k, v in counts.items() if v},
        "shards": shards,
    }
    tmp = out / f".manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest
