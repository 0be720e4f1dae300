"""Fresh data: a stream of newly drawn certified orbits, distributed like a dataset's, never on disk.

Training can draw new orbits every epoch instead of re-reading a fixed train split (the
engine certifies ~23,000 orbits/s). Chunk `index` of the stream of `seed` takes every
random number from ``SeedSequence(seed, spawn_key=(FRESH_SPLIT_CODE, index))``; the
dataset's shards use split codes 0/1/2 (train/val/test, `build.shard_rng`), so a fresh
stream never replays a shard of any dataset, even one built with the same seed. The
calibration stream (`stream="calibration"`, code 4; `nh calibrate --fresh`) never replays a
training orbit of any run, whatever its seed, and the evaluation stream (`stream="evaluation"`,
code 5; `nh eval`'s long reference orbits) replays neither a training nor a calibration orbit.
A chunk
is drawn and certified exactly like a shard (`build.sample_rows`, the dataset's resolved
build configuration: ic strata or wall, times random or uniform, integrator, dt), so it is a
pure function of (config, seed, index, potentials): any process can regenerate it.

    config = read_build_config("parquet_data/1000")       # manifest.json "config"
    chunk = fresh_chunk(config, seed=89, index=epoch, potentials=1000)  # V, t, q, p, q0, p0, ...
    long = fresh_chunk(config, 0, 0, 100, stream="calibration", windows=10)  # orbits to t = 20

`windows` = K > 1 draws long orbits: the same potentials and initial conditions as K = 1,
times for K windows end to end, integrated and certified to t = K T (`build.sample_rows`).

Never imports torch (`nh_models.fresh` wraps this as a torch Dataset).
"""

from __future__ import annotations

import os

import numpy as np

from .build import sample_rows
from .errors import NHError
from .initial import sample_long_times
from .schema import read_manifest

#: spawn_key split code of fresh streams (train/val/test shards use 0/1/2)
FRESH_SPLIT_CODE = 3
#: spawn_key split code of calibration streams (`nh calibrate --fresh`): never a training orbit
CALIBRATION_SPLIT_CODE = 4
#: spawn_key split code of evaluation streams (`nh eval`'s long orbits): neither of the above
EVALUATION_SPLIT_CODE = 5
STREAM_CODES = {"train": FRESH_SPLIT_CODE, "calibration": CALIBRATION_SPLIT_CODE,
                "evaluation": EVALUATION_SPLIT_CODE}  # fmt: skip
#: the most windows a long orbit may span (t <= MAX_WINDOWS T)
MAX_WINDOWS = 1000
#: config keys `fresh_chunk` reads (every resolved build configuration has them)
CONFIG_KEYS = ("V0", "ic", "times", "integrator", "dt")


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise NHError(f"fresh data: {name} must be a {kind} integer, got {value!r}")
    return int(value)


def fresh_rng(seed: int, index: int, stream: str = "train") -> np.random.Generator:
    """The generator of chunk `index` of the fresh `stream` (train, calibration, evaluation) of `seed` (PCG64)."""
    if stream not in STREAM_CODES:
        raise NHError(f"fresh data: stream must be one of {', '.join(STREAM_CODES)}, got {stream!r}")
    ss = np.random.SeedSequence(int(seed), spawn_key=(STREAM_CODES[stream], int(index)))
    return np.random.Generator(np.random.PCG64(ss))


def read_build_config(data_dir: str | os.PathLike) -> dict:
    """The resolved build configuration of a dataset folder (manifest.json "config").

    NHError (one line, naming the folder) when the manifest is missing or corrupt.
    """
    try:
        config = read_manifest(data_dir)["config"]
    except NHError as exc:
        msg = str(exc)
        hint = "" if "nh data build" in msg else "; run `nh data build` first"
        raise NHError(f"no build configuration in {str(data_dir)!r}: {msg}{hint}") from None
    if isinstance(config, dict) and config.get("imported"):
        raise NHError(
            f"{str(data_dir)!r} was imported (`nh data import`): it has no build configuration to draw "
            "fresh orbits like its own; drop --fresh (use its files)"
        )
    missing = [k for k in CONFIG_KEYS if not isinstance(config, dict) or k not in config]
    if missing:
        raise NHError(
            f"no build configuration in {str(data_dir)!r}: manifest.json config lacks "
            f"{', '.join(missing)}; run `nh data build` again"
        )
    return config


