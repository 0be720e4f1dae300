"""Test data: a tiny dataset in the exact `nh data build` schema, made of harmonic potentials.

For fast tests, smoke runs of the training stack and the loader benchmark
(bench/loader_throughput.py loads this file by its path): no Numba, no integrator.
Test scaffolding, not part of the library (as stumpy keeps tests/naive.py).
Every orbit is exact in closed form. Per row (one orbit per potential):

    V(q) = omega^2 (q - c)^2 / 2 + V_min,  V_min = V0 - omega^2 max(c, 1 - c)^2 / 2
    q(t) = c + A cos(omega t + phi),        p(t) = -A omega sin(omega t + phi)

so the higher wall is exactly V0 = 2 and the orbit stays inside [0, 1]
(A < min(c, 1 - c)). Columns follow the nh_data schema (`nh_data.schema.SCHEMA`):
the quadratic is stored exactly as a clamped cubic B-spline, `knots = [0,0,0,0,1,1,1,1]`
and `coeffs` its 4 Bernstein coefficients (so `b = 2`), hence
`scipy.interpolate.BSpline(knots, coeffs, 3)` is V as for built data; `l = 0` (no
GRF), `err_est = 0` (exact).
Query times follow SPEC section 5 (v1.33): t = 0, t = 2 and 98 sorted uniform draws.

    from synthetic import write_synthetic_dataset  # with tests/ on sys.path, as pytest puts it
    write_synthetic_dataset("data/tiny", n_train=512, n_val=128, n_test=128, seed=0)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nh_data.errors import NHError
from nh_data.fileio import sha256_file, write_json_atomic
from nh_data.problem import SENSORS, T_END, V0, WINDOW
from nh_data.schema import SCHEMA, SCHEMA_VERSION, VECTOR_COLUMNS, read_manifest

N_TIMES = WINDOW  # query times per orbit
GENERATOR = "tests/synthetic.py"  # the manifests' name of this writer
OLD_GENERATORS = ("nh_models.synthetic",)  # its names in manifests written before it moved here
KNOTS = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # one clamped cubic Bezier piece on [0, 1]


def harmonic_orbits(rng: np.random.Generator, n: int, pid0: int = 0) -> dict[str, np.ndarray]:
    """Columns of `n` random harmonic orbits (closed form), as NumPy arrays.

    Returns V, t, q, p: (n, 100); q0, p0, E0, u, depth, l, err_est: (n,); pid, b: (n,) int64;
    coeffs: (n, 4) (the knots are KNOTS for every row).
    """
    c = rng.uniform(0.4, 0.6, n)  # centre of the well
    omega = rng.uniform(2.0, 6.0, n)  # angular frequency: 0.6 to 1.9 periods in [0, 2]
    V_min = V0 - 0.5 * omega**2 * np.maximum(c, 1.0 - c) ** 2  # >= -4.5
    A = rng.uniform(0.05, 0.95, n) * np.minimum(c, 1.0 - c)  # amplitude, orbit inside (0, 1)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)

    x = SENSORS
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
        "b": np.full(n, 2, dtype=np.int64),
        "coeffs": bernstein_coeffs(c, omega, V_min),
    }


def bernstein_coeffs(c: np.ndarray, omega: np.ndarray, V_min: np.ndarray) -> np.ndarray:
    """Cubic Bernstein coefficients on [0, 1] of V(q) = omega^2 (q - c)^2 / 2 + V_min: (n,) x 3 -> (n, 4).

    With V = m0 + m1 q + m2 q^2 (degree elevated to 3): (m0, m0 + m1/3, m0 + 2 m1/3 + m2/3, m0 + m1 + m2).
    """
    m2 = 0.5 * omega**2
    m1 = -(omega**2) * c
    m0 = 0.5 * omega**2 * c**2 + V_min
    return np.stack([m0, m0 + m1 / 3, m0 + 2 * m1 / 3 + m2 / 3, m0 + m1 + m2], axis=1)


def _table(cols: dict[str, np.ndarray]) -> pa.Table:
    """An Arrow table in SCHEMA's column order from the arrays of `harmonic_orbits`."""
    n = len(cols["pid"])
    arrays: dict[str, pa.Array] = {}
    for name in VECTOR_COLUMNS:
        flat = pa.array(np.ascontiguousarray(cols[name], dtype=np.float64).reshape(-1))
        arrays[name] = pa.FixedSizeListArray.from_arrays(flat, cols[name].shape[1])
    offsets8 = pa.array(np.arange(0, 8 * n + 1, 8, dtype=np.int32))
    offsets4 = pa.array(np.arange(0, 4 * n + 1, 4, dtype=np.int32))
    arrays["knots"] = pa.ListArray.from_arrays(offsets8, pa.array(np.tile(KNOTS, n)))
    arrays["coeffs"] = pa.ListArray.from_arrays(offsets4, pa.array(cols["coeffs"].reshape(-1)))
    for name in ("q0", "p0", "E0", "u", "depth", "l", "err_est", "pid", "b"):
        arrays[name] = pa.array(cols[name])
    return pa.Table.from_arrays([arrays[f.name].cast(f.type) for f in SCHEMA], schema=SCHEMA)


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
    rows_per_shard: rows per Parquet file (None: one file per split); shards are drawn one
    after the other from the split's stream, so the contents depend on it.
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
        rng = np.random.default_rng(ss)
        step = rows_per_shard or n
        for k, start in enumerate(range(0, n, step)):  # one shard in memory at a time
            name = f"{split}-{k:05d}.parquet"
            part = _table(harmonic_orbits(rng, min(step, n - start), pid0 + start))
            _write_parquet(part, out / name, row_group_size)
            shards.append(
                {"file": name, "split": split, "rows": part.num_rows, "sha256": sha256_file(out / name)}
            )
        pid0 += n
    config = {
        "generator": GENERATOR,
        "potential": "harmonic",
        "seed": int(seed),
        "n_train": counts["train"],
        "n_val": counts["val"],
        "n_test": counts["test"],
        "rows_per_shard": rows_per_shard,
    }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "seeds": {"build": int(seed), "scheme": "numpy SeedSequence(seed).spawn(3): train, val, test"},
        "counts": counts,
        "potentials": dict(counts),  # one orbit per potential
        "rejections": {split: {} for split in counts},
        "versions": {"generator": GENERATOR, "pyarrow": pa.__version__, "numpy": np.__version__},
        "shards": shards,
    }
    write_json_atomic(out / "manifest.json", manifest)
    read_manifest(out)  # the data engine's own check of what we wrote
    return manifest
