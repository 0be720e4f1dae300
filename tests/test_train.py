"""The trainer: schedule, loss, run folder, checkpoints, resume, small configs, config layering."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from synthetic import write_synthetic_dataset

import nh_models.training.trainer as T
from nh_data.errors import NHError
from nh_models.data import ShardDataset
from nh_models.models import get_model
from nh_models.training.checkpoint import (
    digest,
    load_checkpoint,
    load_run,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from nh_models.training.config import CONFIG_DIR, TRAIN_KEYS, load_config, resolve_config
from nh_models.training.schedules import ExpHyperbolicLR, exp_hyperbolic_lr
from nh_models.training.steps import evaluate, per_sample_loss
from nh_models.training.trainer import train

TINY_TRAONET = {"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 32, "dropout": 0.1}
TINY_DEEPONET = {"nodes": 16, "layers": 2, "branches": 4}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    write_synthetic_dataset(d, n_train=128, n_val=32, n_test=32, seed=11)
    return d


def _cfg(model: dict, **train) -> dict:
    return {"model": dict(model), "train": {"epochs": 4, "batch_size": 32, "lr": 3e-3, "seed": 7, **train}}


# ----------------------------------------------------------------- schedule and loss


def test_exp_hyperbolic_lr_closed_form():
    init, inf, N, U = 1e-2, 1e-5, 250, 300
    h0 = math.sqrt(N / U * (2 - N / U))
    assert exp_hyperbolic_lr(0, init, inf, N, U) == pytest.approx(init, rel=1e-15)
    assert exp_hyperbolic_lr(N, init, inf, N, U) == pytest.approx(init * (inf / init) ** h0, rel=1e-12)
    assert exp_hyperbolic_lr(N, init, inf, N, N) == pytest.approx(inf, rel=1e-12)  # U = N reaches the floor
    # x = 125 by hand: h = sqrt(125/300 * (2 - 375/300)) = sqrt(0.3125)
    assert exp_hyperbolic_lr(125, init, inf, N, U) == pytest.approx(init * 1e3 ** (math.sqrt(0.3125) - h0))
    lrs = [exp_hyperbolic_lr(x, init, inf, N, U) for x in range(N + 1)]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] >= inf


def test_scheduler_follows_the_closed_form_and_round_trips():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=7.3e-3)
    sched = ExpHyperbolicLR(opt, max_iter=20, infimum_lr=1e-5)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([exp_hyperbolic_lr(x, 7.3e-3, 1e-5, 20, 300) for x in range(20)], rel=1e-14)
    opt2 = torch.optim.AdamW([p], lr=7.3e-3)
    sched2 = ExpHyperbolicLR(opt2, max_iter=20, infimum_lr=1e-5)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.last_epoch == 20
    with pytest.raises(NHError, match="upper_bound >= max_iter"):
        ExpHyperbolicLR(opt, max_iter=400, infimum_lr=1e-5, upper_bound=300)


def test_loss_is_half_the_sum_of_the_mses():
    g = torch.Generator().manual_seed(0)
    q_hat, p_hat, q, p = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(4))
    expected = 0.5 * (torch.nn.functional.mse_loss(q_hat, q) + torch.nn.functional.mse_loss(p_hat, p))
    assert per_sample_loss(q_hat, p_hat, q, p).mean().item() == pytest.approx(expected.item(), rel=1e-14)


# ----------------------------------------------------------------- a run and its folder


def test_run_folder_contents(tiny, tmp_path):
    run = tmp_path / "run"
    calls = []
    metrics = train(
        "deeponet",
        _cfg(TINY_DEEPONET),
        tiny,
        run,
        progress=False,
        epoch_callback=lambda e, v: calls.append((e, v)),
    )
    names = {
        "config.yaml",
        "checkpoint_last.pt",
        "checkpoint_best.pt",
        "history.csv",
        "metrics.json",
        "loss.png",
    }
    assert names <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # atomic writes leave nothing behind

    config = load_config("deeponet", run / "config.yaml")  # the saved config reads back
    assert config == resolve_config("deeponet", _cfg(TINY_DEEPONET))

    rows = list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "lr", "samples_per_s", "seconds"]
    val = [float(r["val_loss"]) for r in rows]
    assert calls == [(i + 1, v) for i, v in enumerate(val)]
    assert float(rows[0]["lr"]) == 3e-3 and float(rows[1]["lr"]) < 3e-3

    saved = json.loads((run / "metrics.json").read_text())
    assert saved == metrics
    assert metrics["status"] == "completed" and metrics["epochs_done"] == 4
    assert metrics["final_val_loss"] == val[-1]
    assert metrics["best_val_loss"] == min(val) and metrics["best_epoch"] == 1 + int(np.argmin(val))
    assert metrics["num_parameters"] == sum(
        p.numel() for p in get_model("deeponet", TINY_DEEPONET).parameters()
    )
    assert metrics["samples_per_s"] > 0 and metrics["world_size"] == 1

    # test loss = the best checkpoint evaluated on the test split
    model, _ = load_run(run, "best")
    assert model.training is False
    ref = evaluate(model, ShardDataset(tiny, "test"), batch_size=7, device=torch.device("cpu"))
    assert metrics["test_loss"] == pytest.approx(ref, rel=1e-6)
    assert load_checkpoint(run / "checkpoint_best.pt")["epoch"] == metrics["best_epoch"]
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with pytest.raises(NHError, match="already holds a run"):
        train("deeponet", _cfg(TINY_DEEPONET), tiny, run, progress=False)


def test_training_without_the_test_pass_leaves_test_loss_empty(tiny, tmp_path, monkeypatch):
    """`test=False` (bench/accuracy.py scores the test split itself): no pass over the test split."""
    seen = []
    real = T.evaluate
    monkeypatch.setattr(T, "evaluate", lambda model, ds, **kw: seen.append(ds.split) or real(model, ds, **kw))
    run = tmp_path / "run"
    metrics = train("deeponet", _cfg(TINY_DEEPONET, epochs=2), tiny, run, progress=False, test=False, calibrate=False)
    assert metrics["test_loss"] is None and metrics["status"] == "completed"
    assert not (run / "calibration.json").exists()
    assert seen == ["val", "val"] and metrics["torch_threads"] == torch.get_num_threads()


def test_checkpoint_rebuilds_the_model_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = get_model("traonet", TINY_TRAONET).eval()
    cfg = resolve_config("traonet", {"model": TINY_TRAONET})
    save_checkpoint(
        tmp_path / "checkpoint_best.pt",
        {"model_name": "traonet", "config": cfg, "model": model.state_dict(), "epoch": 0},
    )
    raw = torch.load(tmp_path / "checkpoint_best.pt", weights_only=True)  # plain data only
    assert raw["format"] == "nh-checkpoint" and raw["digest"] == digest(raw)
    rebuilt, config = load_run(tmp_path)
    assert config == cfg and rebuilt.name == "traonet"
    g = torch.Generator().manual_seed(1)
    V, t, ic = (
        torch.randn(6, 100, generator=g),
        torch.rand(6, 100, generator=g) * 2,
        torch.randn(6, 2, generator=g),
    )
    with torch.no_grad():
        for a, b in zip(model(V, t, ic), rebuilt(V, t, ic), strict=True):
            assert torch.equal(a, b)


def test_rng_states_round_trip_as_plain_data(tmp_path):
    import random

    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = rng_state()
    save_checkpoint(
        tmp_path / "c.pt", {"model_name": "x", "config": {}, "model": {}, "epoch": 0, "rng": state}
    )
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


# ----------------------------------------------------------------- damaged checkpoints


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "checkpoint_last.pt"
    torch.manual_seed(0)
    model = get_model("deeponet", TINY_DEEPONET)
    save_checkpoint(
        path,
        {
            "model_name": "deeponet",
            "config": resolve_config("deeponet", {"model": TINY_DEEPONET}),
            "model": model.state_dict(),
            "epoch": 1,
        },
    )
    return path


def _one_line_error(path: Path, match: str) -> None:
    with pytest.raises(NHError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_checkpoint(good_ckpt, tmp_path):
    data = good_ckpt.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        _one_line_error(bad, "corrupt or truncated")


def test_tampered_weights_are_caught_by_the_digest(good_ckpt, tmp_path):
    ckpt = load_checkpoint(good_ckpt)
    ckpt["model"]["bias"] = ckpt["model"]["bias"] + 1.0  # re-saved by plain torch.save: a valid zip
    bad = tmp_path / "edited.pt"
    torch.save(ckpt, bad)
    _one_line_error(bad, r"modified or damaged \(digest mismatch\)")
    # a byte flipped inside a stored tensor: a CRC or digest failure, never a silent load
    data = bytearray(good_ckpt.read_bytes())
    with zipfile.ZipFile(good_ckpt) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size >= 16)
    n_name, n_extra = np.frombuffer(bytes(data[info.header_offset + 26 : info.header_offset + 30]), "<u2")
    start = info.header_offset + 30 + int(n_name) + int(n_extra)  # the stored (uncompressed) tensor bytes
    data[start + 5] ^= 0xFF
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(data))
    with pytest.raises(NHError, match=str(flipped)):
        load_checkpoint(flipped)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_in_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "nh-checkpoint", "payload": _Evil()}, bad)
    _one_line_error(bad, "corrupt or truncated")
    pickled = tmp_path / "pickle.pt"
    pickled.write_bytes(pickle.dumps(_Evil()))
    _one_line_error(pickled, "corrupt or truncated")


def test_foreign_files(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(NHError, match="is not a Neural Hamilton checkpoint"):
        load_checkpoint(other)
    with pytest.raises(NHError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(NHError, match="run folder .* does not exist"):
        load_run(tmp_path / "no_run")
    with pytest.raises(NHError, match="has no checkpoint_best.pt"):
        load_run(tmp_path)


# ----------------------------------------------------------------- resume


class _Stop(Exception):
    pass


def _stop_after(k: int):
    def callback(epoch: int, val_loss: float) -> None:
        if epoch == k:
            raise _Stop(f"killed after epoch {epoch}")

    return callback


def test_resume_is_bit_identical_to_an_uninterrupted_run(tiny, tmp_path):
    """TraONet with dropout: the RNG states must be restored too, or the weights differ."""
    cfg = _cfg(TINY_TRAONET, epochs=4)
    full = train("traonet", cfg, tiny, tmp_path / "full", progress=False)

    with pytest.raises(_Stop):
        train("traonet", cfg, tiny, tmp_path / "cut", progress=False, epoch_callback=_stop_after(2))
    stopped = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert stopped["status"] == "stopped" and stopped["epochs_done"] == 2
    assert load_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["epoch"] == 2

    resumed = train("traonet", None, None, None, resume=tmp_path / "cut", progress=False)
    a = load_checkpoint(tmp_path / "full" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for s, ref in a["optimizer"]["state"].items():
        assert all(torch.equal(ref[n], b["optimizer"]["state"][s][n]) for n in ref)
    assert [r["val_loss"] for r in a["history"]] == [r["val_loss"] for r in b["history"]]
    assert resumed["best_val_loss"] == full["best_val_loss"] and resumed["test_loss"] == full["test_loss"]

    with pytest.raises(NHError, match="already completed 4/4 epochs"):
        train("traonet", None, None, None, resume=tmp_path / "cut", progress=False)


def test_resume_refusals(tiny, tmp_path):
    cfg = _cfg(TINY_DEEPONET, epochs=3)
    with pytest.raises(_Stop):
        train("deeponet", cfg, tiny, tmp_path / "r", progress=False, epoch_callback=_stop_after(1))
    with pytest.raises(NHError, match="trained 'deeponet', not 'traonet'"):
        train("traonet", None, None, None, resume=tmp_path / "r", progress=False)
    with pytest.raises(NHError, match=r"these values differ: train\.epochs"):
        train("deeponet", _cfg(TINY_DEEPONET, epochs=5), None, None, resume=tmp_path / "r", progress=False)
    with pytest.raises(NHError, match="run folder .* does not exist"):
        train("deeponet", None, None, None, resume=tmp_path / "nothing", progress=False)


# ----------------------------------------------------------------- bf16 and torch.compile


def test_bf16_autocast_runs_the_matmuls_in_bfloat16(tiny):
    """train_step(bf16=True): the layers compute in bfloat16, the weights and the loss stay float32."""
    from nh_models.training.steps import train_step

    torch.manual_seed(0)
    model = get_model("deeponet", TINY_DEEPONET)
    seen = []
    model.branch_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = ShardDataset(tiny, "train")[list(range(16))]
    loss = train_step(model, model, batch, opt, grad_clip=1.0, bf16=True)
    assert seen == [torch.bfloat16]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 and p.grad is not None for p in model.parameters())


def test_bf16_and_compile_train_on_cpu_like_eager_float32(tiny, tmp_path):
    """`bf16: true` and `compile: true` (meant for CUDA) also run on CPU: the losses follow the
    float32 eager run, and the checkpoint holds the bare model's weights (no compile prefix)."""
    ref = train("deeponet", _cfg(TINY_DEEPONET, epochs=2), tiny, tmp_path / "ref", progress=False)
    bf = train("deeponet", _cfg(TINY_DEEPONET, epochs=2, bf16=True), tiny, tmp_path / "bf16", progress=False)
    comp = train("deeponet", _cfg(TINY_DEEPONET, epochs=2, compile=True), tiny, tmp_path / "c", progress=False)
    assert bf["final_val_loss"] == pytest.approx(ref["final_val_loss"], rel=0.05)
    assert comp["final_val_loss"] == pytest.approx(ref["final_val_loss"], rel=1e-3)
    state = load_checkpoint(tmp_path / "c" / "checkpoint_last.pt")["model"]
    assert set(state) == set(get_model("deeponet", TINY_DEEPONET).state_dict())
    model, _ = load_run(tmp_path / "c")
    test = evaluate(model, ShardDataset(tiny, "test"), batch_size=32, device=torch.device("cpu"))
    assert test == pytest.approx(comp["test_loss"], rel=1e-6)


