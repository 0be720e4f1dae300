"""Split-conformal calibration (issue 12): the quantile rule, determinism, coverage on held-out
orbits for a predictor with known errors, and coverage in `nh eval`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import write_synthetic_dataset

from cli import nh
from nh_models.calibration import (
    FILE,
    POOLED,
    calibrate,
    calibrate_predictor,
    conformal_quantile,
    fresh_arrays,
    from_dict,
    load_calibration,
    target_level,
)
from nh_models.evaluation.cases import load_test
from nh_models.evaluation.coverage import chained_coverage, coverage_summary
from nh_models.evaluation.report import coverage_table
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
    assert cal.margin == 0.1
    for level in ("0.5", "0.9", "0.99"):  # E[coverage] in [aim, aim + 1/(n+1)]; binomial spread on 2,000
        aim = target_level(float(level), cal.margin)  # 0.55, 0.91, 0.991
        assert abs(overall["coverage"][level] - aim) < 0.035, (level, overall)
        assert overall["coverage"][level] > float(level) - 0.01
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
    # rank ceil(65 * 0.91) = 60 with the margin (0.9 aims at 0.91), ceil(65 * 0.9) = 59 without
    assert cal["margin"] == 0.1 and cal["strata"][POOLED]["quantiles"]["0.9"] == scores[60 - 1]
    plain = from_dict(dict(cal, margin=0.0))
    assert plain.quantile(POOLED, 0.9) == scores[59 - 1] == conformal_quantile(np.array(scores), 0.9)
    old = {k: v for k, v in cal.items() if k != "margin"}  # a file written before the margin existed
    assert from_dict(old).margin == 0.0
    with pytest.raises(Exception, match="margin"):
        from_dict(dict(cal, margin=1.5))


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


def test_target_level_holds_back_a_share_of_the_miscoverage():
    assert target_level(0.9, 0.1) == pytest.approx(0.91) and target_level(0.99, 0.1) == pytest.approx(0.991)
    assert target_level(0.9, 0.0) == 0.9
    with pytest.raises(Exception, match=r"in \(0, 1\)"):
        target_level(1.0, 0.1)


def _stay(V, t, ic):
    """A predictor that never moves: q(t) = q0, p(t) = p0."""
    return np.broadcast_to(ic[:, :1], t.shape).copy(), np.broadcast_to(ic[:, 1:], t.shape).copy()


def test_fresh_calibration_orbits_are_new_certified_and_deterministic(tiny_dataset):
    from nh_data.stream import fresh_chunk, read_build_config

    a, u, n = fresh_arrays(tiny_dataset, 7)
    assert n == len(u) == len(a["V"]) and 20 <= n <= 28  # 4 strata orbits per potential, few rejected
    assert a["V"].shape == (n, 100) and a["ic"].shape == (n, 2) and a["q"].shape == a["t"].shape
    b, _, _ = fresh_arrays(tiny_dataset, 7)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same folder, same orbits
    # never the orbits of a training stream (any seed's chunk 0 uses another spawn key)
    train = fresh_chunk(read_build_config(tiny_dataset), 0, 0, 7)
    assert not np.isin(a["V"][:, 50], train["V"][:, 50]).any()
    # the calibration file says where its orbits came from
    cal = calibrate_predictor(_stay, tiny_dataset, kind="max", fresh=7)
    assert cal["split"] == "fresh" and cal["n"] == n and cal["fresh"]["potentials"] == 7
    assert cal["strata"][POOLED]["scores"] == calibrate_predictor(_stay, tiny_dataset, kind="max", fresh=7)[
        "strata"
    ][POOLED]["scores"]
    with pytest.raises(Exception, match="positive number of potentials"):
        fresh_arrays(tiny_dataset, 0)


def test_calibrate_cli_fresh_errors(run):
    res = CliRunner().invoke(nh, ["calibrate", str(run / "run"), "--fresh", "-1"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "--fresh" in res.stderr
    # a synthetic folder has no engine build configuration to draw fresh orbits from
    res = CliRunner().invoke(nh, ["calibrate", str(run / "run"), "--fresh", "5"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "build configuration" in res.stderr, res.output
