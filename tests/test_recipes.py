"""Training recipes beyond the paper: time budgets, warm-up + cosine, divergence guard, fresh data,
the Chebyshev trunk and energy features of DeepONet, the shipped configs, `nh train` defaults."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

import nh_models.training.trainer as T
from cli import nh
from nh_data.build import build_dataset, resolve_config
from nh_data.errors import NHError
from nh_models.models import MODEL_NAMES, PAPER_MODEL_NAMES, get_model
from nh_models.models.base import energy_features
from nh_models.models.deeponet import chebyshev_basis
from nh_models.training import schedules
from nh_models.training.checkpoint import load_checkpoint
from nh_models.training.config import CONFIG_DIR, PAPER_CONFIG_DIR, load_config

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL = {"nodes": 16, "layers": 2, "branches": 8, "trunk": "chebyshev", "features": "energy", "scale": True}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(d, n_train=128, n_val=32, n_test=32, seed=3)
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A real (tiny) build: what the fresh source reads its configuration from."""
    d = tmp_path_factory.mktemp("built") / "ds"
    build_dataset(d, 24, seed=5, shard_size=12, progress=False)
    return d


def _cfg(**train) -> dict:
    base = {"epochs": 3, "batch_size": 16, "lr": 3e-3, "seed": 7, "schedule": "cosine", "warmup": 0.1}
    return load_config(
        "deeponet", PAPER_CONFIG_DIR / "deeponet.yaml", {"model": SMALL, "train": {**base, **train}}
    )


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "checkpoint_last.pt")["model"]


# ----------------------------------------------------------------- schedule


