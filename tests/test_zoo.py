"""Pretrained operators shipped with the package (issue 22, part 1): every entry loads, predicts
on `sho` and reproduces its card's loss on the shipped test sample; a damaged weights file is
refused in one line; an exported run loads back with the same predictions; the zoo stays small."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_data.errors import NHError
from nh_models import load_pretrained, zoo
from nh_models.evaluation.predictors import model_predictor
from nh_models.inference.predict import load_predictor_run
from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

REQUIRED = ("deeponet-strata", "deeponet-wall", "fno-strata", "symponet-strata", "symponet-fast")
TINY = {"model": {"nodes": 16, "layers": 2, "branches": 4}, "train": {"epochs": 2, "batch_size": 32, "lr": 3e-3}}


def test_the_zoo_ships_the_required_entries_under_its_size_limit():
    assert set(REQUIRED) <= set(zoo.names())
    assert zoo.zoo_bytes() < zoo.MAX_ZOO_BYTES
    # the strata entries carry bands for 10 chained windows (nh predict to t = 20)
    assert all(zoo.card(n)["calibration"].get("windows") == 10 for n in REQUIRED)
    assert set(zoo.recipes()) >= set(REQUIRED)  # each can be built again


@pytest.mark.parametrize("name", REQUIRED)
def test_entry_reproduces_its_card_on_the_shipped_sample(name):
    model, cal, meta = load_pretrained(name)
    c = meta["card"]
    assert meta["model_name"] == c["model_name"] == model.name
    sample = zoo.load_sample(zoo.data_name(c["data"]))
    assert sample["V"].shape == (zoo.SAMPLE_ORBITS, 100)
    loss = zoo.mean_loss(model, sample)
    np.testing.assert_allclose(loss, c["metrics"]["sample_loss"], rtol=1e-5)
    # a sample of 256 orbits of a heavy-tailed loss: within two orders of the whole split's
    assert 0.01 < c["metrics"]["sample_loss"] / c["metrics"]["test_loss"] < 100
    assert cal is not None and cal.scores["all"].size > 100  # calibrated bands ship with it


@pytest.mark.parametrize("name", REQUIRED)
def test_entry_predicts_on_sho_with_its_band(name, tmp_path):
    out = tmp_path / "sho.csv"
    r = CliRunner().invoke(nh, ["predict", "--model", name, "--potential", "sho", "--ic", "0.3,0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "band at 0.9" in r.output
    rows = np.genfromtxt(out, delimiter=",", names=True)
    assert np.all(np.isfinite(rows["q"])) and np.all(np.isfinite(rows["p"]))
    assert abs(rows["q"][0] - 0.3) < 0.05 and np.all(rows["q_lo"] <= rows["q_hi"])


def _copy_entry(name: str, dst):
    dst.mkdir()
    for f in (f"{name}{zoo.CARD}", f"{name}.safetensors"):
        shutil.copy(zoo.ZOO_DIR / f, dst / f)
    return dst


def test_a_flipped_byte_or_a_truncated_file_is_refused(tmp_path):
    name = "symponet-fast"
    z = _copy_entry(name, tmp_path / "zoo")
    load_pretrained(name, zoo_dir=z)  # intact: loads
    w = z / f"{name}.safetensors"
    raw = bytearray(w.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    w.write_bytes(bytes(raw))
    with pytest.raises(NHError, match="modified or damaged"):
        load_pretrained(name, zoo_dir=z)
    w.write_bytes(bytes(raw[:-7]))
    with pytest.raises(NHError, match="truncated"):
        load_pretrained(name, zoo_dir=z)
    w.unlink()
    with pytest.raises(NHError, match="missing"):
        load_pretrained(name, zoo_dir=z)


def test_unknown_names_are_one_line_errors():
    with pytest.raises(NHError, match="no pretrained model 'nope'; shipped: .*deeponet-strata"):
        load_pretrained("nope")
    r = CliRunner().invoke(nh, ["predict", "--model", "nope", "--potential", "sho", "--ic", "0.3,0"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "no pretrained model 'nope'" in r.output
    r = CliRunner().invoke(nh, ["predict", "--potential", "sho", "--ic", "0.3,0"])
    assert r.exit_code == 2 and "either a RUN folder or --model NAME" in r.output
    r = CliRunner().invoke(nh, ["eval"])
    assert r.exit_code == 2 and "--model NAME" in r.output


def test_nh_models_lists_every_entry():
    r = CliRunner().invoke(nh, ["models"])
    assert r.exit_code == 0, r.output
    for name in REQUIRED:
        assert name in r.output
    assert "test loss" in r.output and "MB" in r.output


def test_an_exported_run_loads_back_as_an_entry(tmp_path):
    """export_run -> load_pretrained: the same predictions as the run folder, a verified card."""
    write_synthetic_dataset(tmp_path / "data", n_train=128, n_val=64, n_test=16, seed=5)
    train("deeponet", TINY, tmp_path / "data", tmp_path / "run", progress=False)
    rec = zoo.Recipe(name="tiny", model="deeponet", config="deeponet_small", seed=0, time_limit=0.1,
                     data={"preset": "normal", "ic": "strata", "times": "random", "seed": 5})  # fmt: skip
    entry = zoo.export_run(tmp_path / "run", rec, tmp_path / "data", tmp_path / "zoo")
    assert entry["weights"]["sha256"] == zoo.sha256_file(tmp_path / "zoo" / "tiny.safetensors")
    assert entry["metrics"]["test_orbits"] == 16 and entry["calibration"] is not None
    assert json.loads(gzip.decompress((tmp_path / "zoo" / f"tiny{zoo.CARD}").read_bytes()))["name"] == "tiny"
    model, cal, _ = load_pretrained("tiny", zoo_dir=tmp_path / "zoo")
    run_model, run_cal, _ = load_predictor_run(tmp_path / "run")
    rng = np.random.default_rng(0)
    V = rng.uniform(0, 2, (3, 100))
    t = np.sort(rng.uniform(0, 2, (3, 100)), axis=1)
    ic = rng.uniform(0, 1, (3, 2))
    a, b = model_predictor(model)(V, t, ic), model_predictor(run_model)(V, t, ic)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(cal.scores["all"], run_cal.scores["all"])


def test_nh_eval_takes_a_pretrained_entry_like_a_run(tiny_dataset, tmp_path):
    out = tmp_path / "eval"
    r = CliRunner().invoke(nh, ["eval", "--model", "deeponet-strata", "--data", str(tiny_dataset), "--physics", "sho",
                                "--max-test", "8", "--n-sub", "4", "--out", str(out), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    (label,) = metrics["runs"]
    assert label == "zoo:deeponet-strata" and metrics["runs"][label]["model"] == "deeponet"
    assert metrics["runs"][label]["test"]["overall"]["loss"] > 0
    assert "coverage" in metrics["runs"][label]  # its shipped calibration gives bands


def test_source_reads_zoo_names_back_and_leaves_run_folders():
    """`zoo.source` is the inverse of `str(Pretrained)`; anything else is a run folder."""
    entry = zoo.Pretrained("symponet-fast")
    assert zoo.source(str(entry)) == entry
    assert zoo.source("runs/zoo-like/symponet-1") == "runs/zoo-like/symponet-1"
