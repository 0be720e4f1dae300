"""Shared fixtures: small datasets built once per session (copy them before mutating)."""

from __future__ import annotations

import shutil

import pytest

from nh_data.build import build_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """n = 6 potentials, strata ICs, shard_size 2: 1 train, 1 val and 2 test shards (24 rows)."""
    out = tmp_path_factory.mktemp("tiny") / "ds"
    build_dataset(out, 6, seed=7, shard_size=2, progress=False)
    return out


@pytest.fixture
def tiny_copy(tiny_dataset, tmp_path):
    """A private copy of `tiny_dataset` that a test may corrupt."""
    dst = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dst)
    return dst


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op torch thread for the module: tiny models run fastest so, reproducibly, and
    without fighting other jobs for a small machine's cores. Use with
    `pytestmark = pytest.mark.usefixtures("torch_one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
