"""The on-disk format: Parquet shard schema, shard naming and the manifest. The one owner of both.

Layout of a dataset directory::

    DIR/train-00000.parquet ... DIR/val-00000.parquet ... DIR/test-00000.parquet ...
    DIR/manifest.json          (written last, once every shard exists)
    DIR/.nh_build/             (build state: config.json + one record per finished shard)

One row per orbit (zstd-compressed Parquet): the columns of `SCHEMA`, each with its meaning in
`COLUMN_MEANINGS`, the one table of them (docs/data.md's is rendered from both by
`columns_markdown`, and tests/test_layout.py checks that it is). ``scipy.interpolate.BSpline(knots,
coeffs, 3)`` is the potential the orbit was integrated on.

Manifest (JSON object): ``schema_version`` (int), ``config`` (the full
resolved build configuration), ``seeds``, ``counts`` (rows and potentials per
split), ``rejections`` (per split, per reason), ``versions`` (packages) and
``shards``: a list of ``{"file", "split", "rows", "sha256"}`` in split/index
order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa

from .errors import NHError
from .problem import N_SENSORS, WINDOW

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
STATE_DIR = ".nh_build"
COMPRESSION = "zstd"
ROW_GROUP_SIZE = 4096
#: ParquetWriter options. Dictionary encoding never pays on float trajectories (measured: off
#: halves the write time and shrinks shards by 12 %); zstd level 1 compresses as well as 3 here.
WRITE_OPTIONS = dict(compression=COMPRESSION, compression_level=1, use_dictionary=False)

_vec = pa.list_(pa.float64(), WINDOW)
_sens = pa.list_(pa.float64(), N_SENSORS)
SCHEMA = pa.schema(
    [
        pa.field("V", _sens, nullable=False),
        pa.field("t", _vec, nullable=False),
        pa.field("q", _vec, nullable=False),
        pa.field("p", _vec, nullable=False),
        pa.field("q0", pa.float64(), nullable=False),
        pa.field("p0", pa.float64(), nullable=False),
        pa.field("E0", pa.float64(), nullable=False),
        pa.field("u", pa.float64(), nullable=False),
        pa.field("depth", pa.float64(), nullable=False),
        pa.field("l", pa.float64(), nullable=False),
        pa.field("err_est", pa.float64(), nullable=False),
        pa.field("pid", pa.int64(), nullable=False),
        pa.field("b", pa.int64(), nullable=False),
        pa.field("knots", pa.list_(pa.float64()), nullable=False),
        pa.field("coeffs", pa.list_(pa.float64()), nullable=False),
    ]
)
#: what the columns of SCHEMA hold, in schema order; columns that share a meaning share a row
COLUMN_MEANINGS = (
    (("V",), "V at the sensors `np.linspace(0, 1, 100)`"),
    (("t",), "sorted times, `t[0] = 0`, `t[-1] = 2`"),
    (("q", "p"), "the orbit at those times, certified within 1e-8"),
    (("q0", "p0"), "initial condition (`= q[0], p[0]`)"),
    (("E0",), "energy `p0^2/2 + V(q0)`"),
    (("u",), "`(E0 - V(q0)) / (V0 - V(q0))`; 0 for wall starts"),
    (("depth",), "v1.33 depth D of the potential"),
    (("l",), "GRF length scale"),
    (("err_est",), "the orbit's error estimate (max over times of the q, p gaps between two runs; >= 1e-10)"),
    (("pid",), "potential id, unique in the dataset (its orbits share it)"),
    (("b",), "number of interior control values (2..7)"),
    (("knots",), "clamped cubic knots, length b + 6"),
    (("coeffs",), "B-spline coefficients (V0, scaled GRF values, V0), length b + 2"),
)
VECTOR_COLUMNS = ("V", "t", "q", "p")
SCALAR_COLUMNS = ("q0", "p0", "E0", "u", "depth", "l", "err_est", "pid", "b")
LIST_COLUMNS = ("knots", "coeffs")


def schema_for(window: int) -> pa.Schema:
    """SCHEMA with `window` time points per orbit (`nh data import` keeps the user's W)."""
    vec = pa.list_(pa.float64(), window)
    return pa.schema([f.with_type(vec) if f.name in ("t", "q", "p") else f for f in SCHEMA])


def _type_text(t: pa.DataType) -> str:
    """An Arrow type as the table writes it: float64, list<float64>, fixed_size_list<float64>[100]."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_type_text(t.value_type)}>[{t.list_size}]"
    if pa.types.is_list(t):
        return f"list<{_type_text(t.value_type)}>"
    return "float64" if t == pa.float64() else str(t)


def columns_markdown() -> str:
    """The markdown table of the columns (docs/data.md): name, type (from SCHEMA), meaning."""
    rows = ["| column | type | meaning |", "|---|---|---|"]
    for names, meaning in COLUMN_MEANINGS:
        kind = _type_text(SCHEMA.field(names[0]).type)
        rows.append(f"| {', '.join(f'`{n}`' for n in names)} | {kind} | {meaning} |")
    return "\n".join(rows)


def shard_name(split: str, index: int) -> str:
    """File name of shard `index` of `split`, e.g. train-00000.parquet."""
    return f"{split}-{index:05d}.parquet"


def rejection_totals(manifest: dict) -> dict[str, int]:
    """Rejections by reason summed over the splits of a manifest (reasons with none left out)."""
    total: dict[str, int] = {}
    for per_split in manifest["rejections"].values():
        for reason, count in per_split.items():
            if count:
                total[reason] = total.get(reason, 0) + int(count)
    return total


def read_manifest(dir: str | os.PathLike) -> dict:
    """The manifest of dataset directory `dir`; NHError if it is missing or corrupt, telling a
    build that has not finished (its state folder is there) from a folder that is no dataset."""
    path = Path(dir) / MANIFEST
    if not Path(dir).is_dir():
        raise NHError(f"{dir}: no such dataset directory")
    if not path.is_file():
        if (Path(dir) / STATE_DIR).is_dir():  # a build started here and has not finished
            raise NHError(f"{path}: missing: the build is not finished; run the same `nh data build` again")
        raise NHError(
            f"{dir} is not a dataset of `nh data build`: no {MANIFEST}, no build state {STATE_DIR}/ "
            "(build one with `nh data build --out DIR`)"
        )
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as exc:
        raise NHError(f"{path}: unreadable manifest ({exc})") from None
    keys = ("schema_version", "config", "seeds", "counts", "rejections", "versions", "shards")
    if not isinstance(m, dict) or any(k not in m for k in keys):
        raise NHError(f"{path}: corrupt manifest (expected keys {', '.join(keys)})")
    if m["schema_version"] != SCHEMA_VERSION:
        raise NHError(f"{path}: schema version {m['schema_version']}, this code reads {SCHEMA_VERSION}")
    shards = m["shards"]
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and {"file", "split", "rows", "sha256"} <= s.keys() for s in shards
    ):
        raise NHError(f"{path}: corrupt manifest (bad shard list)")
    return m
