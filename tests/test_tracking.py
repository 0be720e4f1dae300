"""Training logs (issue 12): TensorBoard events read back with tensorboard's own reader, a W&B
offline run directory, and a one-line error when the package is missing."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _cfg(log: str) -> dict:
    return {"model": {"nodes": 8, "layers": 1, "branches": 2},
            "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3, "log": log}}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("track")
    write_synthetic_dataset(d, n_train=96, n_val=32, n_test=0, seed=4)
    return d


def test_tensorboard_events_hold_the_logged_values(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    metrics = train("deeponet", _cfg("tensorboard"), data, run, progress=False)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    history = list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))
    val = [e.value for e in acc.Scalars("val/loss")]
    assert val == pytest.approx([float(r["val_loss"]) for r in history], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/loss")] == [3, 6]  # optimizer steps: 96 / 32 per epoch
    steps = acc.Scalars("train/loss_step")
    assert [e.step for e in steps] == list(range(1, metrics["steps_done"] + 1))  # after each step
    assert all(e.value > 0 for e in steps)
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([float(r["lr"]) for r in history])
    assert {"samples_per_s", "train/loss"} <= set(acc.Tags()["scalars"])
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_wandb_offline_run_directory(data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    run = tmp_path / "run"
    train("deeponet", _cfg("wandb"), data, run, progress=False)
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    records = list(offline[0].glob("run-*.wandb"))
    assert records and b"val/loss" in records[0].read_bytes()


def test_missing_package_is_one_line_and_no_run_folder(data, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a))
    out = tmp_path / "runs"
    res = CliRunner().invoke(nh, ["train", "deeponet", "--data", str(data), "--epochs", "1", "--log",
                                  "tensorboard", "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("Error: --log tensorboard needs the tensorboard package")
    assert res.stderr.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())