def test_warmup_cosine_rises_then_falls_to_the_floor():
    lrs = [schedules.warmup_cosine_lr(s, 1e-3, 1e-6, 100, 10) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up
    assert all(a <= b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[100] == pytest.approx(1e-6) and lrs[55] == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)


def test_cosine_schedule_is_stepped_per_optimizer_step(synth, tmp_path):
    T.train("deeponet", _cfg(), synth, tmp_path / "r", progress=False)
    ck = load_checkpoint(tmp_path / "r" / "checkpoint_last.pt")
    steps = 3 * math.ceil(128 / 16)
    assert ck["step"] == steps and ck["scheduler"]["last_epoch"] == steps
    hist = (tmp_path / "r" / "history.csv").read_text().splitlines()
    first_lr = float(hist[1].split(",")[3])
    assert first_lr == pytest.approx(3e-3 / round(0.1 * steps))  # the warm-up's first step


# ----------------------------------------------------------------- time budget


def test_plan_fills_the_budget_with_whole_epochs_and_a_last_shorter_one_or_one_short_epoch():
    assert T.plan_budget(100.0, 0.01, 1.0, 0.0, 50, False) == (63, 63 * 50)  # 95 s / 1.5 s per epoch
    # one epoch is longer than the budget: a single epoch cut to the steps that fit
    assert T.plan_budget(10.0, 1.0, 0.5, 0.0, 100, False) == (1, 9)
    # 95 s hold 8 epochs of 11 s; the 7 s left hold a last epoch of 24 steps beside its 1 s validation
    assert T.plan_budget(100.0, 0.25, 1.0, 0.0, 40, False) == (9, 8 * 40 + 24)
    # what is left after the whole epochs is under a tenth of an epoch (4 steps): no last epoch
    assert T.fill(88.0 + 1.0 + 3 * 0.25, 0.25, 1.0, 40) == (8, 8 * 40)  # 3 steps < 4 = a tenth
    assert T.fill(88.0 + 1.0 + 4 * 0.25, 0.25, 1.0, 40) == (9, 8 * 40 + 4)
    assert T.fill(0.5, 0.25, 1.0, 40) == (0, 0)


def test_time_limit_plans_the_run_and_leaves_a_complete_run_folder(synth, tmp_path):
    run = tmp_path / "r"
    m = T.train("deeponet", _cfg(time_limit=0.08, epochs=1000), synth, run, progress=False)
    assert m["status"] in ("completed", "time_limit")
    for name in ("config.yaml", "checkpoint_last.pt", "checkpoint_best.pt", "history.csv", "metrics.json",
                 "loss.png"):  # fmt: skip
        assert (run / name).is_file(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert saved["time_limit"] == 0.08 and 1 <= saved["epochs"] < 1000  # the planned epochs are recorded
    assert saved["max_steps"] == m["max_steps"] > 0
    assert m["test_loss"] is not None and math.isfinite(m["test_loss"])
    assert (
        m["train_seconds"] < 0.08 * 60 + 5
    )  # within the budget (+ one step and the slack of a busy machine)


def test_the_replan_fills_the_rest_of_the_budget_and_records_it(synth, tmp_path, monkeypatch):
    # plan 2 epochs of a 6 s budget, re-plan after the first: the rest is filled with epochs
    monkeypatch.setattr(T, "plan_budget", lambda *a, **k: (2, 2 * 8))
    monkeypatch.setattr(T, "REPLAN_AFTER", 0.0)
    run = tmp_path / "r"
    m = T.train("deeponet", _cfg(time_limit=0.1, epochs=1000), synth, run, progress=False)
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert saved["epochs"] > 2 and saved["max_steps"] > 2 * 8  # stretched to the new end
    assert saved["max_steps"] == m["max_steps"] and saved["epochs"] - 1 <= saved["max_steps"] / 8 <= saved["epochs"]
    if m["status"] == "completed":
        assert m["steps_done"] == saved["max_steps"] and m["epochs_done"] == saved["epochs"]
    assert m["train_seconds"] < 0.1 * 60 + 5


def test_time_limited_stop_resumes_to_the_planned_end(synth, tmp_path, monkeypatch):
    # plan 3 epochs for a budget already spent: the guard ends the run after its first step
    monkeypatch.setattr(T, "plan_budget", lambda *a, **k: (3, 3 * 8))
    run = tmp_path / "r"
    m = T.train("deeponet", _cfg(time_limit=1e-4), synth, run, progress=False)
    assert m["status"] == "time_limit" and m["steps_done"] == 1 and m["epochs_done"] == 1
    assert m["test_loss"] is not None and (run / "checkpoint_best.pt").is_file()
    resumed = T.train("deeponet", None, None, None, resume=run, progress=False)
    assert (
        resumed["status"] == "completed"
        and resumed["epochs_done"] == 3
        and resumed["steps_done"] == 1 + 2 * 8
    )
    with pytest.raises(NHError, match="already completed"):
        T.train("deeponet", None, None, None, resume=run, progress=False)


def test_time_limit_planning_leaves_the_rng_and_the_weights_as_an_explicit_plan(synth, tmp_path, monkeypatch):
    # the timing runs on copies and restores the RNG states: the planned run equals its replay
    monkeypatch.setattr(T, "plan_budget", lambda *a, **k: (2, 12))
    cfg = load_config("deeponet", PAPER_CONFIG_DIR / "deeponet.yaml", {"model": SMALL, "train": {
        "epochs": 1000, "batch_size": 16, "seed": 7, "time_limit": 5.0}})  # fmt: skip
    first = T.train("deeponet", cfg, synth, tmp_path / "a", progress=False)
    assert first["status"] == "completed" and first["steps_done"] == 12 and first["epochs_done"] == 2
    replay = load_config("deeponet", tmp_path / "a" / "config.yaml", {"time_limit": 0.0})
    T.train("deeponet", replay, synth, tmp_path / "b", progress=False)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_epochs_asked_for_cap_the_plan_of_a_time_limit():
    from nh_models.training.budget import cap_epochs

    assert cap_epochs((110, 70289), 1, 639) == (1, 639, True)  # `--epochs 1`: one whole epoch
    assert cap_epochs((110, 70289), None, 639) == (110, 70289, False)
    assert cap_epochs((3, 20), 3, 8) == (3, 20, False)  # the time limit ends the third epoch early
    assert cap_epochs((3, 20), 1000, 8) == (3, 20, False)


def test_the_replan_keeps_the_epochs_asked_for(synth, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "plan_budget", lambda *a, **k: (2, 2 * 8))
    monkeypatch.setattr(T, "REPLAN_AFTER", 0.0)  # re-plans after epoch 1: the 6 s hold many more epochs...
    m = T.train("deeponet", _cfg(time_limit=0.1, epochs=1000), synth, tmp_path / "r", progress=False, max_epochs=3)
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["train"]
    assert (saved["epochs"], saved["max_steps"]) == (3, 3 * 8)  # ...but 3 were asked for
    assert m["status"] == "completed" and m["epochs_done"] == 3


@pytest.mark.parametrize(
    "epochs, timing, plan",
    [  # (s/step, s/validation): 5 minutes hold 2,000+ epochs of 8 steps, or 2
        (["--epochs", "2"], (0.01, 0.05), r"2 epochs, 16 steps; bound by the epochs asked for \(2; the time limit "
                                          r"would allow \d{4}\)"),
        (["--epochs", "1000"], (10.0, 50.0), r"2 epochs, 16 steps; bound by the time limit \(before the 1000 "
                                             r"epochs asked for\)"),
        ([], (10.0, 50.0), r"2 epochs, 16 steps; bound by the time limit"),
    ],
)  # fmt: skip
def test_epochs_typed_beside_a_time_limit_bound_the_run_and_the_plan_line_says_which(
    epochs, timing, plan, synth, tmp_path, monkeypatch
):
    """Issue 24 (1): `--epochs` wins over a recipe's time limit as a cap, the schedule planned for the
    epochs that run; the plan line names what bounds the run. Off a terminal (2): lines, no bar."""
    import re

    monkeypatch.setattr(T, "_time_steps", lambda *a, **k: (*timing, 0.0))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": SMALL, "train": {
        "time_limit": 5.0, "epochs": 1000, "batch_size": 16, "schedule": "cosine", "warmup": 0.1, "seed": 7}}))  # fmt: skip
    res = CliRunner().invoke(nh, ["train", "deeponet", "--config", str(cfg), "--data", str(synth), *epochs,
                                  "--out", str(tmp_path / "runs")])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = Path(res.stdout.splitlines()[0].removeprefix("run folder: "))
    lines = res.stderr.splitlines()
    ms, val = timing[0] * 1e3, timing[1]
    assert re.fullmatch(rf"time limit 5 min: {ms:.1f} ms/step, validation {val:.2f} s -> {plan}", lines[0]), lines[0]
    assert "\r" not in res.stderr
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all(re.search(r"samples/s  ETA \d", line) for line in epoch_lines)
    assert epoch_lines[0].startswith("epoch 1/2 ") and epoch_lines[1].startswith("epoch 2/2 ")
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (saved["epochs"], saved["max_steps"], saved["time_limit"]) == (2, 16, 5.0)
    ck = load_checkpoint(run / "checkpoint_last.pt")
    assert ck["step"] == 16 and ck["scheduler"]["last_epoch"] == 16  # the schedule spans the 2 epochs...
    assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(saved["infimum_lr"])  # ...to its end


