"""`torchrun --nproc-per-node 2 nh train` on gloo trains the same model as one process.

The sampler splits every global batch into equal halves, DDP averages the two halves'
gradients, and evaluation sums losses over the ranks: the run is the single-process
run up to float32 rounding in the order of the sums.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic import write_synthetic_dataset

from nh_models.models import get_model
from nh_models.training.checkpoint import load_checkpoint
from nh_models.training.config import load_config
from nh_models.training.trainer import train

REPO = Path(__file__).resolve().parent.parent


def _history(run: Path) -> list[dict[str, float]]:
    return [
        {k: float(v) for k, v in row.items()}
        for row in csv.DictReader(io.StringIO((run / "history.csv").read_text()))
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    write_synthetic_dataset(data, n_train=256, n_val=64, n_test=32, seed=2)
    cfg_file = root / "ddp.yaml"
    cfg_file.write_text(
        "model: {nodes: 32, layers: 3, branches: 8}\n"
        "train: {epochs: 3, batch_size: 32, lr: 3.0e-3, seed: 3, num_workers: 0}\n"
    )
    return root, data, cfg_file


def test_two_gloo_processes_match_one_process(setup):
    root, data, cfg_file = setup
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train("deeponet", load_config("deeponet", cfg_file), data, root / "single", progress=False)
    finally:
        torch.set_num_threads(n_threads)

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(REPO / "cli.py"), "train", "deeponet", "--config", str(cfg_file), "--data", str(data),
           "--out", str(root / "ddp"), "--device", "cpu", "--quiet"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("run folder: ")]
    assert len(lines) == 1  # only rank 0 prints
    run = Path(lines[0].removeprefix("run folder: "))
    assert run.parent == root / "ddp" and run.name.startswith("deeponet-ddp2-")
    assert not [p for p in run.iterdir() if ".tmp" in p.name]

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_done"] == 3
    h1, h2 = _history(root / "single"), _history(run)
    for a, b in zip(h1, h2, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
        assert b["lr"] == a["lr"]
    assert metrics["test_loss"] == pytest.approx(single["test_loss"], rel=1e-5)
    # and the weights agree: the same optimisation, not just similar losses
    w1 = load_checkpoint(root / "single" / "checkpoint_last.pt")["model"]
    ckpt = load_checkpoint(run / "checkpoint_last.pt")
    assert len(ckpt["rng_ranks"]) == 2
    for k, v in w1.items():
        torch.testing.assert_close(ckpt["model"][k], v, rtol=1e-4, atol=1e-5)
    # and it learned: the loss fell and the weights moved away from the seed's initial ones
    assert h2[-1]["val_loss"] < h2[0]["val_loss"]
    torch.manual_seed(3)
    init = get_model("deeponet", ckpt["config"]["model"]).state_dict()
    assert max(float((ckpt["model"][k] - init[k]).abs().max()) for k in init) > 1e-3
