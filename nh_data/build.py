"""Dataset builds: plan, seeds, shards, worker processes, resume, atomic writes, manifest.

Data flow (docs/architecture.md): a shard's seed -> `random_potentials.sample_potentials`
-> `initial.sample_initial` / `sample_times` -> `ground_truth.certified_orbits`
-> rows -> `schema` (Parquet, zstd) -> DIR/<split>-<index>.parquet.

Determinism: shard k of split s draws every random number from
``SeedSequence(seed, spawn_key=(s, k))``, so its bytes depend only on the
resolved configuration, never on `workers` or on which shards a run builds.
Resume: a finished shard leaves ``DIR/.nh_build/<file>.json`` with its sha256;
a rerun keeps a shard only if the file's checksum matches its record. Nothing
is ever written under a final name before it is complete (temporary name in
the same folder, fsync, verify, ``os.replace``). ``manifest.json`` is written
last, once every shard of the dataset exists.

Workers: one shard is one task, `build_shard`, run by this process (``workers=1``), a
pool of forked processes, or the workers of a Dask cluster (``scheduler=``,
`nh_data.cluster`); whoever runs it, the bytes are the same. A build holds the folder's
lock (`nh_data.lock`) from start to end: a second build into the folder is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import cluster
from . import ground_truth as gt
from .errors import Interrupted, NHError
from .fileio import sha256_file, write_json_atomic
from .initial import IC_MODES, TIME_MODES, orbits_per_potential, sample_initial, sample_long_times
from .lock import BREAK, LOCK, FolderLock, pid_alive
from .pool import run_tasks
from .problem import N_SENSORS, T_END, V0, WINDOW
from .progress import bar as progress_bar
from .random_potentials import potential_rejections, sample_potentials
from .schema import (
    MANIFEST,
    ROW_GROUP_SIZE,
    SCHEMA,
    SCHEMA_VERSION,
    SPLITS,
    STATE_DIR,
    WRITE_OPTIONS,
    shard_name,
)

PRESETS = {"normal": 10_000, "more": 100_000, "much": 1_000_000}
DEFAULT_SEED = 42
DEFAULT_SHARD_SIZE = 1000
VAL_FRACTION = 0.2
WALL_TEST_FRACTION = 0.4  # wall-start test split, relative to the n train + val potentials
#: potentials integrated per call inside a shard (bounds memory, drives the progress bar)
CHUNK = 250
POTENTIAL_REASONS = ("potential_non_finite", "potential_abs_V_gt_10")
ORBIT_REASONS = gt.REASONS[1:]
ALL_REASONS = POTENTIAL_REASONS + ORBIT_REASONS
_SHARD_RE = re.compile(r"^(train|val|test)-\d{5}\.parquet$")
#: a shard being written: .<file>.tmp-<pid>-<thread>@<host> (older builds: .<file>.tmp-<pid>)
_TMP_RE = re.compile(r"^\.(.+)\.tmp-(\d+)(?:-\d+@(.+))?$")
#: a JSON file being written by `fileio.write_json_atomic` (mkstemp names carry no pid)
_JSON_TMP_RE = re.compile(r"^\.(.+\.json)\.[A-Za-z0-9_]+\.tmp$")


@dataclass(frozen=True)
class ShardSpec:
    """One shard of the plan: potentials [start, start + count) of `split`, ids from pid0."""

    split: str
    index: int
    start: int
    count: int
    pid0: int

    @property
    def file(self) -> str:
        return shard_name(self.split, self.index)


# ---------------------------------------------------------------- configuration


def split_sizes(n: int, ic: str = "strata") -> dict[str, int]:
    """Potentials per split (SPEC section 6).

    strata (v1.33): half of n for train + val (80/20), half for test.
    wall (the paper, v1): all n for train + val (80/20: normal = 8,000 / 2,000) and an
    independent test split of its own, 0.4 n potentials (normal: 4,000, the paper's about
    4,000 test samples), drawn from its own seed stream like every split.
    """
    n_tv = n - n // 2 if ic != "wall" else n
    n_val = int(round(VAL_FRACTION * n_tv))
    n_test = n // 2 if ic != "wall" else max(1, int(round(WALL_TEST_FRACTION * n)))
    return {"train": n_tv - n_val, "val": n_val, "test": n_test}


def resolve_config(
    n: int | None = None,
    *,
    preset: str | None = None,
    seed: int = DEFAULT_SEED,
    ic: str = "strata",
    times: str = "random",
    integrator: str | None = None,
    dt: float | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> dict:
    """Validate the build options and return the full resolved configuration (NHError on bad input)."""
    if preset is not None:
        if preset not in PRESETS:
            raise NHError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        if n is not None and n != PRESETS[preset]:
            raise NHError("give either --n or --preset, not both")
        n = PRESETS[preset]
    if n is None:
        raise NHError("give --n N or --preset normal|more|much")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise NHError(f"--n must be a positive integer, got {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NHError(f"--seed must be a non-negative integer, got {seed}")
    if ic not in IC_MODES:
        raise NHError(f"unknown --ic {ic!r}; valid: {', '.join(IC_MODES)}")
    if times not in TIME_MODES:
        raise NHError(f"unknown --times {times!r}; valid: {', '.join(TIME_MODES)}")
    integrator, dt = gt.check_integrator(integrator, dt)
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) or shard_size <= 0:
        raise NHError(f"--shard-size must be a positive integer, got {shard_size}")
    return {
        "n": int(n),
        "seed": int(seed),
        "ic": ic,
        "times": times,
        "integrator": integrator,
        "dt": dt,
        "shard_size": int(shard_size),
        "potentials": split_sizes(int(n), ic),
        "orbits_per_potential": orbits_per_potential(ic),
        "V0": V0,
        "T": T_END,
        "window": WINDOW,
        "n_sensors": N_SENSORS,
        "cert_tol": gt.CERT_TOL,
        "adaptive_tols": list(gt.ADAPTIVE_TOLS) if integrator == gt.ADAPTIVE else None,
        "energy_drift": gt.ENERGY_DRIFT,
        "schema_version": SCHEMA_VERSION,
    }


def plan(config: dict) -> list[ShardSpec]:
    """All shards of the dataset, in split/index order."""
    out = []
    pid0 = 0
    K = config["shard_size"]
    for split in SPLITS:
        n = config["potentials"][split]
        for k, start in enumerate(range(0, n, K)):
            out.append(ShardSpec(split, k, start, min(K, n - start), pid0 + start))
        pid0 += n
    return out


def parse_shards(text: str | None, total: int) -> tuple[int, int]:
    """Parse '--shards I:J' (0 <= I < J <= total) into (I, J); None means all."""
    if text is None:
        return 0, total
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
    if not m:
        raise NHError(f"--shards must look like I:J (e.g. 0:4), got {text!r}")
    i, j = int(m.group(1)), int(m.group(2))
    if not (0 <= i < j <= total):
        raise NHError(
            f"--shards {i}:{j} out of range: this dataset has {total} shards (need 0 <= I < J <= {total})"
        )
    return i, j


def seeds_of(config: dict) -> dict:
    """How every shard is seeded (recorded in the manifest)."""
    s = config["seed"]
    return {
        "build": s,
        "scheme": "numpy SeedSequence(entropy, spawn_key=(split code, shard index)); PCG64",
        "train": {"entropy": s, "split_code": 0},
        "val": {"entropy": s, "split_code": 1},
        "test": {"entropy": s, "split_code": 2, "note": "independent stream from the train/val ones"},
    }


def shard_rng(config: dict, spec: ShardSpec) -> np.random.Generator:
    """The generator of one shard: SeedSequence(seed, spawn_key=(split code, index)), PCG64."""
    code = SPLITS.index(spec.split)
    ss = np.random.SeedSequence(config["seed"], spawn_key=(code, spec.index))
    return np.random.Generator(np.random.PCG64(ss))


# ---------------------------------------------------------------- one shard


def _fixed(flat: np.ndarray, width: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(flat).reshape(-1)), width)


def _ragged(rows: list[np.ndarray]) -> pa.ListArray:
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate(rows) if rows else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float64()))


#: the columns of `sample_rows` that are ragged (lists of arrays, one per row), not arrays
RAGGED_COLUMNS = ("knots", "coeffs")


def sample_rows(
    config: dict, rng: np.random.Generator, count: int, pid0: int = 0, progress=None, windows: int = 1
) -> tuple[dict, dict]:
    """The certified orbits of `count` potentials drawn from `rng`: every SCHEMA column, as NumPy.

    The array half of a shard, without a ShardSpec (fresh streams, `nh_data.stream`, draw
    from their own generators): potentials, initial conditions and times are drawn from
    `rng` in one fixed order, integrated and certified by `config["integrator"]`; rejected
    potentials and orbits are dropped and counted. Returns (cols, info): cols maps each
    SCHEMA column, in schema order, to (R, 100) / (R,) arrays (pid = pid0 + potential
    index), with knots and coeffs as lists of R arrays; info = {"rejections", "nfev",
    "seconds": {phase: wall seconds}}. `progress(k)` is called after each CHUNK potentials.
    windows > 1: long orbits to t = windows T (`sample_long_times`; ladder `LONG_ADAPTIVE_TOLS`),
    t, q, p (R, windows (W - 1) + 1). Pure: a function of (config, generator state, count, pid0, windows).
    """
    clock = time.perf_counter
    sec = {}
    t0 = clock()
    pots = sample_potentials(rng, count, config["V0"])
    pcode = potential_rejections(pots)
    sec["potentials"] = clock() - t0
    t0 = clock()
    orb = sample_initial(rng, pots.params, config["ic"], config["V0"])
    t_all = sample_long_times(rng, orb.q0.shape[0], config["times"], windows)  # (R, W) or longer
    sec["initial"] = clock() - t0
    rej = dict.fromkeys(ALL_REASONS, 0)
    rej["potential_non_finite"] = int((pcode == 1).sum())
    rej["potential_abs_V_gt_10"] = int((pcode == 2).sum())
    tols = None if windows == 1 else gt.LONG_ADAPTIVE_TOLS  # long orbits: their own ladder
    parts, nfev, sec["integration"] = _certify_chunks(config, pots, pcode, orb, t_all, count, rej, progress, tols)
    t0 = clock()
    cols = _row_columns(pots, orb, t_all, parts, pid0)
    sec["rows"] = clock() - t0
    return cols, {"rejections": rej, "nfev": nfev, "seconds": sec}


def _certify_chunks(config, pots, pcode, orb, t_all, count, rej, progress, tols=None) -> tuple[list, int, float]:
    """Integrate and certify the orbits of the kept potentials, CHUNK potentials per call (ladder
    `tols`, None: the default); count the rejected orbits into `rej`. Returns (parts, nfev, integration seconds); parts: one
    (orbit rows, q, p, err_est) of the kept orbits per chunk that had orbits."""
    clock = time.perf_counter
    seconds = 0.0
    escale = config["V0"] - pots.V.min(axis=1)  # (M,)
    keep_orbit = pcode[orb.pot] == 0
    parts = []
    nfev = 0
    k = orbits_per_potential(config["ic"])
    for c0 in range(0, count, CHUNK):
        sel = np.flatnonzero(keep_orbit[c0 * k : (c0 + CHUNK) * k]) + c0 * k
        if sel.size:
            t0 = clock()
            out = gt.certified_orbits(
                pots.params,
                orb.pot[sel],
                orb.q0[sel],
                orb.p0[sel],
                t_all[sel],
                orb.E0[sel],
                escale,
                config["integrator"],
                config["dt"],
                tols=tols,
            )
            seconds += clock() - t0
            nfev += int(out["nfev"].sum())
            for j, reason in enumerate(gt.REASONS[1:], start=1):
                rej[reason] += int((out["code"] == j).sum())
            ok = out["code"] == 0
            parts.append((sel[ok], out["q"][ok], out["p"][ok], out["err_est"][ok]))
        if progress is not None:
            progress(min(CHUNK, count - c0))
    return parts, nfev, seconds


def _row_columns(pots, orb, t_all, parts, pid0: int) -> dict:
    """Every SCHEMA column of the kept orbits `parts` (`_certify_chunks`), in schema order."""
    W = t_all.shape[1]
    rows = np.concatenate([s for s, *_ in parts]) if parts else np.zeros(0, dtype=np.int64)
    q = np.concatenate([x for _, x, _, _ in parts]) if parts else np.zeros((0, W))
    p = np.concatenate([x for _, _, x, _ in parts]) if parts else np.zeros((0, W))
    err = np.concatenate([x for *_, x in parts]) if parts else np.zeros(0)
    pi = orb.pot[rows]
    return {
        "V": pots.V[pi],
        "t": t_all[rows],
        "q": q,
        "p": p,
        "q0": orb.q0[rows],
        "p0": orb.p0[rows],
        "E0": orb.E0[rows],
        "u": orb.u[rows],
        "depth": pots.depth[pi],
        "l": pots.l[pi],
        "err_est": err,
        "pid": pid0 + pi.astype(np.int64),
        "b": pots.b[pi],
        "knots": [pots.knots[i] for i in pi],
        "coeffs": [pots.coeffs[i] for i in pi],
    }


def rows_table(cols: dict) -> pa.Table:
    """The pyarrow Table in SCHEMA of `sample_rows`' columns."""
    arrays = []
    for field in SCHEMA:
        x = cols[field.name]
        if field.name in RAGGED_COLUMNS:
            arrays.append(_ragged(x))
        elif pa.types.is_fixed_size_list(field.type):
            arrays.append(_fixed(x, field.type.list_size))
        else:
            arrays.append(pa.array(x))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def compute_shard(config: dict, spec: ShardSpec, progress=None) -> tuple[pa.Table, dict]:
    """The rows of one shard (a pyarrow Table in SCHEMA), its rejection counts and phase timings.

    Pure: no I/O. = `sample_rows` on the shard's generator `shard_rng`, then `rows_table`.
    info = {"rejections", "nfev", "seconds": {phase: wall seconds}}.
    """
    cols, info = sample_rows(config, shard_rng(config, spec), spec.count, spec.pid0, progress)
    t0 = time.perf_counter()
    table = rows_table(cols)
    info["seconds"]["table"] = info["seconds"].pop("rows") + time.perf_counter() - t0
    return table, info