def check_stream(config: dict, seed: int, potentials: int) -> tuple[int, int]:
    """(seed, potentials) as ints; NHError for a bad seed, count or configuration."""
    seed = _check_count(seed, "seed", 0)
    potentials = _check_count(potentials, "potentials", 1)
    missing = [k for k in CONFIG_KEYS if not isinstance(config, dict) or k not in config]
    if missing:
        raise NHError(f"fresh data: the build configuration lacks {', '.join(missing)}")
    return seed, potentials


def check_windows(windows) -> int:
    """`windows` as an int in [1, MAX_WINDOWS]; NHError otherwise."""
    ok = isinstance(windows, (int, np.integer)) and not isinstance(windows, bool)
    if not ok or not 1 <= windows <= MAX_WINDOWS:
        raise NHError(f"--windows must be an integer in [1, {MAX_WINDOWS}], got {windows!r}")
    return int(windows)


def fresh_chunk(
    config: dict, seed: int, index: int, potentials: int, stream: str = "train", windows: int = 1
) -> dict[str, np.ndarray]:
    """Chunk `index` of the fresh `stream` of `seed`: the certified orbits of `potentials` new potentials.

    config: a dataset's resolved build configuration (`read_build_config`). Drawn from
    `fresh_rng(seed, index)` and certified like a shard: rejected potentials and orbits
    are dropped, so a chunk holds up to potentials x orbits_per_potential rows (strata: 4,
    wall: 1). Returns every SCHEMA column: V (R, 100), t, q, p (R, W), q0, p0, E0, u,
    depth, l, err_est (R,) float64, pid, b (R,) int64 (pid = index * potentials + the
    potential's place in the chunk), knots, coeffs (lists of R arrays). windows > 1: t, q, p are
    (R, windows (W - 1) + 1), orbits to t = windows T certified like a shard's.
    """
    seed, potentials = check_stream(config, seed, potentials)
    index = _check_count(index, "index", 0)
    windows = check_windows(windows)
    cols, _ = sample_rows(config, fresh_rng(seed, index, stream), potentials, pid0=index * potentials,
                          windows=windows)  # fmt: skip
    return cols


def long_orbits(config: dict, rows: dict, rng: np.random.Generator, windows: int) -> dict[str, np.ndarray]:
    """Given orbits integrated again over `windows` windows end to end (t to windows T), certified
    like a long chunk's (`ground_truth.LONG_ADAPTIVE_TOLS`), at times drawn from `rng` like a long
    chunk's (`initial.sample_long_times`).

    rows: a dataset's columns (or `sample_rows`'): knots, coeffs (lists of R arrays), V (R, 100),
    q0, p0, E0 (R,). Returns t, q, p (R, windows (W - 1) + 1), err_est, code (R,) (index into
    `ground_truth.REASONS`, 0 = certified; a rejected orbit keeps its last integration) and nfev.
    Used to extend a test split's orbits (which end at T) for chained-window coverage.
    """
    from . import ground_truth as gt
    from .spline import pack_params

    windows = check_windows(windows)
    R = len(rows["q0"])
    packed = [pack_params(k, c) for k, c in zip(rows["knots"], rows["coeffs"], strict=True)]
    params = np.zeros((R, max((p.size for p in packed), default=1)))
    for i, p in enumerate(packed):
        params[i, : p.size] = p
    t = sample_long_times(rng, R, config["times"], windows)
    escale = config["V0"] - np.asarray(rows["V"], dtype=np.float64).min(axis=1)
    out = gt.certified_orbits(params, np.arange(R), rows["q0"], rows["p0"], t, rows["E0"], escale,
                              config["integrator"], config["dt"], tols=gt.LONG_ADAPTIVE_TOLS)  # fmt: skip
    return {"t": t, **out}
