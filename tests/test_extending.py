"""docs/extending.md's example, examples/my_operator.py, at tiny size: a network defined outside the
package is trained, evaluated beside the integrators, used by nh predict and trained by the accuracy
benchmark through --plugin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from benches import load_bench
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_models.models import model_names, plugins

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "my_operator.py"

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(plugins, "_PLUGINS", {})
    yield
    sys.modules.pop("my_operator", None)



def test_the_example_operator_trains_evaluates_predicts_and_enters_the_benchmark(fresh_registry, tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_train=64, n_val=16, n_test=16, seed=4)
    plug = ["--plugin", str(EXAMPLE)]
    res = CliRunner().invoke(nh, ["train", "my_mlp", *plug, "--data", str(data), "--epochs", "1", "--batch-size",
                                  "16", "--out", str(tmp_path / "runs"), "--device", "cpu", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "my_mlp" in model_names()
    run = res.stdout.splitlines()[0].removeprefix("run folder: ")
    assert res.stdout.splitlines()[1].startswith("my_mlp: best val ")

    ev = [
        "eval",
        run,
        *plug,
        "--physics",
        "none",
        "--n-sub",
        "2",
        "--max-test",
        "4",
        "--out",
        str(tmp_path / "ev"),
    ]
    res = CliRunner().invoke(nh, [*ev, "-q"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    r = metrics["runs"][Path(run).name]
    assert r["model"] == "my_mlp" and r["test"]["overall"]["n"] == 4 and r["rk4_equal_cost"]["dt"] > 0

    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(
        nh, ["predict", run, *plug, "--potential", "morse", "--ic", "0.3,0.5", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert out.read_text().splitlines()[0].startswith('"t","q","p"')

    acc = load_bench("accuracy")
    args = [*plug, "--models", "my_mlp", "--recipes", "recommended,paper", "--budget", "0.01", "--seeds", "89",
            "--data", str(data), "--out", str(tmp_path / "acc"), "--device", "cpu", "--train-only"]  # fmt: skip
    assert acc.main(args) == 0
    trained = json.loads((tmp_path / "acc" / "data" / "my_mlp-recommended-s89" / "metrics.json").read_text())
    assert trained["status"] in acc.DONE_STATUSES
    assert not (tmp_path / "acc" / "data" / "my_mlp-paper-s89").exists()  # not a network of the paper
