"""Fresh training data: chunks of newly certified orbits (`nh_data.stream`) as torch batch dicts.

Instead of re-reading the fixed train split, a trainer can take chunk k (say, epoch k) of
a fresh stream drawn like a dataset folder's orbits: `FreshOrbits(config, seed, potentials)[k]`
is the batch dict `ShardDataset.get_batch` gives (V, t, q, p, ic), for all the orbits of
chunk k. Each chunk is a pure function of (config, seed, k, potentials), so exact resume
needs only the chunk index, and `iterate_chunks` can generate ahead in DataLoader worker
processes while the model trains, with bit-identical chunks for any number of workers.

    ds = FreshOrbits.from_folder("parquet_data/1000", seed=89, potentials=1000)
    for epoch, chunk in enumerate(iterate_chunks(ds, start, stop, num_workers=1), start):
        ...   # chunk["V"] (n, 100), chunk["t"], ["q"], ["p"] (n, W), chunk["ic"] (n, 2)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import numpy as np
import torch

from nh_data.errors import NHError
from nh_data.initial import orbits_per_potential
from nh_data.stream import check_stream, fresh_chunk, read_build_config

#: dtypes of the batches (as ShardDataset)
DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
#: default number of chunks: chunks are indexed by epoch, so "endless"
DEFAULT_LENGTH = 2**31 - 1


class FreshOrbits(torch.utils.data.Dataset):
    """Map-style dataset whose item k is chunk k of a fresh stream, as one batch dict.

    config: a dataset's resolved build configuration (`nh_data.stream.read_build_config`);
    seed: the stream's seed; potentials: potentials drawn per chunk (a chunk holds up to
    potentials x orbits_per_potential orbits: rejected orbits are dropped, as in a shard).
    `ds[k]` = dict(V=(n, 100), t=(n, W), q=(n, W), p=(n, W), ic=(n, 2) = (q0, p0)),
    contiguous tensors of `dtype` (float32: the rounding of the float64 orbits, as the
    cache of ShardDataset). Items are generated on each access (seconds for thousands of
    potentials), never stored; n varies from chunk to chunk (0 only if every orbit is rejected).
    """

    def __init__(
        self,
        config: dict,
        seed: int,
        potentials: int,
        dtype: torch.dtype = torch.float32,
        *,
        length: int = DEFAULT_LENGTH,
    ) -> None:
        if dtype not in DTYPES:
            raise NHError(f"FreshOrbits dtype must be torch.float32 or torch.float64, got {dtype}")
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise NHError(f"FreshOrbits length must be a positive integer, got {length!r}")
        self.seed, self.potentials = check_stream(config, seed, potentials)
        self.config = dict(config)
        self.dtype = dtype
        self.np_dtype = DTYPES[dtype]
        self.length = int(length)
        self.orbits_per_potential = orbits_per_potential(self.config["ic"])

    @classmethod
    def from_folder(
        cls, data_dir: str | os.PathLike, seed: int, potentials: int, dtype: torch.dtype = torch.float32
    ) -> FreshOrbits:
        """Fresh orbits drawn like the orbits of the dataset folder `data_dir` (its manifest's config)."""
        return cls(read_build_config(data_dir), seed, potentials, dtype)

    def __len__(self) -> int:
        return self.length

    def arrays(self, index: int) -> dict[str, np.ndarray]:
        """Chunk `index` as `nh_data.stream.fresh_chunk` returns it (float64, every column)."""
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"chunk {index} out of range for a stream of {self.length} chunks")
        return fresh_chunk(self.config, self.seed, index, self.potentials)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c = self.arrays(index)
        f = self.np_dtype
        out = {k: torch.from_numpy(np.ascontiguousarray(c[k], dtype=f)) for k in ("V", "t", "q", "p")}
        out["ic"] = torch.from_numpy(np.ascontiguousarray(np.stack([c["q0"], c["p0"]], axis=1), dtype=f))
        return out


def _worker_init(worker_id: int) -> None:
    """One torch thread per worker: the workers generate (Numba, single-threaded), the parent trains."""
    torch.set_num_threads(1)


def iterate_chunks(ds: FreshOrbits, start: int, stop: int, num_workers: int = 0) -> Iterator[dict]:
    """ds[start], ds[start + 1], ..., ds[stop - 1], in order.

    num_workers = 0 generates each chunk in this process when it is asked for; otherwise
    `num_workers` forked DataLoader workers generate up to 2 chunks each ahead, so that
    generation overlaps training. The chunks are the same bits either way. The DataLoader
    gets its own generator, so the caller's global torch RNG is not consumed (exact resume).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise NHError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    start, stop = int(start), int(stop)
    if start >= stop:
        return
    if num_workers == 0:
        for k in range(start, stop):
            yield ds[k]
        return
    _warm_up(ds.config)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=int(num_workers),
        prefetch_factor=2,
        persistent_workers=False,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(0),
        multiprocessing_context="fork" if sys.platform.startswith("linux") else None,
    )
    yield from loader


def _warm_up(config: dict) -> None:
    """Compile (or load from Numba's cache) the kernels in this process, on a one-potential chunk:
    forked workers inherit them instead of compiling each (the fixed-step kernels take the force
    as an argument and are not cached on disk). A few tries, in case a potential is rejected
    before any integration."""
    for index in range(8):
        if fresh_chunk(config, 0, index, 1)["q0"].size:
            return