def test_compile_without_a_cpu_compiler_is_one_clear_error(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("nh_models.training.steps.shutil.which", lambda name: None)
    with pytest.raises(NHError, match=r"^compile: true on CPU needs a C\+\+ compiler"):
        train("deeponet", _cfg(TINY_DEEPONET, compile=True), tiny, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


# ----------------------------------------------------------------- the small configs learn


def test_deeponet_small_reduces_validation_loss_tenfold(tmp_path, untrained_val_loss):
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_train=2000, n_val=500, n_test=0, seed=0)
    cfg = load_config("deeponet", CONFIG_DIR / "deeponet_small.yaml")
    untrained = untrained_val_loss("deeponet", cfg, data, batch_size=500)
    metrics = train("deeponet", cfg, data, tmp_path / "run", progress=False)
    assert metrics["best_val_loss"] * 10 <= untrained, (untrained, metrics["best_val_loss"])


# ----------------------------------------------------------------- configs


def test_config_layers_and_errors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  nodes: 32\ntrain:\n  lr: 1e-3\n  epochs: 7\n")  # 1e-3 is a string to PyYAML
    cfg = load_config("deeponet", f, {"epochs": 9, "batch_size": None, "model": {"branches": 3}})
    assert cfg["model"] == {"nodes": 32, "layers": 3, "branches": 3, "trunk": "mlp", "features": "sensors",
                            "scale": False}  # the rest: the paper's defaults  # fmt: skip
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["epochs"] == 9 and cfg["train"]["batch_size"] == 100
    assert set(cfg["train"]) == set(TRAIN_KEYS)
    # the paper's tuned learning rate of SPEC section 8; the recommended recipe's is its own
    assert load_config("traonet", CONFIG_DIR / "paper" / "traonet.yaml")["train"]["lr"] == 1.5e-3
    assert load_config("traonet")["train"]["lr"] == 1e-3

    f.write_text("train:\n  epoch: 3\n")
    with pytest.raises(NHError, match="unknown train key 'epoch'; valid keys: epochs, batch_size, lr"):
        load_config("deeponet", f)
    f.write_text("model:\n  width: 3\n")
    with pytest.raises(
        NHError, match="unknown deeponet config key 'width'; valid keys: nodes, layers, branches"
    ):
        load_config("deeponet", f)
    f.write_text("optimizer: {}\n")
    with pytest.raises(NHError, match="unknown section 'optimizer'"):
        load_config("deeponet", f)
    f.write_text("model: [1, 2\n")
    with pytest.raises(NHError, match="not valid YAML"):
        load_config("deeponet", f)
    with pytest.raises(NHError, match="unknown config key 'nodez'"):
        load_config("deeponet", None, {"nodez": 3})
    with pytest.raises(NHError, match="infimum_lr .* must be smaller than train.lr"):
        resolve_config("deeponet", {"train": {"lr": 1e-6}})
    with pytest.raises(NHError, match="train.dtype must be one of float32, float64"):
        resolve_config("deeponet", {"train": {"dtype": "float16"}})
    with pytest.raises(NHError, match="train.epochs must be an integer >= 1"):
        resolve_config("deeponet", {"train": {"epochs": 0}})
    with pytest.raises(NHError, match="does not exist"):
        load_config("deeponet", tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*_small.yaml")), ids=lambda p: p.stem)
def test_small_configs_are_complete_and_valid(path):
    data = yaml.safe_load(path.read_text())
    assert set(data) == {"model", "train"} and set(data["train"]) == set(TRAIN_KEYS)
    name = path.stem.split("_")[0]  # MODEL_small, MODEL_fast_small
    cfg = load_config(name, path)
    assert cfg["model"] == {**cfg["model"], **data["model"]}


def test_same_seed_same_weights_with_or_without_loader_workers(tiny, tmp_path):
    runs = {}
    for workers in (0, 2):
        cfg = _cfg(TINY_DEEPONET, epochs=1, num_workers=workers)
        train("deeponet", cfg, tiny, tmp_path / f"w{workers}", progress=False)
        runs[workers] = load_checkpoint(tmp_path / f"w{workers}" / "checkpoint_last.pt")
    for k, v in runs[0]["model"].items():
        assert torch.equal(v, runs[2]["model"][k]), k
    assert [r["val_loss"] for r in runs[0]["history"]] == [r["val_loss"] for r in runs[2]["history"]]
