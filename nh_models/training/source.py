"""Where the training batches of every epoch come from: the folder's train split, or fresh
potentials drawn like the folder's orbits (`fresh: N`); `open_datasets` opens the folder's splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nh_data.errors import NHError

from ..data import EpochBatchSampler, ShardDataset, has_split, iterate_batches
from . import distributed as D


class TrainSource:
    """Where the training batches of every epoch come from: the folder's train split, or
    (`fresh` > 0) a fresh set of potentials per epoch drawn like the folder's orbits."""

    def __init__(self, data_dir: Path, train_ds: ShardDataset | None, tc: dict[str, Any], env: D.DistEnv,
                 dtype: torch.dtype) -> None:  # fmt: skip
        self.tc, self.env, self.ds = tc, env, train_ds
        self.fresh = None
        self._chunks: Any = None
        self._first: tuple[int, dict[str, Tensor]] | None = None
        if tc["fresh"] > 0:
            from ..fresh import FreshOrbits

            self.fresh = FreshOrbits.from_folder(data_dir, tc["seed"], tc["fresh"], dtype)
            self.rows_nominal = tc["fresh"] * self.fresh.orbits_per_potential
            self.sampler = None
        else:
            assert train_ds is not None
            self.sampler = EpochBatchSampler(
                len(train_ds), tc["batch_size"], seed=tc["seed"], rank=env.rank, world_size=env.world_size
            )

    def steps_per_epoch(self) -> int:
        """Optimizer steps of one epoch (nominal for fresh sets, which lose a few rejected orbits)."""
        if self.fresh is None:
            return len(self.sampler)
        return max(1, self.rows_nominal // self.tc["batch_size"]) * self.tc["fresh_reuse"]

    def samples_per_epoch(self) -> int:
        """Samples this rank sees in one epoch (nominal for fresh sets)."""
        if self.fresh is None:
            return self.sampler.samples_per_epoch()
        return self.steps_per_epoch() * self.tc["batch_size"] // self.env.world_size

    def _chunk(self, epoch: int) -> dict[str, Tensor]:
        if self._first is not None and self._first[0] == epoch:
            chunk = self._first[1]
            self._first = None
            return chunk
        if self._chunks is None:
            from ..fresh import iterate_chunks

            # generated ahead, in order, up to the stream's end: a re-planned run may add epochs
            self._chunks = iterate_chunks(
                self.fresh, epoch, len(self.fresh), num_workers=self.tc["num_workers"]
            )
        return next(self._chunks)

    def close(self) -> None:
        """Stop the fresh-data loader workers (a generator left to the garbage collector would
        keep them alive, and a later fork would inherit its handle)."""
        if self._chunks is not None:
            self._chunks.close()
            self._chunks = None

    def peek_chunk(self, epoch: int) -> dict[str, Tensor]:
        """The fresh set of `epoch`, kept for when that epoch runs (used by the planner)."""
        chunk = self.fresh[epoch]
        self._first = (epoch, chunk)
        return chunk

    def batches(self, epoch: int, pin_memory: bool) -> Any:
        """This rank's batches of `epoch` (epochs run in order from the first one asked for)."""
        if self.fresh is None:
            self.sampler.set_epoch(epoch)
            return iterate_batches(
                self.ds, self.sampler, num_workers=self.tc["num_workers"], pin_memory=pin_memory
            )
        return self._fresh_batches(self._chunk(epoch), epoch)

    def _fresh_batches(self, chunk: dict[str, Tensor], epoch: int) -> Any:
        """This rank's full batches of one fresh set, `fresh_reuse` shuffled passes over it."""
        n, B = chunk["V"].shape[0], self.tc["batch_size"]
        if n < B:  # every orbit of the set rejected, or nearly: no full batch
            return
        sampler = EpochBatchSampler(
            n, B, seed=self.tc["seed"], rank=self.env.rank, world_size=self.env.world_size, drop_last=True
        )
        for rep in range(self.tc["fresh_reuse"]):
            sampler.set_epoch(epoch * self.tc["fresh_reuse"] + rep)
            for idx in sampler:
                yield {key: v.index_select(0, torch.from_numpy(idx)) for key, v in chunk.items()}


def open_datasets(
    data_dir: Path, dtype: torch.dtype, env: D.DistEnv, with_train: bool = True
) -> dict[str, ShardDataset | None]:
    """train/val/test datasets; rank 0 builds the Arrow caches first, the other ranks then map them.

    with_train=False (fresh training sets) leaves the train split unopened."""

    def open_all() -> dict[str, ShardDataset | None]:
        out: dict[str, ShardDataset | None] = {
            "train": ShardDataset(data_dir, "train", dtype) if with_train else None,
            "val": ShardDataset(data_dir, "val", dtype),
        }
        out["test"] = ShardDataset(data_dir, "test", dtype) if has_split(data_dir, "test") else None
        return out

    error: NHError | None = None
    result = None
    if env.is_main:
        try:
            result = open_all()
        except NHError as exc:
            error = exc
    D.barrier(env)
    if error is not None:
        raise error
    return result if result is not None else open_all()
