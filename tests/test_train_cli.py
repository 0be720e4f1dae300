"""`nh train`: overrides, run folder, resume, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_models.training.config import CONFIG_DIR
from nh_models.training.trainer import train

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli_data")
    write_synthetic_dataset(d, n_train=128, n_val=32, n_test=0, seed=1)
    return d


def _run(*args: str):
    return CliRunner().invoke(nh, ["train", *map(str, args)])


def test_cli_overrides_the_config_file_and_prints_the_run_folder(data, tmp_path):
    out = tmp_path / "runs"
    small = CONFIG_DIR / "deeponet_small.yaml"
    res = _run(
        "deeponet",
        "--config",
        small,
        "--data",
        data,
        "--epochs",
        2,
        "--batch-size",
        64,
        "--lr",
        2e-3,
        "--seed",
        5,
        "--out",
        out,
        "--device",
        "cpu",
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[0]
    assert first.startswith("run folder: ")
    run = Path(first.removeprefix("run folder: "))
    assert run.parent == out and run.name.startswith("deeponet-") and run.name.endswith("-s5")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    file = yaml.safe_load(small.read_text())
    assert saved["model"] == file["model"]  # from the file
    assert saved["train"]["epochs"] == 2 and saved["train"]["batch_size"] == 64  # from the command line
    assert saved["train"]["lr"] == 2e-3 and saved["train"]["seed"] == 5
    assert saved["train"]["weight_decay"] == file["train"]["weight_decay"]
    assert "best val" in res.stdout and res.stderr == ""  # --quiet: no progress bar

    again = _run("deeponet", "--resume", run)
    assert again.exit_code == 2 and "already completed 2/2 epochs" in again.stderr


def test_cli_resumes_a_stopped_run(data, tmp_path):
    run = tmp_path / "stopped"

    def stop(epoch, val_loss):
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = {"model": {"nodes": 16, "layers": 2, "branches": 4}, "train": {"epochs": 3, "batch_size": 32}}
    with pytest.raises(KeyboardInterrupt):
        train("deeponet", cfg, data, run, progress=False, epoch_callback=stop)
    res = _run("deeponet", "--resume", run, "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == f"run folder: {run}"
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown model", "unknown model 'resnet'; valid models: deeponet, varonet, traonet, mambonet, fno, symponet"),
        ("missing data", "data directory '{tmp}/nowhere' does not exist"),
        ("empty data", "data directory '{tmp}/empty' holds no dataset"),
        ("no data option", "no dataset at parquet_data/normal (the default --data); build it with "
                           "`nh data build --preset normal`, or pass --data DIR"),
        ("unknown key", "unknown train key 'epoch'; valid keys: epochs, batch_size, lr"),
        ("unknown model key", "unknown deeponet config key 'width'; valid keys: nodes, layers, branches"),
        ("missing config", "config file '{tmp}/none.yaml' does not exist"),
        ("cuda", "--device cuda was asked for but CUDA is not available"),
        ("bad device", "unknown device 'tpu'; valid devices: cpu, cuda, auto"),
        ("bad resume", "run folder '{tmp}/nope' does not exist"),
        ("resume without checkpoint", "run folder '{tmp}/empty' has no checkpoint_last.pt"),
        ("resume with overrides", "--resume continues a run with its saved config; drop --epochs"),
        ("bad batch", "train.batch_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(case, message, data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)  # no parquet_data/normal here
    (tmp_path / "empty").mkdir()
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("train:\n  epoch: 3\n")
    bad_model = tmp_path / "badm.yaml"
    bad_model.write_text("model:\n  width: 3\n")
    out = tmp_path / "runs"
    base = ["--out", out, "-q"]
    args = {
        "unknown model": ["resnet", "--data", data],
        "missing data": ["deeponet", "--data", tmp_path / "nowhere"],
        "empty data": ["deeponet", "--data", tmp_path / "empty"],
        "no data option": ["deeponet"],
        "unknown key": ["deeponet", "--data", data, "--config", bad_cfg],
        "unknown model key": ["deeponet", "--data", data, "--config", bad_model],
        "missing config": ["deeponet", "--data", data, "--config", tmp_path / "none.yaml"],
        "cuda": ["deeponet", "--data", data, "--device", "cuda"],
        "bad device": ["deeponet", "--data", data, "--device", "tpu"],
        "bad resume": ["deeponet", "--resume", tmp_path / "nope"],
        "resume without checkpoint": ["deeponet", "--resume", tmp_path / "empty"],
        "resume with overrides": ["deeponet", "--resume", tmp_path / "empty", "--epochs", 3],
        "bad batch": ["deeponet", "--data", data, "--batch-size", 0],
    }[case]
    res = _run(*args, *base)
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert message.format(tmp=tmp_path) in lines[0]
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_bad_input_in_a_real_process_has_no_traceback(data, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "train", "deeponet", "--data", tmp_path / "missing", "--out", tmp_path],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"Error: data directory '{tmp_path}/missing' does not exist"]


def test_packaged_configs_are_found_from_any_folder(data, tmp_path, monkeypatch):
    """Issue 24 (10): `configs/...` and short names resolve against the packaged copy when no such file is here."""
    from nh_data.errors import NHError
    from nh_models.training.config import PAPER_CONFIG_DIR, find_config, load_config

    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    paper = load_config("deeponet", PAPER_CONFIG_DIR / "deeponet.yaml")
    for name in ("configs/paper/deeponet.yaml", "paper/deeponet.yaml", "paper/deeponet"):
        assert find_config(name) == PAPER_CONFIG_DIR / "deeponet.yaml"
        assert load_config("deeponet", name) == paper
    assert find_config("deeponet_tune", "search space file") == CONFIG_DIR / "deeponet_tune.yaml"
    from nh_models.training.tune import read_space

    assert read_space("configs/deeponet_tune.yaml") == read_space(CONFIG_DIR / "deeponet_tune.yaml")
    (tmp_path / "configs" / "paper").mkdir(parents=True)  # a file that is here wins over the packaged one
    (tmp_path / "configs" / "paper" / "deeponet.yaml").write_text("train:\n  epochs: 3\n")
    assert load_config("deeponet", "configs/paper/deeponet.yaml")["train"]["epochs"] == 3
    with pytest.raises(NHError, match="config file 'paper/nothing' does not exist, here or among the packaged"):
        load_config("deeponet", "paper/nothing")
    assert "packaged config from any folder" in " ".join(_run("--help").output.split())
    res = _run("deeponet", "--config", "configs/deeponet_small.yaml", "--data", data, "--epochs", 1,
               "--out", tmp_path / "runs", "--device", "cpu", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    run = Path(res.stdout.splitlines()[0].removeprefix("run folder: "))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"] == yaml.safe_load((CONFIG_DIR / "deeponet_small.yaml").read_text())["model"]


def test_a_folder_that_is_no_dataset_is_told_from_an_unfinished_build(tiny_copy, tmp_path):
    """Issue 24 (9): unrelated Parquet files are "not a dataset", a build without its manifest "not
    finished"; `nh train` prints no run folder for a run it never starts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    other = tmp_path / "other"
    other.mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0]}), other / "sales.parquet")
    (tiny_copy / "manifest.json").unlink()  # a build that has not finished: .nh_build/ is there
    out = tmp_path / "runs"
    for folder, says in ((other, "is not a dataset of `nh data build`"), (tiny_copy, "the build is not finished")):
        for args in (["data", "info", str(folder)], ["train", "deeponet", "--data", str(folder), "--out", str(out)]):
            res = CliRunner().invoke(nh, args)
            assert res.exit_code == 2, (args, res.output)
            assert res.stdout == "" and len(res.stderr.splitlines()) == 1, (args, res.output)
            assert says in res.stderr, (args, res.stderr)
            if folder == other:
                assert "not finished" not in res.stderr and "again" not in res.stderr
    assert not out.exists()


