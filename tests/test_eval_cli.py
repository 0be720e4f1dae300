"""`nh eval` end to end on a tiny trained run, and its one-line errors (exit status 2)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_models.training.config import PAPER_CONFIG_DIR, load_config
from nh_models.training.trainer import train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    data = root / "data"
    write_synthetic_dataset(data, n_train=64, n_val=16, n_test=40, seed=1)
    config = load_config(
        "deeponet",
        PAPER_CONFIG_DIR / "deeponet.yaml",
        {"model": {"nodes": 8, "layers": 1, "branches": 2}, "train": {"epochs": 1, "batch_size": 32}},
    )
    train("deeponet", config, data, root / "run", progress=False)
    return root


def _run(args):
    result = CliRunner().invoke(nh, args)
    return result


def test_eval_two_runs_into_one_report(tiny_run, tmp_path):
    run = str(tiny_run / "run")
    out = tmp_path / "eval"
    result = _run(
        [
            "eval",
            run,
            run,
            "--data",
            str(tiny_run / "data"),
            "--physics",
            "sho",
            "--physics-dir",
            str(tiny_run / "physics"),
            "--n-sub",
            "16",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"report: {out / 'report.md'}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["runs"]) == ["run", "run#2"]
    r = metrics["runs"]["run"]
    assert r["model"] == "deeponet" and r["n_params"] > 0
    assert r["test"]["overall"]["n"] == 40
    assert r["test"]["overall"]["loss"] == pytest.approx(metrics["runs"]["run#2"]["test"]["overall"]["loss"])
    assert r["test"]["overall"]["loss"] > 0
    assert set(r["physics"]) == {"sho"} and r["physics"]["sho"]["long_time_err_end"] is not None
    assert r["rk4_equal_cost"]["dt"] > 0 and r["work_precision"]["time_per_traj_s"] > 0
    assert "mean_abs_detJ_minus_1" in r["detJ"] and "mean_max_abs_dH" in r["energy"]
    assert set(metrics["integrators"]["work_precision"]) == {"rk4", "leapfrog", "yoshida4"}
    cov = r["coverage"]  # nh train calibrated the run: band coverage on the test split, chained windows
    assert cov["strata"]["overall"]["n"] == 40 and set(cov["strata"]["overall"]["coverage"]) == {"0.5", "0.9", "0.99"}
    assert [c["window"] for c in cov["chained"]] == list(range(1, 11))
    report = (out / "report.md").read_text()
    assert "## Calibrated bands (test split)" in report and "guarantee holds for the first window only" in report
    table = report.split("## Comparison")[1].split("##")[0]
    assert "| run | deeponet |" in table and "| run#2 | deeponet |" in table
    assert r["dtype"] == "float32" and "Models run in their weights' dtype (float32)" in report  # the arithmetic
    assert (out / "physics_sho.png").is_file() and (out / "work_precision.png").is_file()


def test_eval_uses_the_runs_data_folder_by_default(tiny_run, tmp_path):
    result = _run(
        ["eval", str(tiny_run / "run"), "--physics", "none", "--n-sub", "8", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"]["n_test"] == 40
    assert metrics["integrators"]["physics"] == {} and metrics["runs"]["run"]["physics"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "{root}/missing"], "Error: run folder '{root}/missing' does not exist"),
        (["eval", "{root}/data"], "Error: run folder '{root}/data' has no checkpoint_best.pt"),
        (
            ["eval", "{root}/run", "--data", "{root}/nodata"],
            "Error: data directory '{root}/nodata' does not exist",
        ),
        (
            ["eval", "{root}/run", "--physics", "sho,nope"],
            "Error: unknown physics potential 'nope'; valid: all, sho, quartic, morse, mff, smff, unbounded, "
            "pendulum, atw",
        ),
        (
            ["eval", "{root}/run", "--device", "tpu"],
            "Error: unknown device 'tpu'; valid: cpu, cuda, cuda:N, auto",
        ),
        (["eval", "{root}/run", "--lanes", "16"], "Error: lanes 16 time compiled code: pass --compiled as well"),
        (["eval", "{root}/run", "--compiled", "--lanes", "0"], "Error: lanes must be an integer in 1..64, got 0"),
    ],
)
def test_eval_bad_input_is_one_line_exit_2(tiny_run, tmp_path, args, message):
    root = str(tiny_run)
    out = tmp_path / "out"
    result = _run([a.format(root=root) for a in args] + ["--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip() == message.format(root=root)
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing half-written


def test_eval_tampered_checkpoint_is_one_line_exit_2(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "bad"
    shutil.copytree(tiny_run / "run", run)
    blob = (run / "checkpoint_best.pt").read_bytes()
    (run / "checkpoint_best.pt").write_bytes(blob[: len(blob) // 2])
    result = _run(["eval", str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: checkpoint ") and result.stderr.count("\n") == 1


def test_run_whose_data_is_gone_evaluates_physics_only(tiny_run, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_run / "data", data)
    config = load_config(
        "deeponet",
        PAPER_CONFIG_DIR / "deeponet.yaml",
        {"model": {"nodes": 4, "layers": 1, "branches": 2}, "train": {"epochs": 1, "batch_size": 32}},
    )
    train("deeponet", config, data, tmp_path / "run", progress=False)
    shutil.rmtree(data)
    nothing = _run(["eval", str(tmp_path / "run"), "--physics", "none", "--out", str(tmp_path / "o1")])
    assert nothing.exit_code == 2
    assert (
        nothing.stderr.strip() == "Error: nothing to evaluate: no test data (give --data) and --physics none"
    )
    result = _run(
        [
            "eval",
            str(tmp_path / "run"),
            "--physics",
            "sho",
            "--physics-dir",
            str(tiny_run / "physics"),
            "--out",
            str(tmp_path / "o2"),
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert "test" not in metrics["runs"]["run"] and set(metrics["runs"]["run"]["physics"]) == {"sho"}
    assert "work_precision" not in metrics["integrators"]
