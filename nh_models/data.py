"""Memory-mapped training data: Parquet shards -> cached uncompressed Arrow IPC -> torch batches.

Parquet is never zero-copy (its pages are decoded), so on first use every shard
`DIR/<split>-NNNNN.parquet` is converted once into an uncompressed Arrow IPC file
`<cache>/<sha256 of the shard>.<f32|f64>.v<CACHE_FORMAT>.arrow` (default cache: `DIR/.nh_cache/`). The name is
the shard's checksum, so a changed shard gets a new cache file and is never served
stale. A small `<shard>.stat.json` beside it remembers the shard's (size, mtime, ctime,
inode) fingerprint so that a warm open does not rehash the Parquet file; any write
to the shard changes its ctime and forces a rehash. The checksum is checked against
`manifest.json` when the manifest lists it.

The cache holds the batch fields in the batch dtype (one file per shard and dtype),
packed side by side in one fixed_size_list<float32 or float64> column `packed` of one
record batch: each row is [V (100) | t (W) | q (W) | p (W) | ic = (q0, p0)], so a
sample of a batch is one contiguous row of the mapping (one page, prefetch-friendly:
separate columns cost a TLB miss per field on random access and ran 1.6x slower), read
with no cast. `column("V")` and friends are strided views of it. All other columns
(E0, u, pid, knots, ...) are kept as in the shard, float64. Opened with
`pa.memory_map`, the arrays point into the page cache: private memory does not grow
with the dataset size, and DataLoader workers and DDP ranks share the pages.

    ds = ShardDataset("data/normal", "train")                 # float32 batches
    sampler = EpochBatchSampler(len(ds), 100, seed=89)         # one rank, shuffled
    for batch in iterate_batches(ds, sampler):                 # dict V, t, q, p, ic
        ...
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from nh_data.errors import NHError
from nh_data.fileio import sha256_file, write_json_atomic
from nh_data.problem import N_SENSORS
from nh_data.schema import MANIFEST, VECTOR_COLUMNS, read_manifest

CACHE_DIRNAME = ".nh_cache"
CACHE_FORMAT = 2  # bump when the cache layout changes: old cache files are then ignored
BATCH_KEYS = ("V", "t", "q", "p", "ic")
CACHE_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


# ----------------------------------------------------------------- shards and checksums


@dataclass(frozen=True)
class ShardInfo:
    """One Parquet shard of a split, as listed by the manifest."""

    path: Path
    split: str
    rows: int | None = None
    sha256: str | None = None


def list_shards(data_dir: str | os.PathLike, split: str) -> list[ShardInfo]:
    """The shards of `split` in `data_dir`, in manifest order.

    Raises NHError for a missing or empty directory, a missing or corrupt manifest.json
    (an unfinished build), a split without shards, or a listed shard that is missing.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise NHError(f"data directory {str(root)!r} does not exist")
    if not (root / MANIFEST).exists() and not any(root.glob("*.parquet")):
        raise NHError(
            f"data directory {str(root)!r} holds no dataset (no manifest.json, no *.parquet shards)"
        )
    manifest = read_manifest(root)
    shards = [
        ShardInfo(root / e["file"], split, int(e["rows"]), str(e["sha256"]))
        for e in manifest["shards"]
        if e["split"] == split
    ]
    if not shards:
        splits = sorted({str(e["split"]) for e in manifest["shards"]})
        raise NHError(f"no {split!r} shards in {str(root)!r}; splits present: {', '.join(splits)}")
    for shard in shards:
        if not shard.path.is_file():
            raise NHError(f"shard {str(shard.path)!r} listed in the manifest is missing")
    return shards


def has_split(data_dir: str | os.PathLike, split: str) -> bool:
    """Whether `data_dir` holds at least one shard of `split`."""
    try:
        list_shards(data_dir, split)
    except NHError:
        return False
    return True


def _fingerprint(path: Path) -> dict[str, int]:
    st = path.stat()
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
        "dev": st.st_dev,
    }


