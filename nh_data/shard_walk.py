"""The file-level checks both validators share (`validate` for built datasets, `validate_imported`
for `nh data import`): which rows to re-integrate, and each shard of a manifest that exists, has
its checksum, has the expected schema, reads and holds the rows the manifest says."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .fileio import sha256_file
from .schema import SPLITS


def pick_rows(manifest: dict, sample: int, seed: int) -> set[int]:
    """`sample` distinct row numbers (over all shards in manifest order) drawn with `seed`."""
    total = sum(int(s["rows"]) for s in manifest["shards"])
    if not total:
        return set()
    return set(np.random.default_rng(seed).choice(total, size=min(sample, total), replace=False).tolist())


def readable_shards(
    dir: str | os.PathLike,
    manifest: dict,
    picks: set[int],
    problems: list[str],
    schema: pa.Schema,
    read: Callable[[Path], dict],
    schema_note: str = "",
) -> Iterator[tuple[str, dict, int, list[int]]]:
    """Yield (file, columns, rows, picked rows of this shard) for every shard that passes the file
    checks; append a one-line problem for each that does not, and, once exhausted, for each
    split whose row count differs from the manifest's."""
    counts = dict.fromkeys(SPLITS, 0)
    base = 0
    for sh in manifest["shards"]:
        file, rows = sh["file"], int(sh["rows"])
        mine = sorted(i - base for i in picks if base <= i < base + rows)
        base += rows
        if sh["split"] in counts:
            counts[sh["split"]] += rows
        path = Path(dir) / file
        if not path.is_file():
            problems.append(f"{file}: missing")
            continue
        if sha256_file(path) != sh["sha256"]:
            problems.append(f"{file}: checksum mismatch (sha256 differs from the manifest)")
        try:
            if not pq.read_schema(path).equals(schema):
                problems.append(f"{file}: schema differs from the nh schema{schema_note}")
                continue
            d = read(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            problems.append(f"{file}: unreadable Parquet ({first})")
            continue
        if len(d["q0"]) != rows:
            problems.append(f"{file}: {len(d['q0'])} rows, manifest says {rows}")
            continue
        yield file, d, rows, mine
    for split in SPLITS:
        if manifest["counts"].get(split) != counts[split]:
            problems.append(
                f"manifest: counts[{split}] = {manifest['counts'].get(split)} but shards hold {counts[split]} rows"
            )