# ----------------------------------------------------------------- divergence


def test_exploding_loss_stops_with_one_line_naming_the_epoch(synth, tmp_path, monkeypatch):
    real = T.train_step
    calls = {"n": 0}

    def exploding(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * 1e6 if calls["n"] > 12 else loss  # epoch 2 (8 steps an epoch)

    monkeypatch.setattr(T, "train_step", exploding)
    with pytest.raises(NHError) as err:
        T.train("deeponet", _cfg(), synth, tmp_path / "r", progress=False)
    msg = str(err.value)
    assert (
        "\n" not in msg and "diverged in epoch 2" in msg and "median of the last 5 batch losses" in msg
        and "train.lr" in msg
    )
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["status"] == "diverged"
    assert load_checkpoint(tmp_path / "r" / "checkpoint_last.pt")["epoch"] == 1  # the last good epoch
    assert msg.endswith(f"kept in {tmp_path / 'r'}: config.yaml, history.csv, metrics.json (the reason), "
                        "checkpoint_last.pt (epoch 1, the last good one)")  # fmt: skip
    assert len((tmp_path / "r" / "history.csv").read_text().splitlines()) == 2  # header + epoch 1


def test_a_few_heavy_batches_are_not_a_divergence(synth, tmp_path, monkeypatch):
    """Two batches in five at 1e4x the others (orbits that carry most of the loss) do not stop
    the run: the guard compares medians; a run of them does."""
    real = T.train_step
    calls = {"n": 0}

    def spiky(*args, heavy=(3, 4, 12, 14), **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * 1e4 if calls["n"] in heavy else loss

    monkeypatch.setattr(T, "train_step", spiky)
    metrics = T.train("deeponet", _cfg(), synth, tmp_path / "r", progress=False)
    assert metrics["status"] != "diverged" and calls["n"] >= 16
    calls["n"] = 0
    monkeypatch.setattr(T, "train_step", lambda *a, **k: spiky(*a, heavy=range(11, 30), **k))
    with pytest.raises(NHError, match="diverged in epoch 2: the median of the last 5 batch losses"):
        T.train("deeponet", _cfg(), synth, tmp_path / "r2", progress=False)


@pytest.mark.filterwarnings("ignore:Detected call of")  # the stub takes no optimizer step
def test_non_finite_loss_is_named(synth, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "train_step", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(NHError, match="diverged in epoch 1: the batch loss nan is not finite"):
        T.train("deeponet", _cfg(), synth, tmp_path / "r", progress=False)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_diverging_run_from_the_command_line_is_one_line_exit_2(synth, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "train_step", lambda *a, **k: torch.tensor(float("inf")))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": SMALL, "train": {"epochs": 2, "batch_size": 16}}))
    res = CliRunner().invoke(nh, ["train", "deeponet", "--config", str(cfg), "--data", str(synth), "--out",
                                  str(tmp_path / "runs"), "-q"])  # fmt: skip
    assert res.exit_code == 2
    assert len(res.stderr.splitlines()) == 1 and "diverged in epoch 1" in res.stderr
    # issue 24 (11): a run that diverges in its first epoch keeps what explains it, and says so
    (run,) = (tmp_path / "runs").iterdir()
    assert res.stderr.rstrip().endswith(f"; kept in {run}: config.yaml, history.csv, metrics.json (the reason)")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "history.csv", "metrics.json"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["epochs_done"] == 0
    assert metrics["reason"].startswith("training diverged in epoch 1: the batch loss inf is not finite")
    assert (run / "history.csv").read_text().splitlines() == [
        "epoch,train_loss,val_loss,lr,samples_per_s,seconds"
    ]


# ----------------------------------------------------------------- fresh data


def test_fresh_training_is_deterministic_for_any_number_of_loader_workers(built, tmp_path):
    runs = {}
    for workers in (0, 1):
        cfg = _cfg(fresh=6, fresh_reuse=2, epochs=2, num_workers=workers)
        runs[workers] = T.train("deeponet", cfg, built, tmp_path / f"w{workers}", progress=False)
    a, b = _weights(tmp_path / "w0"), _weights(tmp_path / "w1")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0]["test_loss"] == runs[1]["test_loss"]
    import multiprocessing

    assert not multiprocessing.active_children()  # the fresh-data workers are stopped with the run
    # 6 potentials x 4 orbits, minus rejections, in batches of 16, twice per epoch
    assert runs[0]["steps_done"] == 2 * 2 * 1


def test_fresh_training_needs_a_built_folder(synth, tmp_path):
    with pytest.raises(NHError, match="nh data build"):
        T.train("deeponet", _cfg(fresh=4), synth, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # nothing written before the data is checked


# ----------------------------------------------------------------- DeepONet options


def test_chebyshev_basis_is_the_chebyshev_polynomials_of_the_window():
    t = torch.linspace(0, 2, 57, dtype=torch.float64)
    ref = np.polynomial.chebyshev.chebvander(t.numpy() - 1.0, 11)
    assert np.allclose(chebyshev_basis(t, 12).numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("trunk", ["mlp", "chebyshev"])
def test_shared_grid_and_per_orbit_times_agree(trunk):
    torch.manual_seed(0)
    model = get_model("deeponet", {**SMALL, "trunk": trunk}).double()
    V = torch.rand(5, 100, dtype=torch.float64)
    ic = torch.rand(5, 2, dtype=torch.float64)
    t = torch.linspace(0, 2, 30, dtype=torch.float64).expand(5, 30)
    q1, p1 = model(V, t, ic)  # shared grid: one basis for the batch
    t_per = t.clone()
    t_per[0, 1] += 1e-9  # no longer shared: the per-orbit path
    q3, p3 = model(V, t_per, ic)
    assert torch.allclose(q1[1:], q3[1:], atol=1e-12) and torch.allclose(p1[1:], p3[1:], atol=1e-12)


def test_energy_features_mark_the_allowed_well():
    V = torch.full((1, 100), 2.0, dtype=torch.float64)
    x = torch.linspace(0, 1, 100, dtype=torch.float64)
    V[0] = 2.0 - 8 * torch.sin(2 * math.pi * x).square() * 0.2  # two wells, barrier V = 2 at x = 0.5
    ic = torch.tensor([[0.25, 0.5]], dtype=torch.float64)  # in the left well, below the barrier
    f = energy_features(V, ic)
    E0 = 0.5 * 0.25 + float(np.interp(0.25, x.numpy(), V[0].numpy()))
    assert f[0, 100].item() == pytest.approx(E0, abs=1e-12)
    allowed = f[0, :100] > 0
    kin = E0 - V[0]
    assert torch.all(allowed[:50] == (kin[:50] >= 0))  # the left well is the allowed interval
    assert not allowed[50:].any()  # the right well is reachable in energy, not from q0
    assert torch.allclose(f[0, :100].abs(), kin.abs().sqrt())


def test_energy_features_of_a_blown_up_state_are_nan_not_an_error():
    V = torch.rand(3, 100)
    ic = torch.tensor([[float("nan"), 0.0], [float("inf"), 1.0], [0.5, float("inf")]])
    f = energy_features(V, ic)
    assert f.shape == (3, 101) and not torch.isfinite(f[:, 100]).any()
    model = get_model("deeponet", SMALL)
    q, _ = model(V, torch.rand(3, 5) * 2, ic)
    assert not torch.isfinite(q).all(axis=1).any()


def test_bad_deeponet_option_is_named():
    with pytest.raises(NHError, match="DeepONetConfig.trunk must be one of mlp, chebyshev"):
        get_model("deeponet", {"trunk": "fourier"})


# TraONet and FNO share the sensor-input and output options (models.base.sensor_inputs)
DECODER_SMALL = {
    "traonet": {"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 16},
    "fno": {"d_model": 16, "fourier_layers": 1, "modes": 4, "nhead": 2, "decoder_layers": 1, "dim_feedforward": 16},
}


@pytest.mark.parametrize("name", sorted(DECODER_SMALL))
def test_energy_features_and_scaling_for_the_transformer_decoders(name):
    torch.manual_seed(0)
    small = DECODER_SMALL[name]
    plain = get_model(name, small)
    model = get_model(name, {**small, "features": "energy", "scale": True})
    # one more input channel per sensor and E0 beside (q0, p0): the only new weights
    assert model.num_parameters() - plain.num_parameters() == small["d_model"] * 2
    V = torch.rand(4, 100) * 2 - 1
    t, ic = torch.rand(4, 7) * 2, torch.rand(4, 2) * 0.2 + torch.tensor([0.4, 0.0])
    q, p = model(V, t, ic)
    assert q.shape == p.shape == (4, 7) and torch.isfinite(q).all() and torch.isfinite(p).all()
    (q.square().mean() + p.square().mean()).backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in model.parameters())
    # scale: the raw outputs are mapped by the fixed constants (zeroed head: q = 0.5, p = 0)
    for module in (model, plain):
        torch.nn.init.zeros_(module.decoder.head.weight)
        torch.nn.init.zeros_(module.decoder.head.bias)
    with torch.no_grad():
        q, p = model(V, t, ic)
        q0, p0 = plain(V, t, ic)
    assert torch.allclose(q, torch.full_like(q, 0.5)) and torch.allclose(p, torch.zeros_like(p))
    assert torch.equal(q0, torch.zeros_like(q0))


def test_the_sensor_channels_are_what_the_options_say():
    from nh_models.models.base import input_widths, sensor_inputs

    V = torch.linspace(-1, 1, 100).unsqueeze(0).repeat(2, 1)
    ic = torch.tensor([[0.5, 0.0], [0.5, 1.0]])
    x, cond = sensor_inputs(V, ic, "energy", False)
    assert x.shape == (2, 100, 2) and cond.shape == (2, 3)
    assert input_widths("energy") == (x.shape[-1], cond.shape[1])
    assert torch.equal(x[..., 0], V) and torch.equal(x[..., 1], energy_features(V, ic)[:, :100])
    assert torch.allclose(cond[:, 2], 0.5 * ic[:, 1] ** 2 + 0.5 * (V[:, 49] + V[:, 50]), atol=1e-2)
    x, cond = sensor_inputs(V, ic, "sensors", True)
    assert x.shape == (2, 100, 1) and torch.equal(cond, ic)
    assert input_widths("sensors") == (x.shape[-1], cond.shape[1])


@pytest.mark.parametrize("name", sorted(DECODER_SMALL))
def test_bad_sensor_option_is_named(name):
    cls = {"traonet": "TraONetConfig", "fno": "FNOConfig"}[name]
    with pytest.raises(NHError, match=f"{cls}.features must be one of sensors, energy, got 'grid'"):
        get_model(name, {**DECODER_SMALL[name], "features": "grid"})
    with pytest.raises(NHError, match=f"{cls}.scale must be true or false, got 'yes'"):
        get_model(name, {**DECODER_SMALL[name], "scale": "yes"})


# ----------------------------------------------------------------- configs and presets


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_recommended_and_paper_configs_ship_in_the_package(name):
    assert (CONFIG_DIR / f"{name}.yaml").is_file()
    # the paper's configuration for its five networks; none for SympONet (not a network of the paper)
    assert (PAPER_CONFIG_DIR / f"{name}.yaml").is_file() == (name in PAPER_MODEL_NAMES)
    assert CONFIG_DIR.parent.name == "nh_models"  # found from any folder, not only the repository
    assert load_config(name)["model"] == load_config(name, CONFIG_DIR / f"{name}.yaml")["model"]


def test_recommended_deeponet_is_the_measured_recipe():
    cfg = load_config("deeponet")
    assert cfg["model"]["trunk"] == "chebyshev" and cfg["model"]["features"] == "energy"
    assert cfg["train"]["schedule"] == "cosine" and cfg["train"]["time_limit"] == 10.0
    assert cfg["train"]["fresh"] > 0


@pytest.mark.parametrize(
    "preset, ic, sizes",
    [
        ("normal", "wall", {"train": 8000, "val": 2000, "test": 4000}),
        ("more", "wall", {"train": 80000, "val": 20000, "test": 40000}),
        ("normal", "strata", {"train": 4000, "val": 1000, "test": 5000}),
    ],
)
def test_presets_give_the_papers_split_sizes(preset, ic, sizes):
    assert resolve_config(preset=preset, ic=ic)["potentials"] == sizes


# ----------------------------------------------------------------- nh train without --data


def test_nh_train_without_data_uses_parquet_data_normal(built, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(built, tmp_path / "parquet_data" / "normal")
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": SMALL, "train": {"epochs": 1, "batch_size": 16}}))
    res = CliRunner().invoke(nh, ["train", "deeponet", "--config", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    run = Path(res.stdout.splitlines()[0].removeprefix("run folder: "))
    ck = load_checkpoint(run / "checkpoint_last.pt")
    assert Path(ck["data_dir"]) == (tmp_path / "parquet_data" / "normal").resolve()


def test_nh_train_without_data_and_no_default_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(nh, ["train", "mambonet"])
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1
    assert "`nh data build --preset normal`" in res.stderr and not (tmp_path / "runs").exists()


def test_corrupt_dataset_leaves_no_run_folder(built, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(built, data)
    shard = next(data.glob("val-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    res = CliRunner().invoke(nh, ["train", "deeponet", "--data", str(data), "--out", str(tmp_path / "runs"),
                                  "--epochs", "1", "--fresh", "0", "-q"])  # fmt: skip
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_wall_starts_are_their_own_stratum():
    from nh_models.evaluation import WALL, stratum_labels

    assert list(stratum_labels(np.array([0.0, 0.06]))) == [WALL, "[0.05,0.35)"]  # u = 0: a wall start
