"""Split-conformal calibration (issue 12): the quantile rule, determinism, coverage on held-out
orbits for a predictor with known errors, and coverage in `nh eval`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cli import nh
from nh_models.calibration import (
    FILE,
    POOLED,
    calibrate,
    calibrate_predictor,
    conformal_quantile,
    from_dict,
    load_calibration,
)
from nh_models.evaluation.cases import load_test
from nh_models.evaluation.coverage import chained_coverage, coverage_summary
from nh_models.evaluation.report import coverage_table
from nh_models.testing import write_synthetic_dataset
from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_conformal_quantile_rank():
    s = np.arange(1.0, 10.0)  # n = 9
    assert conformal_quantile(s, 0.9) == 9.0  # ceil(10 * 0.9) = 9
    assert conformal_quantile(s, 0.5) == 5.0  # ceil(5) = 5
    assert conformal_quantile(s[:8], 0.9) == math.inf  # rank 9 > n = 8: no finite band
    with pytest.raises(Exception, match=r"in \(0, 1\)"):
        conformal_quantile(s, 1.0)


def noisy_exact(V, t, ic):
    """The exact orbit of a harmonic potential (read off the sensors) plus an error whose size is
    drawn per orbit from its initial condition: i.i.d. across orbits, known to no calibration."""
    x = np.linspace(0, 1, V.shape[1])
    a, b, _ = np.polyfit(x, V.T, 2)  # V = a q^2 + b q + c, a = omega^2 / 2
    w = np.sqrt(2 * a)[:, None]
    c = (-b / (2 * a))[:, None]
    q0, p0 = ic[:, :1] - c, ic[:, 1:]
    q = c + q0 * np.cos(w * t) + p0 / w * np.sin(w * t)
    p = -q0 * w * np.sin(w * t) + p0 * np.cos(w * t)
    seed = np.frombuffer(np.ascontiguousarray(ic).tobytes(), dtype=np.uint32)[::4]
    eps = np.array([np.random.default_rng(int(s)).exponential(0.01) for s in seed])[:, None]
    return q + eps * np.sin(3 * t), p - 2 * eps * np.cos(2 * t)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal") / "data"
    write_synthetic_dataset(d, n_train=200, n_val=2000, n_test=2000, seed=2)
    return d


@pytest.mark.parametrize("kind", ["max", "scaled"])
def test_coverage_on_held_out_orbits(data, kind):
    cal = from_dict(calibrate_predictor(noisy_exact, data, kind=kind))
    assert cal.kind == kind and (cal.sigma_q == 1.0) == (kind == "max")
    test = load_test(data)
    q_hat, p_hat = noisy_exact(test.V, test.t, test.ic)
    scores = cal.scores_of(q_hat, p_hat, test.q, test.p)
    cov = coverage_summary(cal, scores, test.u)
    overall = cov["strata"]["overall"]
    assert overall["n"] == 2000
    for level in ("0.5", "0.9", "0.99"):  # E[coverage] in [level, level + 1/(n+1)]; binomial spread on 2,000
        assert abs(overall["coverage"][level] - float(level)) < 0.035, (level, overall)
    for name, row in cov["strata"].items():
        if row["n"] >= 300:
            assert row["coverage"]["0.9"] > 0.85, (name, row)
            assert row["width_q"]["0.9"] > 0 and row["width_p"]["0.9"] > 0
    # chained windows: the same band, one row per window, window 1 near the guarantee
    chained = chained_coverage(cal, noisy_exact, test.V[:200], test.ic[:200], test.u[:200], 3, 2.0)
    assert [r["window"] for r in chained] == [1, 2, 3] and chained[2]["t_end"] == 6.0
    assert all(0.0 <= r["coverage"] <= 1.0 for r in chained) and chained[0]["coverage"] > 0.8
    table = coverage_table({"settings": {"window": 2.0}, "runs": {"fake": {"coverage": cov | {"chained": chained}}}})
    assert "| fake | overall | 2,000 |" in table and "t <= 6" in table


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("calrun")
    write_synthetic_dataset(root / "data", n_train=96, n_val=64, n_test=32, seed=3)
    cfg = {"model": {"nodes": 16, "layers": 2, "branches": 4}, "train": {"epochs": 1, "batch_size": 32}}
    train("deeponet", cfg, root / "data", root / "run", progress=False)
    return root


def test_training_calibrates_and_calibration_is_deterministic(run):
    path = run / "run" / FILE
    first = path.read_bytes()  # written by train
    obj = json.loads(first)
    assert obj["format"] == "nh-calibration" and obj["score"]["kind"] == "scaled" and obj["n"] == 64
    assert sum(v["n"] for k, v in obj["strata"].items() if k != POOLED) <= obj["strata"][POOLED]["n"] == 64
    res = CliRunner().invoke(nh, ["calibrate", str(run / "run")])
    assert res.exit_code == 0, res.output
    assert path.read_bytes() == first  # same run, same data: same bytes
    cal, _ = calibrate(run / "run", run / "data", kind="max")
    assert cal["score"] == {"kind": "max", "sigma_q": 1.0, "sigma_p": 1.0}
    scores = cal["strata"][POOLED]["scores"]
    assert scores == sorted(scores) and len(scores) == 64
    assert cal["strata"][POOLED]["quantiles"]["0.9"] == scores[math.ceil(65 * 0.9) - 1]


def test_calibration_of_other_weights_is_refused(run, tmp_path):
    import shutil

    other = tmp_path / "run"
    shutil.copytree(run / "run", other)
    obj = json.loads((other / FILE).read_text())
    obj["run"]["digest"] = "0" * 64
    (other / FILE).write_text(json.dumps(obj))
    with pytest.raises(Exception, match="other weights"):
        load_calibration(other, digest=json.loads((run / "run" / FILE).read_text())["run"]["digest"])
    res = CliRunner().invoke(nh, ["calibrate", str(tmp_path / "none")])
    assert res.exit_code == 2 and res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1
