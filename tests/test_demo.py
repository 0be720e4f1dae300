"""`run_demo` end to end at its tiny size (the real demo takes minutes; it is run by hand)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import nh
from nh_data.errors import NHError
from nh_models.demo import SIZES, run_demo


def test_tiny_demo_writes_the_report_of_both_models(tmp_path):
    out = tmp_path / "demo"
    earlier = out / "runs" / "deeponet"  # a run of an earlier demo is replaced, not mixed in
    earlier.mkdir(parents=True)
    (earlier / "config.yaml").write_text("# nh train deeponet\nmodel: {}\n")
    (earlier / "stale.txt").write_text("from the earlier demo")
    result = run_demo(out, size="tiny", progress=False)
    assert not (earlier / "stale.txt").exists()
    assert result["report"] == str(out / "report.md")
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["runs"]) == ["deeponet", "traonet"]
    assert {r["model"] for r in metrics["runs"].values()} == {"deeponet", "traonet"}
    assert set(metrics["integrators"]["physics"]) == set(SIZES["tiny"].physics.split(","))
    assert metrics["data"]["n_test"] == 4 * (SIZES["tiny"].n_potentials // 2)  # 4 orbits per test potential
    for model in ("deeponet", "traonet"):
        assert (out / "runs" / model / "checkpoint_best.pt").is_file()
        assert metrics["runs"][model]["test"]["overall"]["loss"] > 0
    report = (out / "report.md").read_text()
    assert "| deeponet | deeponet |" in report and "| traonet | traonet |" in report
    assert all((out / name).is_file() for name in metrics["plots"])
    assert json.loads((out / "demo.json").read_text())["size"] == "tiny"
    # before any training: the shipped operators' predictions and plots
    for label in ("morse", "formula"):
        assert (out / "pretrained" / f"{label}.png").stat().st_size > 10_000
        assert (out / "pretrained" / f"{label}.csv").is_file()


def test_demo_refuses_foreign_folders_before_writing(tmp_path):
    out = tmp_path / "demo"
    (out / "runs" / "traonet").mkdir(parents=True)
    (out / "runs" / "traonet" / "notes.txt").write_text("mine")
    with pytest.raises(NHError, match="is not a run of an earlier demo"):
        run_demo(out, size="tiny", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["runs"]  # no data built
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(nh, ["demo", "--out", str(tmp_path / "file"), "--size", "tiny"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: '{tmp_path / 'file'}' exists and is not a folder"
    with pytest.raises(NHError, match="unknown demo size 'huge'; valid: small, tiny"):
        run_demo(out, size="huge")
    result = CliRunner().invoke(nh, ["demo", "--out", str(tmp_path / "d2"), "--device", "tpu"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: unknown device 'tpu'; valid: cpu, cuda, cuda:N, auto"
    assert not (tmp_path / "d2").exists()