def _stat_path(cache_dir: Path, shard: Path) -> Path:
    tag = hashlib.sha1(str(shard.resolve()).encode()).hexdigest()[:12]
    return cache_dir / f"{shard.name}.{tag}.stat.json"


def shard_checksum(shard: str | os.PathLike, cache_dir: str | os.PathLike) -> str:
    """sha256 of a shard, rehashing only when its stat fingerprint changed since the last call."""
    shard, cache_dir = Path(shard), Path(cache_dir)
    stat_path = _stat_path(cache_dir, shard)
    fp = _fingerprint(shard)
    try:
        known = json.loads(stat_path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if known.get("fingerprint") == fp and isinstance(known.get("sha256"), str):
        return known["sha256"]
    sha = sha256_file(shard)
    if _fingerprint(shard) == fp:  # unchanged while we hashed it
        write_json_atomic(stat_path, {"fingerprint": fp, "sha256": sha})
    old = known.get("sha256")
    if isinstance(old, str) and old != sha:  # the shard changed: drop its stale cache file
        for tag in ("f32", "f64"):
            (cache_dir / f"{old}.{tag}.v{CACHE_FORMAT}.arrow").unlink(missing_ok=True)
    return sha


# ----------------------------------------------------------------- Parquet -> Arrow IPC


def _fixed_list_numpy(col: pa.ChunkedArray, name: str, src: Path) -> np.ndarray:
    """(rows, size) float64 array of a fixed_size_list<float64> column (zero-copy where possible)."""
    size = col.type.list_size
    parts = []
    for chunk in col.chunks:
        if chunk.null_count:
            raise NHError(f"shard {str(src)!r}: column {name!r} has null rows")
        flat = chunk.flatten()  # honours the chunk's offset
        if flat.null_count:
            raise NHError(f"shard {str(src)!r}: column {name!r} has null values")
        parts.append(flat.to_numpy(zero_copy_only=False).reshape(-1, size))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _time_points(schema: pa.Schema, src: Path) -> int:
    """Number of time points W, after checking the columns the loader needs."""
    missing = [c for c in (*VECTOR_COLUMNS, "q0", "p0") if c not in schema.names]
    if missing:
        raise NHError(f"shard {str(src)!r} lacks column(s) {', '.join(missing)}")
    for name in VECTOR_COLUMNS:
        typ = schema.field(name).type
        if not pa.types.is_fixed_size_list(typ) or not pa.types.is_floating(typ.value_type):
            raise NHError(f"shard {str(src)!r}: column {name!r} must be fixed_size_list<float64>, got {typ}")
    if schema.field("V").type.list_size != N_SENSORS:
        raise NHError(f"shard {str(src)!r}: V has {schema.field('V').type.list_size} sensors, expected {N_SENSORS}")
    W = schema.field("t").type.list_size
    for name in ("q", "p"):
        if schema.field(name).type.list_size != W:
            raise NHError(f"shard {str(src)!r}: t, q and p must have the same length")
    return W


def field_slices(W: int) -> dict[str, slice]:
    """Where each batch field sits in a packed cache row: V | t | q | p | ic."""
    widths = {"V": N_SENSORS, "t": W, "q": W, "p": W, "ic": 2}
    ends = np.cumsum(list(widths.values()))
    return {k: slice(int(e - w), int(e)) for (k, w), e in zip(widths.items(), ends, strict=True)}


def _tag(dtype: np.dtype | type) -> str:
    return {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[np.dtype(dtype)]


def convert_shard(src: str | os.PathLike, dst: str | os.PathLike, dtype: type = np.float64) -> int:
    """Convert a Parquet shard into the uncompressed Arrow IPC cache file `dst` (atomically).

    V, t, q, p and ic = (q0, p0) are packed, in that order, into one
    fixed_size_list<`dtype`> column `packed` (see `field_slices`); the other columns are
    copied as they are. Streams row group by row group into a temporary memory-mapped
    array, so private memory stays at about one row group, and writes a single record
    batch (one contiguous array per column). Returns the number of rows.
    """
    src, dst = Path(src), Path(dst)
    try:
        pf = pq.ParquetFile(src)
    except (OSError, pa.ArrowException) as exc:
        raise NHError(f"shard {str(src)!r} is not a readable Parquet file: {exc}") from None
    schema = pf.schema_arrow
    W = _time_points(schema, src)
    where = field_slices(W)
    width = where["ic"].stop
    n = pf.metadata.num_rows
    suffix = f"{os.getpid()}-{os.urandom(4).hex()}"
    raw = dst.with_name(f".{dst.name}.packed.raw-{suffix}")
    tmp = dst.with_name(f".{dst.name}.tmp-{suffix}")
    try:
        mm = np.memmap(raw, dtype=dtype, mode="w+", shape=(max(n, 1), width))[:n]  # (n, width)
        rest: list[pa.Table] = []
        row = 0
        for rg in range(pf.num_row_groups):
            tab = pf.read_row_group(rg)
            m = tab.num_rows
            for name in VECTOR_COLUMNS:
                mm[row : row + m, where[name]] = _fixed_list_numpy(tab.column(name), name, src)  # cast
            mm[row : row + m, where["ic"].start] = tab.column("q0").to_numpy()
            mm[row : row + m, where["ic"].start + 1] = tab.column("p0").to_numpy()
            rest.append(tab.drop_columns(list(VECTOR_COLUMNS)))
            row += m
        if row != n:
            raise NHError(f"shard {str(src)!r}: row groups hold {row} rows, footer says {n}")
        table = (
            pa.concat_tables(rest).combine_chunks()
            if rest
            else schema.empty_table().drop_columns(list(VECTOR_COLUMNS))
        )
        flat = pa.array(np.asarray(mm).reshape(-1))  # zero-copy over the memmap
        col = pa.FixedSizeListArray.from_arrays(flat, width)
        table = table.append_column(pa.field("packed", col.type), pa.chunked_array([col], type=col.type))
        meta = {
            b"nh_cache_format": str(CACHE_FORMAT).encode(),
            b"nh_source": src.name.encode(),
            b"nh_time_points": str(W).encode(),
        }
        table = table.replace_schema_metadata(meta)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=None):
                writer.write_batch(batch)
        del mm, flat, col, table
        os.replace(tmp, dst)
    finally:
        raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return n


def cache_path(cache_dir: str | os.PathLike, sha: str, dtype: type) -> Path:
    """`<cache_dir>/<sha256>.<f32|f64>.v<CACHE_FORMAT>.arrow`."""
    return Path(cache_dir) / f"{sha}.{_tag(dtype)}.v{CACHE_FORMAT}.arrow"


def cached_arrow(shard: ShardInfo, cache_dir: str | os.PathLike, dtype: type = np.float64) -> Path:
    """Path of the shard's Arrow IPC cache file for `dtype`, converting the shard first if needed."""
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NHError(f"cannot create the cache folder {str(cache_dir)!r} ({exc}); pass cache_dir=") from None
    sha = shard_checksum(shard.path, cache_dir)
    if shard.sha256 is not None and sha != shard.sha256:
        raise NHError(
            f"shard {str(shard.path)!r} does not match the sha256 in manifest.json "
            f"(file {sha[:12]}..., manifest {shard.sha256[:12]}...): it changed after the dataset was built"
        )
    dst = cache_path(cache_dir, sha, dtype)
    if dst.exists():
        try:
            _open_ipc(dst)
            return dst
        except (OSError, pa.ArrowException, NHError):  # a damaged cache file: rebuild it
            dst.unlink(missing_ok=True)
    convert_shard(shard.path, dst, dtype)
    return dst


# ----------------------------------------------------------------- the dataset


def _open_ipc(path: Path) -> pa.RecordBatch:
    reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    if reader.num_record_batches != 1:
        raise NHError(
            f"cache file {str(path)!r} holds {reader.num_record_batches} record batches, expected 1"
        )
    return reader.get_batch(0)


class ShardDataset:
    """One split of a shard directory, memory-mapped; batches are float tensors.

    data_dir: the folder of `nh data build` (shards + manifest.json). split: "train",
    "val" or "test". dtype: torch.float32 or torch.float64, the dtype of the batches
    and of the cache (the shards hold float64: float32 batches equal the float32
    rounding of the stored values, float64 batches the stored values).
    cache_dir: where the Arrow IPC cache lives (default `data_dir/.nh_cache`).

    `get_batch(idx)` gathers rows `idx` (in that order) and returns
    dict(V=(B, 100), t=(B, W), q=(B, W), p=(B, W), ic=(B, 2)), fresh contiguous tensors.
    `ds[idx]` is the same, so the dataset plugs into a DataLoader with
    `batch_size=None` and an index-array sampler. Pickling (DataLoader workers with
    the spawn method) drops the mappings; they reopen lazily in the child.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str,
        dtype: torch.dtype = torch.float32,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if dtype not in CACHE_DTYPES:
            raise NHError(f"ShardDataset dtype must be torch.float32 or torch.float64, got {dtype}")
        self.data_dir = Path(data_dir)
        self.split = split
        self.dtype = dtype
        self.np_dtype = CACHE_DTYPES[dtype]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.data_dir / CACHE_DIRNAME
        self.shards = list_shards(self.data_dir, split)
        self.files = [cached_arrow(s, self.cache_dir, self.np_dtype) for s in self.shards]
        self._open()
        rows = [len(a) for a in self._cols["V"]]
        for shard, n in zip(self.shards, rows, strict=True):
            if shard.rows is not None and shard.rows != n:
                raise NHError(f"shard {str(shard.path)!r} has {n} rows, manifest.json says {shard.rows}")
        self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)  # (K + 1,)
        self._n = int(self._starts[-1])
        if self._n == 0:
            raise NHError(f"the {split!r} split of {str(self.data_dir)!r} has no rows")
        self.W = self._cols["t"][0].shape[1]

    # mapping management -------------------------------------------------------

    def _open(self) -> None:
        self._batches = [_open_ipc(f) for f in self.files]
        self._packed: list[np.ndarray] = []  # per shard (N_k, width), read-only views into the mapping
        for f, rb in zip(self.files, self._batches, strict=True):
            if "packed" not in rb.schema.names:
                raise NHError(f"cache file {str(f)!r} lacks the packed batch column; delete the cache folder")
            col = rb.column("packed")
            values = col.values.to_numpy(zero_copy_only=True)  # read-only view into the mapping
            self._packed.append(values.reshape(-1, col.type.list_size))  # (N_k, width)
        if len({a.shape[1] for a in self._packed}) != 1:
            raise NHError(f"shards of {self.split!r} have different numbers of time points")
        width = self._packed[0].shape[1]
        self._where = field_slices((width - N_SENSORS - 2) // 3)
        self._cols: dict[str, list[np.ndarray]] = {
            k: [a[:, sl] for a in self._packed] for k, sl in self._where.items()  # strided views
        }
        self._scratch = np.empty((0, width), self.np_dtype)  # reused by `_gather` (several shards)

    def _ensure_open(self) -> None:
        if self._cols is None:
            self._open()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_batches=None, _cols=None, _packed=None, _scratch=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # access -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    def _check(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise IndexError(f"index out of range for a split of {self._n} rows")
        self._ensure_open()
        return idx

    def _gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Packed rows `idx` (checked): (rows, inverse) with row i of the request at
        rows[inverse[i]] (inverse None: rows are in request order).

        One shard: a single `np.take` from the mapping. Several: the rows are read shard
        by shard in memory order (one `np.take` per shard present) into a reused scratch
        buffer, so the per-shard overhead is paid once per block, not per batch.
        """
        if len(self._packed) == 1:
            return np.take(self._packed[0], idx, axis=0), None
        order = np.argsort(idx, kind="stable")  # by shard, and by row inside a shard
        sorted_idx = idx[order]
        shard = np.searchsorted(self._starts, sorted_idx, side="right") - 1  # (B,)
        bounds = np.searchsorted(shard, np.arange(len(self._packed) + 1))  # (K + 1,)
        local = sorted_idx - self._starts[shard]
        if len(self._scratch) < idx.size:
            self._scratch = np.empty((idx.size, self._scratch.shape[1]), self.np_dtype)
        for c in np.flatnonzero(bounds[1:] > bounds[:-1]):
            a, b = bounds[c], bounds[c + 1]
            np.take(self._packed[c], local[a:b], axis=0, out=self._scratch[a:b])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(idx.size)
        return self._scratch, inverse

    def _split(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Packed rows (B, width) -> the batch dict of fresh contiguous tensors."""
        return {k: torch.from_numpy(np.ascontiguousarray(rows[:, sl])) for k, sl in self._where.items()}

    def get_batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """dict(V=(B, 100), t=(B, W), q=(B, W), p=(B, W), ic=(B, 2)) for rows `idx` (in that order).

        Fresh contiguous tensors: every sample is one contiguous row of the mapped cache,
        gathered (see `_gather`) and then split into the fields.
        """
        rows, inverse = self._gather(self._check(idx))
        return self._split(rows if inverse is None else np.take(rows, inverse, axis=0))

    def get_batches(self, idx: np.ndarray, sizes: list[int]) -> list[dict[str, torch.Tensor]]:
        """The batches of consecutive lengths `sizes` of rows `idx`: `get_batch` of each slice,
        with the whole block gathered at once (see `_gather`)."""
        rows, inverse = self._gather(self._check(idx))
        bounds = np.cumsum([0, *sizes])
        if inverse is None:
            return [self._split(rows[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return [
            self._split(np.take(rows, inverse[a:b], axis=0)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    __getitem__ = get_batch

    def column(self, name: str) -> np.ndarray:
        """Column `name` as NumPy: a read-only view into the mapping for one shard (strided,
        for V, t, q, p), a concatenated copy for several.

        V, t, q, p come in the dataset's dtype, (N, size); the other columns as stored
        (E0, u, ...: float64; pid, b: int64; knots, coeffs: an object array of arrays).
        """
        self._ensure_open()
        if name in VECTOR_COLUMNS:
            parts = self._cols[name]
        else:
            names = [n for n in self._batches[0].schema.names if n not in (*BATCH_KEYS, "packed")]
            if name not in names:
                raise NHError(
                    f"unknown column {name!r}; valid columns: {', '.join([*VECTOR_COLUMNS, *names])}"
                )
            parts = [rb.column(name).to_numpy(zero_copy_only=False) for rb in self._batches]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def numpy(self, name: str) -> np.ndarray:
        """A vector column V, t, q or p as an (N, size) array (a view into the mapping for one shard)."""
        if name not in VECTOR_COLUMNS:
            raise NHError(f"numpy() takes a vector column ({', '.join(VECTOR_COLUMNS)}), got {name!r}")
        return self.column(name)

    def block_rows(self, batch_size: int) -> int:
        """Rows to gather at once in `iterate_batches`: enough that every shard present
        contributes about a dozen rows (per-shard overhead stays small), at most 16,384
        (the scratch buffer stays about 26 MB in float32)."""
        return int(min(max(4096, 12 * len(self.files), batch_size), max(16384, batch_size)))


# ----------------------------------------------------------------- sampling


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of range(n) that depends only on (seed, epoch)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), 0x6E68])))
    return rng.permutation(n)


class EpochBatchSampler(torch.utils.data.Sampler):
    """Index batches for one rank: reshuffled every epoch from (seed, epoch), disjoint across ranks.

    `batch_size` is the global batch: each of the `world_size` ranks takes an equal
    contiguous part of every global batch, so the union of the ranks' batches is the
    batch a single process would see, and every rank gets the same number of batches
    of the same sizes (no DDP hang on uneven ends). The last `n % world_size` samples
    of each epoch's permutation are left out (a different few each epoch).
    Call `set_epoch(e)` before iterating.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if n < 1 or batch_size < 1:
            raise NHError(f"sampler needs n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        if not 0 <= rank < world_size:
            raise NHError(f"rank {rank} outside a world of {world_size}")
        if batch_size % world_size:
            raise NHError(
                f"batch_size {batch_size} must be a multiple of the number of processes {world_size}"
            )
        if n < world_size:
            raise NHError(f"{n} samples cannot be split over {world_size} processes")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        usable = n - n % world_size
        self.usable = (usable // batch_size) * batch_size if drop_last else usable
        if self.usable == 0:
            raise NHError(f"batch_size {batch_size} with drop_last leaves no batch of {n} samples")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.usable / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else np.arange(self.n)
        B, w, r = self.batch_size, self.world_size, self.rank
        for start in range(0, self.usable, B):
            block = order[start : min(start + B, self.usable)]  # one global batch
            k = len(block) // w
            yield block[r * k : (r + 1) * k]

    def samples_per_epoch(self) -> int:
        """Samples this rank sees in one epoch."""
        return self.usable // self.world_size


def eval_batches(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
    """In-order index batches covering this rank's contiguous part of range(n) (parts differ by <= 1).

    For evaluation: every sample is seen exactly once across the ranks; the ranks sum
    their losses and counts, so uneven parts are fine (no collective per batch).
    """
    lo, hi = (n * rank) // world_size, (n * (rank + 1)) // world_size
    return [np.arange(s, min(s + batch_size, hi), dtype=np.int64) for s in range(lo, hi, batch_size)]


def _blocks(batches: Any, block_rows: int) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Consecutive index batches joined into blocks: (indices, batch sizes).

    The first block is the first batch alone (a quick first batch); each next block is
    up to 4 times larger, up to about `block_rows` rows.
    """
    idx: list[np.ndarray] = []
    sizes: list[int] = []
    limit = 1
    for batch in batches:
        idx.append(np.asarray(batch, dtype=np.int64))
        sizes.append(len(batch))
        if sum(sizes) >= limit:
            yield np.concatenate(idx), sizes
            limit = min(4 * max(limit, sum(sizes)), block_rows)
            idx, sizes = [], []
    if idx:
        yield np.concatenate(idx), sizes


class _BlockSampler:
    """The blocks of a batch sampler, for a DataLoader (re-iterable, like the sampler)."""

    def __init__(self, batches: Any, block_rows: int) -> None:
        self.batches, self.block_rows = batches, block_rows

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[int]]]:
        return _blocks(self.batches, self.block_rows)


class _BlockDataset:
    """Map-style view of a ShardDataset whose items are blocks of batches (for DataLoader workers)."""

    def __init__(self, ds: ShardDataset) -> None:
        self.ds = ds

    def __getitem__(self, item: tuple[np.ndarray, list[int]]) -> list[dict[str, torch.Tensor]]:
        idx, sizes = item
        return self.ds.get_batches(idx, sizes)


def iterate_batches(
    ds: ShardDataset,
    batches: Any,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    block_rows: int | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of `ds` for the index arrays of `batches` (a sampler or a list), in order.

    Consecutive batches are gathered together in blocks of up to `block_rows` rows
    (default `ds.block_rows(batch size)`; see `ShardDataset.get_batches`): the same values
    as `ds.get_batch` per batch. num_workers = 0 gathers in this process; otherwise
    DataLoader workers gather the blocks (batch_size=None; same batches, same order).
    """
    if block_rows is None:
        block_rows = ds.block_rows(getattr(batches, "batch_size", 1))
    if num_workers == 0:
        for idx, sizes in _blocks(batches, block_rows):
            for batch in ds.get_batches(idx, sizes):
                yield {k: v.pin_memory() for k, v in batch.items()} if pin_memory else batch
        return
    loader = torch.utils.data.DataLoader(
        _BlockDataset(ds),  # type: ignore[arg-type]
        sampler=_BlockSampler(batches, block_rows),  # type: ignore[arg-type]
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    for block in loader:
        yield from block
