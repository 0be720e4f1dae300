"""`nh tune`: a tiny study completes, resumes, survives failing trials, and its best.yaml trains."""

from __future__ import annotations

import csv
import itertools
import math

import pytest
import yaml
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_data.errors import NHError
from nh_models.models import MODEL_NAMES
from nh_models.training.config import CONFIG_DIR, load_config
from nh_models.training.tune import read_space, tune

SPACE = """
model:
  nodes: {type: categorical, choices: [4, 8]}
  layers: {type: int, low: 1, high: 2}
train:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""
BASE = """
model: {nodes: 8, layers: 1, branches: 2}
train: {epochs: 2, batch_size: 32}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    write_synthetic_dataset(root / "data", n_train=64, n_val=16, n_test=0, seed=2)
    (root / "space.yaml").write_text(SPACE)
    (root / "base.yaml").write_text(BASE)
    return root


def _tune_args(root, trials, out="out", db="tune.db"):
    return [
        "tune",
        "deeponet",
        "--trials",
        str(trials),
        "--data",
        str(root / "data"),
        "--storage",
        f"sqlite:///{root / db}",
        "--study",
        "tiny",
        "--out",
        str(root / out),
        "--epochs",
        "2",
        "--config",
        str(root / "base.yaml"),
        "--space",
        str(root / "space.yaml"),
        "-q",
    ]