def _tmp_name(path: Path) -> Path:
    """Unique per writer: Dask workers on several hosts, with several threads, share the folder."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}@{socket.gethostname()}")


def write_shard(out_dir: Path, config: dict, spec: ShardSpec, progress=None) -> dict:
    """Compute one shard, write it atomically, verify it, and record it. Returns the record."""
    table, info = compute_shard(config, spec, progress)
    final = out_dir / spec.file
    tmp = _tmp_name(final)
    try:
        with pq.ParquetWriter(tmp, SCHEMA, **WRITE_OPTIONS) as w:
            w.write_table(table, row_group_size=ROW_GROUP_SIZE)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        sha = sha256_file(tmp)
        meta = pq.read_metadata(tmp)
        if meta.num_rows != table.num_rows or not pq.read_schema(tmp).equals(SCHEMA):
            raise RuntimeError(f"{tmp}: verification after write failed")
        os.replace(tmp, final)
    except BaseException:  # a full disk, Ctrl-C: no partial shard is left behind
        tmp.unlink(missing_ok=True)
        raise
    record = {
        "file": spec.file,
        "split": spec.split,
        "rows": table.num_rows,
        "sha256": sha,
        "potentials": spec.count,
        "rejections": info["rejections"],
        "nfev": info["nfev"],
    }
    write_json_atomic(out_dir / STATE_DIR / (spec.file + ".json"), record)
    return record


def build_shard(out_dir: str, config: dict, spec: ShardSpec) -> dict:
    """The shard task: what a pool process or a Dask worker runs (`write_shard`). Returns the record."""
    return write_shard(Path(out_dir), config, spec)


# ---------------------------------------------------------------- directory state


def _check_writable(out_dir: Path) -> None:
    p = out_dir
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise NHError(f"cannot write to {out_dir}: {p} is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise NHError(f"cannot write to {out_dir}: {p} is not writable")
    if out_dir.exists() and not out_dir.is_dir():
        raise NHError(f"cannot write to {out_dir}: it is not a directory")


def _diff_keys(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _existing_config(out_dir: Path) -> dict | None:
    for path in (out_dir / STATE_DIR / "config.json", out_dir / MANIFEST):
        if path.is_file():
            try:
                with open(path) as f:
                    obj = json.load(f)
            except (OSError, ValueError):
                continue
            return obj.get("config", obj) if path.name == MANIFEST else obj
    return None


def _ours(name: str) -> bool:
    ours = (MANIFEST, STATE_DIR, LOCK, BREAK)
    return name in ours or bool(_SHARD_RE.match(name) or _TMP_RE.match(name) or _JSON_TMP_RE.match(name))


def _remove_ours(out_dir: Path) -> None:
    for entry in out_dir.iterdir():
        if _ours(entry.name) and entry.name not in (LOCK, BREAK):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _clean_tmp(out_dir: Path, files: set[str] | None = None) -> None:
    """Remove temporary files left by killed writers.

    files=None (before a build, under the folder lock): every JSON temporary, and the shard
    temporaries of processes gone from this host (those of other hosts cannot be checked
    here). files=set (after the build's tasks all finished): every temporary of those
    shards and their records, whoever wrote it: a Dask worker killed mid-write on any host.
    """
    here = socket.gethostname()
    for d in (out_dir, out_dir / STATE_DIR):
        if not d.is_dir():
            continue
        for entry in d.iterdir():
            m, j = _TMP_RE.match(entry.name), _JSON_TMP_RE.match(entry.name)
            if files is not None:
                gone = bool(m and m.group(1) in files) or bool(
                    j and j.group(1).removesuffix(".json") in files
                )
            elif m:
                gone = (m.group(3) or here) == here and not pid_alive(int(m.group(2)))
            else:
                gone = bool(j)
            if gone:
                entry.unlink(missing_ok=True)


def _prepare_dir(out_dir: Path, config: dict, overwrite: bool) -> None:
    """Refuse to mix configurations; create the directory and its build state."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        old = _existing_config(out_dir)
        if old is None:
            foreign = [e.name for e in out_dir.iterdir() if not _ours(e.name)]
            if foreign and not overwrite:
                raise NHError(
                    f"{out_dir} is not empty and holds no nh dataset; choose another --out or pass --overwrite"
                )
            _remove_ours(out_dir)
        elif old != config:
            if not overwrite:
                diff = ", ".join(_diff_keys(old, config))
                raise NHError(
                    f"{out_dir} holds a dataset built with another configuration (differs in: {diff}); "
                    "pass --overwrite to replace it"
                )
            _remove_ours(out_dir)
    (out_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    if not (out_dir / STATE_DIR / "config.json").is_file():
        write_json_atomic(out_dir / STATE_DIR / "config.json", config)


def _valid_record(out_dir: Path, spec: ShardSpec) -> dict | None:
    """The shard's record if its file exists and matches the recorded checksum."""
    rec_path = out_dir / STATE_DIR / (spec.file + ".json")
    path = out_dir / spec.file
    if not (rec_path.is_file() and path.is_file()):
        return None
    try:
        with open(rec_path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if rec.get("file") != spec.file or rec.get("sha256") != sha256_file(path):
        return None
    return rec


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("neural-hamilton", "numpy", "numba", "scipy", "pyarrow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def make_manifest(config: dict, records: list[dict]) -> dict:
    """The manifest from the configuration and every shard's record (split/index order)."""
    counts = dict.fromkeys(SPLITS, 0)
    rejections = {s: dict.fromkeys(ALL_REASONS, 0) for s in SPLITS}
    for r in records:
        counts[r["split"]] += r["rows"]
        for k, v in r["rejections"].items():
            rejections[r["split"]][k] += v
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "seeds": seeds_of(config),
        "counts": counts,
        "potentials": dict(config["potentials"]),
        "rejections": rejections,
        "versions": package_versions(),
        "shards": [{k: r[k] for k in ("file", "split", "rows", "sha256")} for r in records],
    }


# ---------------------------------------------------------------- public API


def _warm_up(config: dict) -> None:
    """Compile (or load from cache) the kernels once before any worker starts."""
    spec = ShardSpec("train", 0, 0, 1, 0)
    cfg = dict(config, seed=0)
    compute_shard(cfg, spec)


def build_dataset(
    out_dir: str | os.PathLike,
    n: int | None = None,
    *,
    preset: str | None = None,
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    ic: str = "strata",
    times: str = "random",
    integrator: str | None = None,
    dt: float | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    shards: str | tuple[int, int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike | None = None,
) -> dict:
    """Build (or resume) the dataset in `out_dir`; return its manifest.

    With `shards` = "I:J" only those shards of the full plan are built; the
    manifest is written (and returned) once every shard exists, otherwise the
    return value is ``{"complete": False, "shards_built": [...], "shards_missing": k}``.
    `scheduler` (a Dask scheduler address, or "local[:N]") or `scheduler_file` runs the
    shards on a Dask cluster instead of `workers` processes (`nh_data.cluster`), with
    the same bytes. Bad input raises NHError before anything is written; so does a
    folder another build holds (`nh_data.lock`).
    """
    config = resolve_config(
        n, preset=preset, seed=seed, ic=ic, times=times, integrator=integrator, dt=dt, shard_size=shard_size
    )
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers <= 0:
        raise NHError(f"--workers must be a positive integer, got {workers}")
    target = cluster.parse_scheduler(scheduler, scheduler_file)
    if target is not None and workers != 1:
        raise NHError(
            "--workers sizes the process pool; with a Dask scheduler its workers build (local:N: N processes)"
        )
    specs = plan(config)
    if isinstance(shards, tuple):
        shards = f"{shards[0]}:{shards[1]}"
    i, j = parse_shards(shards, len(specs))
    out_dir = Path(out_dir)
    _check_writable(out_dir)
    if target is not None:
        cluster.preload()  # the import of Dask overlaps the kernels' warm-up
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as stack:
            stack.enter_context(FolderLock(out_dir))
            # however the build ends, once its writers are gone (the cluster closes first) and
            # before the lock is released: no temporary file of its shards is left
            stack.callback(_clean_tmp, out_dir, {s.file for s in specs[i:j]})
            client = None
            if target is not None:
                if "local" in target:  # compiled before the local workers fork
                    _warm_up(config)
                client = stack.enter_context(cluster.connect(target))
            return _build_locked(
                out_dir, config, specs[i:j], specs, int(workers), client, overwrite, progress
            )
    except BaseException as exc:
        if created:  # nothing of this build left: leave no empty folder either
            try:
                out_dir.rmdir()
            except OSError:
                pass
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            # counted once the workers are gone and the lock released: what a rerun finds
            kept = sum((out_dir / STATE_DIR / (s.file + ".json")).is_file() for s in specs)
            raise Interrupted(
                f"interrupted: {kept} of {len(specs)} shards are built and kept in {out_dir}; "
                "run the same command again to build the rest"
            ) from None
        raise


def _build_locked(out_dir, config, chosen, specs, workers, client, overwrite, progress) -> dict:
    """`build_dataset` once the folder's lock is held (and the cluster reached)."""
    _prepare_dir(out_dir, config, overwrite)
    _clean_tmp(out_dir)

    todo = [s for s in chosen if _valid_record(out_dir, s) is None]
    verified: dict[str, dict] = {}  # records whose sha256 the Dask client checked already
    if todo:
        _run(out_dir, config, todo, workers, progress, client, verified)

    records = [verified.get(s.file) or _valid_record(out_dir, s) for s in specs]
    if any(r is None for r in records):
        return {
            "complete": False,
            "shards_built": [s.file for s in chosen],
            "shards_missing": sum(r is None for r in records),
        }
    manifest = make_manifest(config, records)
    path = out_dir / MANIFEST
    current = None
    if path.is_file():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = None
    if current != manifest:
        write_json_atomic(path, manifest)
    return manifest


def _run(
    out_dir: Path,
    config: dict,
    todo: list[ShardSpec],
    workers: int,
    progress: bool,
    client=None,
    verified: dict | None = None,
) -> None:
    total = sum(s.count for s in todo)
    bar = progress_bar(total, desc="nh data build", unit="pot", enabled=progress, smoothing=0.1)
    try:
        if client is not None:  # its workers load or compile the kernels themselves
            _run_dask(out_dir, config, todo, client, bar, {} if verified is None else verified)
        else:
            _warm_up(config)
            _run_shards(out_dir, config, todo, workers, bar)
    except OSError as exc:  # disk full, permissions discovered late...: one line, exit 2
        raise NHError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    finally:
        bar.close()


def _run_shards(out_dir: Path, config: dict, todo: list[ShardSpec], workers: int, bar) -> None:
    """Build the shards `todo`: in this process, or spread over `workers` processes
    (`nh_data.pool`: forked, they inherit the compiled kernels; the kernels use no threads,
    and a bar has no monitor thread, `nh_data.progress`). Ctrl-C or a failing shard stops them at once."""
    if workers == 1 or len(todo) == 1:
        for spec in todo:
            write_shard(out_dir, config, spec, progress=bar.update)
        return
    tasks = [(str(out_dir), config, s) for s in todo]
    run_tasks(build_shard, tasks, workers, lambda i, _record: bar.update(todo[i].count))


def _run_dask(out_dir: Path, config: dict, todo: list[ShardSpec], client, bar, verified: dict) -> None:
    """Build the shards `todo` as tasks of a Dask cluster; each one's sha256 is checked here as it comes."""

    def done(spec: ShardSpec, record: dict) -> None:
        verified[spec.file] = record
        bar.update(spec.count)

    cluster.run_shards(client, build_shard, out_dir, config, todo, done)