def test_ctrl_c_prints_the_resume_command(data, tmp_path, monkeypatch):
    """Issue 24 (7): Ctrl-C in `nh train` is one line with the command that continues the run
    (exit 130); before the first epoch ended there is nothing to resume and no run folder is left."""
    import nh_models.training.trainer as T

    real, calls = T.train_epoch, {"n": 0}

    def interrupted_in_epoch(k):
        def epoch(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == k:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        return epoch

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"nodes": 16, "layers": 2, "branches": 4},
                                   "train": {"epochs": 3, "batch_size": 32}}))  # fmt: skip
    args = ["deeponet", "--config", cfg, "--data", data, "--out", tmp_path / "runs", "--device", "cpu", "-q"]
    monkeypatch.setattr(T, "train_epoch", interrupted_in_epoch(2))
    res = _run(*args)
    run = Path(res.stdout.splitlines()[0].removeprefix("run folder: "))
    assert res.exit_code == 130
    assert res.stderr.splitlines() == [f"interrupted; continue with: nh train deeponet --resume {run}"]
    monkeypatch.setattr(T, "train_epoch", real)
    again = _run("deeponet", "--resume", run, "-q")
    assert again.exit_code == 0, again.output
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3

    calls["n"] = 0
    monkeypatch.setattr(T, "train_epoch", interrupted_in_epoch(1))
    res = _run(*args, "--seed", 6)  # another run folder, even within the same second
    run = Path(res.stdout.splitlines()[0].removeprefix("run folder: "))
    assert res.exit_code == 130
    assert res.stderr.splitlines() == [f"interrupted before the first epoch ended: nothing to resume; {run} removed"]
    assert not run.exists()
