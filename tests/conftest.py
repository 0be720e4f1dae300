"""Shared fixtures: small datasets built once per session (copy them before mutating), and
helpers that several test files use."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nh_data.build import build_dataset
from nh_data.schema import STATE_DIR


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


@pytest.fixture
def kill_build_part_way():
    """`run(cmd, out, **popen) -> int`: start the build `cmd` into `out`, SIGKILL it once 3 shards
    are recorded in its state folder (or after 120 s), and return how many were recorded."""

    def run(cmd: list[str], out: Path, **popen) -> int:
        proc = subprocess.Popen(cmd, **popen)
        state = out / STATE_DIR
        deadline = time.time() + 120
        while time.time() < deadline and len(list(state.glob("*.parquet.json"))) < 3:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return len(list(state.glob("*.parquet.json")))

    return run


@pytest.fixture
def untrained_val_loss():
    """`loss(model_name, cfg, data, batch_size) -> float`: the validation loss of the weights
    `train(model_name, cfg, data, ...)` starts from (it seeds torch with train.seed first)."""
    import torch

    from nh_models.data import ShardDataset
    from nh_models.models import get_model
    from nh_models.training.steps import evaluate

    def loss(model_name: str, cfg: dict, data: Path, batch_size: int) -> float:
        torch.manual_seed(cfg["train"]["seed"])
        model = get_model(model_name, cfg["model"])
        return evaluate(model, ShardDataset(data, "val"), batch_size=batch_size, device=torch.device("cpu"))

    return loss
