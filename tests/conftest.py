"""Shared fixtures: small datasets built once per session (copy them before mutating), and
helpers that several test files use."""

from __future__ import annotations

import os
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


@pytest.fixture
def interrupt_build_part_way():
    """`run(cmd, out, cwd)`: start `cmd`, a build of `--n 2000 --shard-size 10` (200 shards) into
    `out`, in a process group of its own; once 2 shards are recorded send SIGINT to the whole
    group (what Ctrl-C in a terminal does), and check what it must leave (issue 24, item 7):
    one line and exit 130 within seconds, most shards not built, no temporary file, no lock,
    and a folder that a rerun accepts, keeping its shards."""
    from nh_data.fileio import sha256_file
    from nh_data.lock import LOCK

    def run(cmd: list[str], out: Path, cwd: Path) -> None:
        proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        state = out / STATE_DIR
        deadline = time.time() + 120
        while time.time() < deadline and len(list(state.glob("*.parquet.json"))) < 2:
            time.sleep(0.01)
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        seconds, total = time.time() - t0, 200
        records = {p.name.removesuffix(".json") for p in state.glob("*.parquet.json")}
        assert proc.returncode == 130, err
        assert err.strip() == (
            f"interrupted: {len(records)} of {total} shards are built and kept in {out}; "
            "run the same command again to build the rest"
        )
        assert 2 <= len(records) < total // 2 and seconds < 10, (len(records), seconds)
        files = {p.name: sha256_file(p) for p in out.glob("*.parquet")}  # a worker stopped between
        assert records <= set(files) and len(set(files) - records) <= 2  # its shard and its record
        assert not [p for p in out.rglob("*") if ".tmp" in p.name] and not (out / LOCK).exists()
        part = build_dataset(out, 2000, shard_size=10, shards="0:1", progress=False)
        assert part["complete"] is False and part["shards_missing"] == total - len(records | {"train-00000.parquet"})
        assert all(sha256_file(out / name) == files[name] for name in records)  # kept, not rebuilt

    return run
