"""What an evaluation runs on: the test split of a dataset (in memory or read batch by batch
from the memory-mapped shards) and the physics cases of `nh physics`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nh_data.errors import NHError
from nh_data.problem import SENSORS

from .settings import _log

_VECTORS = ("V", "t", "ic", "q", "p")


@dataclass
class TestData:
    """Test orbits in memory (float64): inputs, truth, energy stratum."""

    __test__ = False  # not a pytest class

    V: np.ndarray  # (N, 100)
    t: np.ndarray  # (N, W)
    ic: np.ndarray  # (N, 2)
    q: np.ndarray  # (N, W)
    p: np.ndarray  # (N, W)
    u: np.ndarray  # (N,)
    source: str = ""

    def take(self, idx: np.ndarray) -> TestData:
        return TestData(
            self.V[idx], self.t[idx], self.ic[idx], self.q[idx], self.p[idx], self.u[idx], self.source
        )

    def batches(self, batch_size: int):
        """Yield TestData slices of at most `batch_size` orbits, in order."""
        for s in range(0, len(self.u), batch_size):
            yield self.take(slice(s, s + batch_size))


class TestSplit:
    """A dataset's test split read batch by batch from the memory-mapped shards (any size).

    Same interface as TestData for the evaluation: `u`, `source`,
    `batches(batch_size)` and `take(idx)` (which loads those orbits into memory).
    """

    __test__ = False  # not a pytest class

    def __init__(
        self, data_dir: str | os.PathLike, max_orbits: int | None = None, seed: int = 0, split: str = "test"
    ):
        from ..data import ShardDataset

        self.ds = ShardDataset(data_dir, split, dtype=torch.float64)
        n = len(self.ds)
        if n == 0:
            raise NHError(f"{split} split of {data_dir} is empty")
        if max_orbits is not None and max_orbits < n:  # a seeded random subset, in shard order
            self.idx = np.sort(np.random.default_rng(seed).choice(n, size=max_orbits, replace=False))
        else:
            self.idx = np.arange(n)
        self.u = np.asarray(self.ds.column("u"), dtype=np.float64)[self.idx]
        self.source = str(data_dir)

    def _load(self, rows: np.ndarray) -> TestData:
        batch = self.ds.get_batch(rows)
        arrays = {k: batch[k].double().numpy() for k in _VECTORS}
        return TestData(
            **arrays, u=np.asarray(self.ds.column("u"), dtype=np.float64)[rows], source=self.source
        )

    def take(self, idx: np.ndarray) -> TestData:
        return self._load(self.idx[idx])

    def batches(self, batch_size: int):
        for s in range(0, len(self.idx), batch_size):
            yield self._load(self.idx[s : s + batch_size])


def load_test(
    data_dir: str | os.PathLike, max_orbits: int | None = None, seed: int = 0, split: str = "test"
) -> TestData:
    """Read the test split (or a seeded random subset of `max_orbits`) into float64 arrays in memory;
    `split`: another split of the folder (val, train) read the same way."""
    orbits = TestSplit(data_dir, max_orbits, seed, split)
    return orbits.take(np.arange(len(orbits.u)))


@dataclass
class PhysicsCase:
    """One physical test potential: sensors, times, reference orbit, analytic V."""

    name: str
    V: np.ndarray  # (100,)
    t: np.ndarray  # (W,)
    q_ref: np.ndarray  # (W,)
    p_ref: np.ndarray  # (W,)
    formula: str = ""


def physics_names(spec: str) -> list[str]:
    """Parse `all` or `name,name,...` against the registry of nh_data.physics."""
    from nh_data.physics import POTENTIALS

    if spec.strip() in ("", "none"):
        return []
    if spec.strip() == "all":
        return list(POTENTIALS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in POTENTIALS]
    if bad:
        raise NHError(f"unknown physics potential {bad[0]!r}; valid: all, {', '.join(POTENTIALS)}")
    return names


def load_physics_cases(
    physics_dir: str | os.PathLike, names: list[str], progress: bool = True
) -> list[PhysicsCase]:
    """Load each potential's parquet with `nh_data.physics.load_physics` (built first when missing)."""
    from nh_data.physics import load_physics

    cases = []
    for name in names:
        if not (Path(physics_dir) / f"{name}.parquet").exists():
            _log(f"building physics potential {name} in {physics_dir}", progress)
        data = load_physics(physics_dir, name)
        if len(data.V) != len(SENSORS):
            raise NHError(f"physics case {name}: expected {len(SENSORS)} sensor values, got {len(data.V)}")
        cases.append(
            PhysicsCase(
                name,
                np.asarray(data.V, dtype=np.float64),
                np.asarray(data.t, dtype=np.float64),
                np.asarray(data.q_ref, dtype=np.float64),
                np.asarray(data.p_ref, dtype=np.float64),
                str(data.meta.get("formula", "")),
            )
        )
    return cases


def physics_energy(name: str, q: np.ndarray, p: np.ndarray, q0: float, p0: float) -> np.ndarray:
    """|H - H0| with the analytic potential of a physics case; q, p any shape."""
    from nh_data.physics import POTENTIALS

    pot = POTENTIALS[name]
    return np.abs(pot.energy(q, p) - float(pot.energy(q0, p0)))