def test_tune_completes_resumes_and_best_yaml_trains(setup):
    root = setup
    first = CliRunner().invoke(nh, _tune_args(root, 3))
    assert first.exit_code == 0, first.output
    assert "study tiny: 3 trials" in first.stdout
    second = CliRunner().invoke(nh, _tune_args(root, 2))
    assert second.exit_code == 0, second.output
    assert "study tiny: 5 trials" in second.stdout
    rows = list(csv.DictReader((root / "out" / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3, 4]
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in rows)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best_value = min(float(r["value"]) for r in complete)
    # the resumed call drew new points, not the first three again
    params = {(r["model.nodes"], r["model.layers"], r["train.lr"]) for r in rows}
    assert len(params) == 5
    best = yaml.safe_load((root / "out" / "best.yaml").read_text())
    assert set(best) == {"model", "train"} and best["train"]["epochs"] == 2
    header = (root / "out" / "best.yaml").read_text().splitlines()[0]
    assert math.isclose(float(header.rsplit(" ", 1)[1].rstrip(")")), best_value, rel_tol=1e-6)
    assert best["model"]["branches"] == 2  # from the base config, not searched
    trained = CliRunner().invoke(
        nh,
        [
            "train",
            "deeponet",
            "--config",
            str(root / "out" / "best.yaml"),
            "--data",
            str(root / "data"),
            "--out",
            str(root / "runs"),
            "--epochs",
            "1",
            "-q",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert load_config("deeponet", root / "out" / "best.yaml")["model"] == best["model"]


def test_failed_and_non_finite_trials_are_recorded_not_fatal(setup, monkeypatch):
    root = setup
    calls = {"n": 0}
    import nh_models.training.trainer as train_module

    real_train = train_module.train

    def flaky_train(model_name, config, data_dir, out_dir, *, epoch_callback=None, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            epoch_callback(1, float("nan"))  # a diverged trial
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_train(model_name, config, data_dir, out_dir, epoch_callback=epoch_callback, **kw)

    monkeypatch.setattr(train_module, "train", flaky_train)
    summary = tune(
        "deeponet",
        3,
        root / "data",
        storage=f"sqlite:///{root / 'flaky.db'}",
        study_name="flaky",
        out_dir=root / "flaky",
        epochs=1,
        base_config=root / "base.yaml",
        space_path=root / "space.yaml",
        progress=False,
    )
    assert summary["states"] == {"FAIL": 2, "COMPLETE": 1}
    rows = list(csv.DictReader((root / "flaky" / "trials.csv").open()))
    assert rows[0]["error"].startswith("NonFiniteLoss: validation loss nan")
    assert rows[1]["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert summary["best_trial"] == 2 and (root / "flaky" / "best.yaml").is_file()


def test_all_trials_failing_is_an_error_not_a_crash(setup, monkeypatch):
    import nh_models.training.trainer as train_module

    def broken(*a, **kw):
        raise ValueError("boom")

    monkeypatch.setattr(train_module, "train", broken)
    with pytest.raises(NHError, match=r"no trial of study 'broken' completed \(\{'FAIL': 2\}\)"):
        tune(
            "deeponet",
            2,
            setup / "data",
            storage=f"sqlite:///{setup / 'broken.db'}",
            study_name="broken",
            out_dir=setup / "broken",
            epochs=1,
            base_config=setup / "base.yaml",
            space_path=setup / "space.yaml",
            progress=False,
        )
    assert not (setup / "broken" / "best.yaml").exists()


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            "model:\n  widht: {type: int, low: 1, high: 2}\n",
            "Error: search space: unknown model key 'widht'; valid keys: branches, features, layers, nodes, scale, trunk",
        ),
        (
            "train:\n  lr: {type: float, low: 1, high: 2, bogus: 3}\n",
            "Error: search space space.yaml: train.lr: unknown field 'bogus'; "
            "valid: high, log, low, step, type",
        ),
        (
            "model:\n  nodes: {type: normal}\n",
            "Error: search space space.yaml: model.nodes needs a mapping with type one of "
            "int, float, categorical",
        ),
        (
            "optim: {}\n",
            "Error: search space file '{root}/space.yaml': unknown section 'optim'; valid sections: "
            "model, train",
        ),
    ],
)
def test_bad_space_is_one_line_exit_2(tmp_path, setup, space, message):
    (tmp_path / "space.yaml").write_text(space)
    args = _tune_args(setup, 1)
    args[args.index("--space") + 1] = str(tmp_path / "space.yaml")
    result = CliRunner().invoke(nh, args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message.format(root=tmp_path)


def test_bad_model_data_and_study_owner_exit_2(setup, tmp_path):
    args = _tune_args(setup, 1)
    bad = CliRunner().invoke(nh, ["tune", "nonet", "--trials", "1"])
    assert bad.exit_code == 2 and bad.stderr.strip() == (
        "Error: unknown model 'nonet'; valid: deeponet, varonet, traonet, mambonet, fno, symponet"
    )
    nodata = list(args)
    nodata[nodata.index("--data") + 1] = str(tmp_path / "none")
    result = CliRunner().invoke(nh, nodata)
    assert result.exit_code == 2 and result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    result = CliRunner().invoke(nh, [*args, "--device", "tpu"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: unknown device 'tpu'; valid: cpu, cuda, cuda:N, auto"
    # a study created for deeponet cannot be continued for traonet
    CliRunner().invoke(nh, _tune_args(setup, 1, out="own", db="own.db"))
    other = [
        "tune",
        "traonet",
        "--trials",
        "1",
        "--data",
        str(setup / "data"),
        "--storage",
        f"sqlite:///{setup / 'own.db'}",
        "--study",
        "tiny",
        "--space",
        str(CONFIG_DIR / "traonet_tune.yaml"),
    ]
    result = CliRunner().invoke(nh, other)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: study 'tiny' in sqlite:///{setup / 'own.db'} tunes 'deeponet', not "
        "'traonet'; choose another --study"
    )


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_shipped_search_spaces_name_real_keys(model):
    from dataclasses import fields

    from nh_models.models import model_config
    from nh_models.training.config import TRAIN_KEYS

    space = read_space(CONFIG_DIR / f"{model}_tune.yaml")
    assert set(space["model"]) <= {f.name for f in fields(type(model_config(model, None)))}
    assert set(space["train"]) <= set(TRAIN_KEYS) and "lr" in space["train"]
    # every corner of the model space is a valid config (e.g. d_model divisible by every nhead)
    values = {
        k: e["choices"] if e["type"] == "categorical" else [e["low"], e["high"]]
        for k, e in space["model"].items()
    }
    for combo in itertools.product(*values.values()):
        model_config(model, dict(zip(values, combo, strict=True)))


def test_bad_storage_is_one_line_exit_2(setup, tmp_path):
    for storage, message in [
        (
            "runs/tune.db",
            "Error: storage must be a database URL such as sqlite:///runs/tune.db, got 'runs/tune.db'",
        ),
        (
            f"sqlite:///{tmp_path}",
            f"Error: storage 'sqlite:///{tmp_path}' is a directory, not a database file",
        ),
    ]:
        args = _tune_args(setup, 1)
        args[args.index("--storage") + 1] = storage
        result = CliRunner().invoke(nh, args)
        assert result.exit_code == 2
        assert result.stderr.strip() == message


def test_what_bounds_a_trial_given_values_win_and_the_default_is_short():
    """Issue 24 (1): a trial's budget; with a time-limited base config (the recipes: 10 min) and
    nothing given, a trial takes DEFAULT_TRIAL_MINUTES, not the recipe's 10."""
    from nh_models.training.tune import DEFAULT_TRIAL_MINUTES, trial_budget

    timed, plain = {"time_limit": 10.0, "epochs": 1000}, {"time_limit": 0.0, "epochs": 20}
    assert DEFAULT_TRIAL_MINUTES <= 2
    assert trial_budget(timed, None, None) == ({"time_limit": DEFAULT_TRIAL_MINUTES}, None, "1 min each")
    assert trial_budget(plain, None, None) == ({}, None, "20 epochs each (the base config's)")
    assert trial_budget(timed, 3, None) == ({"epochs": 3, "time_limit": 0.0}, None, "3 epochs each")
    assert trial_budget(plain, None, 0.5) == ({"time_limit": 0.5}, None, "0.5 min each")
    assert trial_budget(timed, 3, 0.5) == ({"time_limit": 0.5, "epochs": 3}, 3, "at most 3 epochs in 0.5 min each")
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(NHError, match="--time-limit must be a number of minutes > 0"):
            trial_budget(timed, None, bad)


def test_tune_time_limit_per_trial_and_a_line_per_trial_with_best_and_eta(setup, monkeypatch):
    """Issue 24 (1, 2): `--time-limit` reaches every trial (with `--epochs`: at most that many); off a
    terminal each trial is one line with the trials done, the best value so far and an ETA."""
    import re

    import nh_models.training.trainer as train_module

    root, seen = setup, []

    def fake_train(model, config, data, run_dir, *, epoch_callback, max_epochs=None, **kwargs):
        seen.append((config["train"]["time_limit"], config["train"]["epochs"], max_epochs))
        value = 0.5 / (1 + len(seen) % 3)
        epoch_callback(1, value)
        return {"best_val_loss": value}

    monkeypatch.setattr(train_module, "train", fake_train)
    (root / "timed.yaml").write_text(BASE.replace("epochs: 2", "epochs: 1000, time_limit: 10"))

    def tune_(study, *extra):
        args = _tune_args(root, 2, out=study, db="budget.db")
        args[args.index("tiny")] = study
        del args[args.index("--epochs") : args.index("--epochs") + 2]
        args[args.index(str(root / "base.yaml"))] = str(root / "timed.yaml")
        res = CliRunner().invoke(nh, [a for a in args if a != "-q"] + list(extra))
        assert res.exit_code == 0, res.output
        return res.stderr.splitlines()

    lines = tune_("t1", "--time-limit", "0.5")
    assert seen == [(0.5, 1000, None)] * 2
    assert lines[0].endswith("0 trials so far, running 2 more, 0.5 min each, about 1 min of training")
    assert re.fullmatch(r"trial 0: COMPLETE val 2\.5000e-01 \(.*\) \| 1/2 done, best 2\.5000e-01 \(trial 0\), "
                        r"ETA \d\.\d s", lines[1]), lines[1]  # fmt: skip
    assert re.fullmatch(r"trial 1: COMPLETE val 1\.6667e-01 \(.*\) \| 2/2 done, best 1\.6667e-01 \(trial 1\)",
                        lines[2]), lines[2]  # fmt: skip
    assert len(lines) == 3 and not any("\r" in line for line in lines)
    seen.clear()
    assert tune_("t2")[0].endswith("running 2 more, 1 min each, about 2 min of training")  # the default
    assert seen == [(1.0, 1000, None)] * 2
    seen.clear()
    tune_("t3", "--time-limit", "0.5", "--epochs", "3")
    assert seen == [(0.5, 3, 3)] * 2
