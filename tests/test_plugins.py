"""Models of the user's own (issue 22): registered by `register_model` or an entry point, then trained,
evaluated, tuned and benchmarked like a built-in one; a checkpoint without its plug-in is a one-line error."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from benches import load_bench
from click.testing import CliRunner
from synthetic import write_synthetic_dataset
from torch import nn

from cli import nh
from nh_data.errors import NHError
from nh_models import OperatorModel, get_model, load_config, model_names, register_model
from nh_models.models import ENTRY_POINT_GROUP, plugins

accuracy = load_bench("accuracy")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@dataclass
class TinyConfig:
    width: int = 4


class Tiny(OperatorModel):
    """(V, q0, p0) -> two numbers per orbit, spread over t linearly: q = q0 + a t, p = p0 + b t."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.net = nn.Sequential(nn.Linear(102, config.width), nn.Tanh(), nn.Linear(config.width, 2))

    def _forward(self, V, t, ic):
        ab = self.net(torch.cat([V, ic], dim=1))  # (B, 2)
        return ic[:, :1] + ab[:, :1] * t, ic[:, 1:] + ab[:, 1:] * t


DEFAULTS = {"model": {"width": 3}, "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "infimum_lr": 1e-5}}
PLUGIN_FILE = """
from dataclasses import dataclass
import torch
from nh_models import OperatorModel, register_model

@dataclass
class Cfg:
    width: int = 2

class Lin(OperatorModel):
    def __init__(self, config):
        super().__init__(config)
        self.lin = torch.nn.Linear(102, 2)

    def _forward(self, V, t, ic):
        ab = self.lin(torch.cat([V, ic], dim=1))
        return ic[:, :1] + ab[:, :1] * t, ic[:, 1:] + ab[:, 1:] * t

def register():
    register_model("{name}", Lin, Cfg, default_config={{"train": {{"epochs": 1, "batch_size": 16}}}},
                   tune_space="{space}")

{call}
"""
SPACE = "train:\n  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"


def _installed(monkeypatch, eps: list) -> None:
    """Make `eps` the installed entry points of ENTRY_POINT_GROUP (other groups unchanged: Numba's)."""
    real = importlib.metadata.entry_points

    def entry_points(**kw):
        return (
            [e for e in eps if e.group == kw["group"]] if kw.get("group") == ENTRY_POINT_GROUP else real(**kw)
        )

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


@pytest.fixture
def registry(monkeypatch):
    """An empty plug-in registry and no installed entry points, restored after the test."""
    monkeypatch.setattr(plugins, "_PLUGINS", {})
    _installed(monkeypatch, [])
    yield
    for name in ("nh_plugin_file", "nh_plugin_ep"):  # the modules the tests import
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plugin_data")
    write_synthetic_dataset(d, n_train=64, n_val=16, n_test=16, seed=3)
    return d


def _plugin_file(folder: Path, name: str, module: str, call: str) -> Path:
    (folder / "space.yaml").write_text(SPACE)
    text = PLUGIN_FILE.format(name=name, space=folder / "space.yaml", call=call)
    path = folder / f"{module}.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_register_model_checks_its_arguments(registry):
    register_model("tiny", Tiny, TinyConfig)
    register_model("tiny", Tiny, TinyConfig)  # the same class again: a no-op

    class Other(Tiny):
        pass

    @dataclass
    class NeedsArg:
        width: int

    cases = [
        (("deeponet", Tiny, TinyConfig), {}, "'deeponet' is a built-in model"),
        (("tiny", Other, TinyConfig), {}, "the name is taken by"),
        (("bad name", Tiny, TinyConfig), {}, "a model name is a letter"),
        (("x", nn.Linear, TinyConfig), {}, "model_class must be a subclass of nh_models.OperatorModel"),
        (("x", Tiny, dict), {}, "config_class must be a dataclass"),
        (("x", Tiny, NeedsArg), {}, "NeedsArg() must build with no arguments"),
        (("x", Tiny, TinyConfig), {"default_config": {"optim": {}}}, "sections model, train"),
        (("x", Tiny, TinyConfig), {"default_config": "nowhere.yaml"}, "default_config file 'nowhere.yaml'"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(NHError, match=message.replace("(", r"\(").replace(")", r"\)")):
            register_model(*args, **kwargs)
    assert model_names()[-1] == "tiny" and get_model("tiny").name == "tiny"
    with pytest.raises(
        NHError, match=r"unknown model 'nonet'; valid models: .*, tiny \(a model of your own: --plugin"
    ):
        get_model("nonet")


def test_registered_model_trains_evaluates_and_runs_in_the_accuracy_benchmark(registry, data, tmp_path):
    register_model("tiny", Tiny, TinyConfig, default_config=DEFAULTS)
    cfg = load_config("tiny")  # the registered default config, like configs/MODEL.yaml of a built-in
    assert cfg["model"] == {"width": 3} and cfg["train"]["batch_size"] == 16

    out = tmp_path / "acc"
    specs = accuracy.plan_runs(["tiny"], {"recommended": [5], "paper": [5]}, 0.01, out)  # no paper recipe
    assert [(s.model, s.recipe, s.seed, s.config_path) for s in specs] == [("tiny", "recommended", 5, None)]
    assert specs[0].config["model"] == {"width": 3} and specs[0].config["train"]["time_limit"] == 0.01
    done = accuracy.train_runs(specs, data, "cpu")
    assert done == specs and done[0].train_metrics["status"] in accuracy.DONE_STATUSES

    from nh_models.evaluation import EvalSettings, evaluate_runs

    settings = EvalSettings(n_sub=4, n_detj=2, dts=(0.2, 0.1), repeats=1, t_long=4.0)
    metrics, report = evaluate_runs(
        [specs[0].run_dir], data, "none", tmp_path, "cpu", out / "eval", settings, False
    )
    run = metrics["runs"][specs[0].label]
    assert run["model"] == "tiny" and run["test"]["overall"]["n"] == 16 and run["test"]["overall"]["loss"] > 0
    (entry,) = accuracy.aggregate(specs, metrics)
    assert (entry.model, entry.recipe, entry.seeds) == ("tiny", "recommended", [5])
    assert (
        entry.test_mean == pytest.approx(run["test"]["overall"]["loss"]) and entry.params == 3 * 102 + 3 + 8
    )


def test_entry_point_plugin_is_loaded_when_its_name_is_asked_for(registry, monkeypatch, tmp_path):
    _plugin_file(tmp_path, "lin_ep", "nh_plugin_ep", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        importlib.metadata.EntryPoint("lin_ep", "nh_plugin_ep:register", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("broken", "no_such_module_xyz", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("silent", "json", ENTRY_POINT_GROUP),  # registers nothing
    ]
    _installed(monkeypatch, eps)
    assert model_names()[-3:] == ("broken", "lin_ep", "silent")  # listed, not loaded
    assert "nh_plugin_ep" not in sys.modules
    model = get_model("lin_ep")
    assert type(model).__name__ == "Lin" and model.name == "lin_ep"
    assert load_config("lin_ep")["train"]["epochs"] == 1
    with pytest.raises(NHError, match=r"plug-in model 'broken' \(entry point broken = no_such_module_xyz .*"
                       r"failed to load: ModuleNotFoundError"):  # fmt: skip
        get_model("broken")
    with pytest.raises(NHError, match="was loaded but registered no model named 'silent'"):
        get_model("silent")


def test_cli_plugin_option_trains_tunes_evaluates_and_a_missing_plugin_is_one_line(registry, data, tmp_path):
    module = _plugin_file(tmp_path, "lin", "nh_plugin_file", "register()")
    plug = ["--plugin", str(module)]
    res = CliRunner().invoke(
        nh, ["train", "lin", *plug, "--data", str(data), "--out", str(tmp_path / "runs"), "-q"]
    )
    assert res.exit_code == 0, res.output
    run = res.stdout.splitlines()[0].removeprefix("run folder: ")
    assert Path(run).name.startswith("lin-") and (Path(run) / "checkpoint_best.pt").is_file()

    tune = ["tune", "lin", *plug, "--trials", "1", "--epochs", "1", "--data", str(data), "-q",
            "--storage", f"sqlite:///{tmp_path / 'tune.db'}", "--out", str(tmp_path / "tune")]  # fmt: skip
    res = CliRunner().invoke(nh, tune)  # the search space the plug-in registered
    assert res.exit_code == 0, res.output
    assert "study lin: 1 trials" in res.stdout and (tmp_path / "tune" / "best.yaml").is_file()

    ev = [
        "eval",
        run,
        "--physics",
        "none",
        "--n-sub",
        "2",
        "--max-test",
        "4",
        "--out",
        str(tmp_path / "ev"),
        "-q",
    ]
    res = CliRunner().invoke(nh, [*ev, *plug])
    assert res.exit_code == 0, res.output

    plugins._PLUGINS.clear()  # a new process without --plugin
    sys.modules.pop("nh_plugin_file")
    for args in (
        ev,
        ["predict", run, "--potential", "sho", "--ic", "0.5,0", "--out", str(tmp_path / "p.csv")],
    ):
        res = CliRunner().invoke(nh, args)
        assert res.exit_code == 2
        assert res.stderr.splitlines() == [
            "Error: the checkpoint holds a model 'lin' that is neither built in nor registered: pass --plugin "
            "MODULE (the module that registers it) or install the package that provides it"
        ]
    res = CliRunner().invoke(nh, ["train", "lin", "--plugin", str(tmp_path / "nope.py"), "--data", str(data)])
    assert res.exit_code == 2 and res.stderr.splitlines() == [
        f"Error: --plugin '{tmp_path / 'nope.py'}': no such file"
    ]


def test_accuracy_benchmark_imports_plugin_before_reading_models(registry, data, tmp_path, capsys):
    module = _plugin_file(tmp_path, "lin", "nh_plugin_file", "register()")
    base = ["--data", str(data), "--budget", "1", "--out", str(tmp_path / "acc")]
    assert accuracy.main([*base, "--plugin", str(module), "--models", "nonet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "Error: unknown model 'nonet'; valid: deeponet, varonet, traonet, mambonet, fno, symponet, lin"
    )
    assert accuracy.main([*base, "--plugin", str(tmp_path / "x.py")]) == 2
    assert capsys.readouterr().err.strip() == f"Error: --plugin '{tmp_path / 'x.py'}': no such file"
    assert not (tmp_path / "acc").exists()
