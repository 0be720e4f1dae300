"""SympONet (issue 13): symplectic by construction, the identity at t = 0, its sensor-force prior,
configs, training, checkpoints and `nh eval`'s det J."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from naive import fixed_grid_reference, prior_substeps
from synthetic import write_synthetic_dataset

from cli import nh
from nh_data.errors import NHError
from nh_data.random_potentials import sample_potentials
from nh_data.spline import spline_dV
from nh_models.models import get_model
from nh_models.models.symponet import force_table, sensor_force
from nh_models.training.checkpoint import build_model, load_checkpoint
from nh_models.training.config import CONFIG_DIR, PAPER_CONFIG_DIR, load_config
from nh_models.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = {
    "latent": 8,
    "nodes": 16,
    "encoder_layers": 2,
    "hyper_layers": 2,
    "steps": 6,
    "shears": 2,
    "ridges": 4,
}


def random_problem(B: int, seed: int, dtype=torch.float64):
    """Potentials of the training distribution, times in [0, 2], (q0, p0) inside the box."""
    rng = np.random.default_rng(seed)
    V = torch.from_numpy(sample_potentials(rng, B).V)
    t = torch.from_numpy(rng.uniform(0.0, 2.0, (B, 1)))
    ic = torch.from_numpy(np.stack([rng.uniform(0.05, 0.95, B), rng.uniform(-2.0, 2.0, B)], axis=1))
    return V.to(dtype), t.to(dtype), ic.to(dtype)


def jacobian_det(model, V, t, ic) -> tuple[torch.Tensor, torch.Tensor]:
    """det d(q, p)(t) / d(q0, p0) by two backward passes (one query time per row) and the size
    |J11 J22| + |J12 J21| of its two products (round-off scales with it): (B,), (B,)."""
    ic = ic.clone().requires_grad_(True)
    q, p = model(V, t, ic)
    (dq,) = torch.autograd.grad(q.sum(), ic, retain_graph=True)  # rows independent: per-row gradients
    (dp,) = torch.autograd.grad(p.sum(), ic)
    a, b = dq[:, 0] * dp[:, 1], dq[:, 1] * dp[:, 0]
    return a - b, a.abs() + b.abs()


@pytest.mark.parametrize(
    "config",
    [TINY, {**TINY, "steps": 0, "shears": 4}, {**TINY, "hyper_layers": 1, "encoder_layers": 1},
     {**TINY, "prior": "yoshida4"}, {**TINY, "grid": "fixed", "steps": 20},
     {**TINY, "grid": "fixed", "steps": 20, "shears": 0, "correction": 0.5}],  # fmt: skip
    ids=["prior", "shears-only", "one-layer", "yoshida4", "fixed-grid", "fixed-grid-no-shears"],
)
@pytest.mark.parametrize("weight_scale", [1.0, 5.0])
def test_det_j_is_one_to_round_off_for_random_weights(config, weight_scale):
    torch.manual_seed(1)
    model = get_model("symponet", config).double()
    with torch.no_grad():  # far from the initialisation too: large corrections, same structure
        for w in model.parameters():
            w.mul_(weight_scale)
    V, t, ic = random_problem(64, seed=2)
    q, p = model(V, t, ic)
    assert torch.isfinite(q).all() and torch.isfinite(p).all()
    moved = (q[:, 0] - ic[:, 0]).abs().max()
    assert moved > 1e-2  # a real map, not the identity
    det, size = jacobian_det(model, V, t, ic)
    # round-off of float64: a few ulps of the products per step (a leapfrog step past its
    # stability limit stretches the map, |J| up to 1e4 here); 1 to 1e-13 where the map is tame
    # (per leapfrog substep: Yoshida-4 takes three a step; 1.3e-14 of |J| was measured on an Intel
    # Xeon for the stretched Yoshida-4 map, where 1e-14 per step held on the AMD EPYC)
    substeps = 3 if config.get("prior") == "yoshida4" else 1
    per_steps = max(1.0, config["steps"] * substeps / 6)
    assert ((det - 1).abs() <= 1e-14 * per_steps * size).all(), ((det - 1).abs() / size).max()
    tame = size < 10
    assert tame.sum() >= 10 and (det[tame] - 1).abs().max() < 1e-13


def test_an_area_changing_map_is_caught():
    """The check above can fail: scaling p by 1.1 after the map gives det J = 1.1."""
    torch.manual_seed(1)
    model = get_model("symponet", TINY).double()
    V, t, ic = random_problem(16, seed=3)

    def scaled(V, t, ic):
        q, p = model(V, t, ic)
        return q, 1.1 * p

    det, _ = jacobian_det(scaled, V, t, ic)
    assert torch.allclose(det, torch.full_like(det, 1.1), atol=1e-12)


@pytest.mark.parametrize("grid", ["scaled", "fixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_map_at_t_zero_is_the_identity_exactly(dtype, grid):
    torch.manual_seed(0)
    model = get_model("symponet", {**TINY, "grid": grid}).to(dtype)
    V, _, ic = random_problem(8, seed=4, dtype=dtype)
    t = torch.zeros(8, 5, dtype=dtype)
    t[:, 1:] = torch.rand(8, 4, dtype=dtype) * 2  # zeros beside other times in the same rows
    q, p = model(V, t, ic)
    assert torch.equal(q[:, 0], ic[:, 0]) and torch.equal(p[:, 0], ic[:, 1])
    assert (q[:, 1:] - ic[:, :1]).abs().max() > 1e-3


def test_the_initial_condition_does_not_reach_the_shear_parameters():
    torch.manual_seed(0)
    model = get_model("symponet", TINY).double()
    V, t, _ = random_problem(4, seed=5)
    a = model.hyper(V, t)
    b = model.hyper(V, t)  # the hypernetwork takes (V, t) alone
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    import inspect

    assert list(inspect.signature(model.hyper).parameters) == ["V", "t"]


# ----------------------------------------------------------------- the prior


def test_sensor_force_is_the_quintic_spline_derivative():
    x = np.linspace(0, 1, 100)
    xf = torch.linspace(0, 1, 1001, dtype=torch.float64)
    V = torch.from_numpy(np.stack([x**3 - x, np.sin(3 * x)]))
    dV = sensor_force(force_table(V), xf.expand(2, -1))
    assert (dV[0] - (3 * xf**2 - 1)).abs().max() < 1e-10  # cubics are reproduced
    assert (dV[1] - 3 * torch.cos(3 * xf)).abs().max() < 1e-6
    pots = sample_potentials(np.random.default_rng(0), 50)
    est = sensor_force(force_table(torch.from_numpy(pots.V)), xf.expand(50, -1)).numpy()
    true = np.stack([spline_dV(xf.numpy(), k, c) for k, c in zip(pots.knots, pots.coeffs, strict=True)])
    err = np.abs(est - true).max(axis=1) / np.abs(true).max(axis=1)
    assert np.median(err) < 3e-4 and err.max() < 3e-3
    # outside the box the force is the wall's (q clamped): finite, no extrapolated cubic
    out = sensor_force(force_table(V), torch.tensor([[-0.5, 1.5], [-0.5, 1.5]], dtype=torch.float64))
    assert torch.allclose(out[0], torch.tensor([-1.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("prior", ["leapfrog", "yoshida4"])
def test_without_corrections_the_map_is_the_prior_integrator_on_the_sensor_force(prior):
    torch.manual_seed(0)
    model = get_model("symponet", {**TINY, "steps": 7, "shears": 1, "prior": prior}).double()
    with torch.no_grad():
        model.amp_rest[-1].weight.zero_()
        model.amp_rest[-1].bias.zero_()
    x = np.linspace(0, 1, 100)
    k, c = 6.0, 0.45
    V = torch.from_numpy(k * (x - c) ** 2)[None].repeat(3, 1)
    t = torch.tensor([[0.3], [1.0], [2.0]], dtype=torch.float64)
    ic = torch.tensor([[0.5, 0.2], [0.3, -0.4], [0.6, 1.0]], dtype=torch.float64)
    q, p = model(V, t, ic)
    subs = prior_substeps(prior)  # Yoshida's triple jump for yoshida4
    for i in range(3):  # 7 steps of t / 7 of Stormer-Verlet (or of its triple jump), force 2 k (q - c)
        qq, pp = ic[i, 0].item(), ic[i, 1].item()
        h = t[i, 0].item() / 7
        for _ in range(7):
            for a in subs:
                pp -= 0.5 * a * h * 2 * k * (qq - c)
                qq += a * h * pp
                pp -= 0.5 * a * h * 2 * k * (qq - c)
        assert q[i, 0].item() == pytest.approx(qq, abs=1e-11) and p[i, 0].item() == pytest.approx(
            pp, abs=1e-11
        )


def _zero_corrections(model):
    with torch.no_grad():
        model.amp_rest[-1].weight.zero_()
        model.amp_rest[-1].bias.zero_()
    return model


@pytest.mark.parametrize("prior", ["leapfrog", "yoshida4"])
def test_fixed_grid_is_one_trajectory_of_fixed_steps_read_out_by_a_partial_step(prior):
    """grid: fixed, corrections zero: floor(t / h) Stormer-Verlet steps of h = 2 / steps on the
    sensor force, then one step of the rest, whatever the query times beside it."""
    model = _zero_corrections(get_model("symponet", {**TINY, "steps": 8, "shears": 0, "grid": "fixed",
                                                     "prior": prior}).double())  # fmt: skip
    x = np.linspace(0, 1, 100)
    k, c = 6.0, 0.45
    V = torch.from_numpy(k * (x - c) ** 2)[None].repeat(2, 1)
    t = torch.tensor([[0.3, 1.0, 2.0, 0.25], [1.75, 0.0, 1.9, 0.6]], dtype=torch.float64)
    ic = torch.tensor([[0.5, 0.2], [0.3, -0.4]], dtype=torch.float64)
    q, p = model(V, t, ic)
    qq, pp = fixed_grid_reference(ic, t, 2.0 / 8, prior_substeps(prior), k, c)
    assert q.detach().numpy() == pytest.approx(qq, abs=1e-12) and p.detach().numpy() == pytest.approx(pp, abs=1e-12)


def test_fixed_grid_is_continuous_in_t_and_chains_like_one_integration():
    torch.manual_seed(3)
    model = get_model("symponet", {**TINY, "steps": 16, "shears": 0, "grid": "fixed"}).double()
    V, _, ic = random_problem(6, seed=8)
    h = 2.0 / 16
    node = 5 * h
    t = torch.tensor([[node - 1e-9, node, node + 1e-9]], dtype=torch.float64).repeat(6, 1)
    q, p = model(V, t, ic)
    assert (q[:, 0] - q[:, 2]).abs().max() < 1e-7 and (p[:, 0] - p[:, 2]).abs().max() < 1e-7
    # two chained 2-s windows equal one map to t + 2 (autonomous: no query time in the step)
    t1 = torch.full((6, 1), 2.0, dtype=torch.float64)
    q1, p1 = model(V, t1, ic)
    tt = torch.tensor([[0.7]], dtype=torch.float64).repeat(6, 1)
    q2, p2 = model(V, tt, torch.cat([q1, p1], dim=1))
    q3, p3 = model(V, tt + 2.0, ic)
    assert torch.allclose(q2, q3, atol=1e-12) and torch.allclose(p2, p3, atol=1e-12)


# ----------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"steps": -1}, "SympONetConfig.steps must be an integer >= 0, got -1"),
        ({"shears": 1.5}, "SympONetConfig.shears must be an integer >= 0, got 1.5"),
        ({"steps": 0, "shears": 0}, "SympONetConfig needs steps >= 1 or shears >= 1"),
        ({"prior": "rk4"}, "SympONetConfig.prior must be one of leapfrog, yoshida4, got 'rk4'"),
        ({"ridges": 0}, "SympONetConfig.ridges must be an integer >= 1, got 0"),
        ({"scale": "yes"}, "SympONetConfig.scale must be true or false, got 'yes'"),
        ({"grid": "adaptive"}, "SympONetConfig.grid must be one of scaled, fixed, processed, got 'adaptive'"),
        ({"correction": 0}, "SympONetConfig.correction must be a number > 0, got 0"),
        ({"correction": float("nan")}, "SympONetConfig.correction must be a number > 0, got nan"),
    ],
)
def test_invalid_config_is_named(config, message):
    with pytest.raises(NHError, match=re.escape(message)):
        get_model("symponet", config)


def test_shipped_configs_and_no_paper_config():
    cfg = load_config("symponet")  # configs/symponet.yaml: the recommended recipe
    model = get_model("symponet", cfg["model"])
    assert 200_000 <= model.num_parameters() <= 400_000  # comparable to the recommended DeepONet
    assert not (PAPER_CONFIG_DIR / "symponet.yaml").exists()
    with pytest.raises(NHError, match="does not exist"):
        load_config("symponet", PAPER_CONFIG_DIR / "symponet.yaml")


# ----------------------------------------------------------------- training, checkpoints, nh eval


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("symponet")
    write_synthetic_dataset(root / "data", n_train=64, n_val=16, n_test=24, seed=1)
    cfg = load_config("symponet", CONFIG_DIR / "symponet_small.yaml", {"epochs": 2, "batch_size": 32})
    train("symponet", cfg, root / "data", root / "run", progress=False)
    return root


def test_checkpoint_round_trip(trained):
    ck = load_checkpoint(trained / "run" / "checkpoint_last.pt")
    model = build_model(ck).eval()
    assert model.name == "symponet"
    V, t, ic = random_problem(5, seed=6, dtype=torch.float32)
    t = t.repeat(1, 4) * torch.linspace(0.1, 1.0, 4)
    torch.manual_seed(ck["config"]["train"]["seed"])
    again = get_model("symponet", ck["config"]["model"]).eval()  # the trainer's initial weights
    with torch.no_grad():
        assert not torch.equal(model(V, t, ic)[0], again(V, t, ic)[0])  # training moved the weights
    again.load_state_dict(ck["model"])
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(V, t, ic), again(V, t, ic), strict=True))


def test_nh_eval_measures_det_j_one_to_round_off(trained, tmp_path):
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        nh, ["eval", str(trained / "run"), "--physics", "none", "--n-sub", "8", "--out", str(out), "-q"]
    )
    assert res.exit_code == 0, res.output
    run = json.loads((out / "metrics.json").read_text())["runs"]["run"]
    assert run["model"] == "symponet"
    assert run["detJ"]["max_abs_detJ_minus_1"] < 1e-8 and run["detJ"]["median_abs_detJ_minus_1"] < 1e-9
    # what training added: the prior alone (learned: false, the same weights) evaluated beside it,
    # and the integrators at the run's own force evaluations per orbit on its own interpolant
    metrics = json.loads((out / "metrics.json").read_text())
    alone = metrics["runs"]["run (prior alone)"]
    assert alone["learned"] is False and alone["test"]["overall"]["loss"] != run["test"]["overall"]["loss"]
    rows = run["equal_cost"]["rows"]
    assert {"model", "prior alone", "leapfrog", "yoshida4", "rk4", "processed", "rk4 at equal time",
            "processed at equal time"} == set(rows)  # fmt: skip
    assert rows["prior alone"]["loss"] == pytest.approx(alone["work_precision"]["loss"], rel=1e-4)
    assert all(rows[m]["evaluations"] <= run["equal_cost"]["evaluations_per_orbit"] for m in ("leapfrog", "rk4"))
    rk4 = rows["rk4"]  # beside the model: the win rate and the ratio of the means with its interval
    assert rk4["mean_ratio"] == pytest.approx(rows["model"]["loss"] / rk4["loss"])
    assert rk4["mean_ratio_lo"] <= rk4["mean_ratio"] <= rk4["mean_ratio_hi"] and "mean_ratio" not in rows["model"]
    report = (out / "report.md").read_text()
    assert "## At equal cost, on the model's own interpolant" in report and "| prior alone |" in report
    assert "model / row, mean loss (95 % bootstrap)" in report
    floor = run["equal_cost"]["interpolation_floor"]  # the spline's own distance to the test orbits
    assert 0 < floor < rows["prior alone"]["loss"] and f"The sensor spline itself is {floor:.3g} from" in report


def test_small_config_reduces_validation_loss_tenfold(tmp_path, untrained_val_loss):
    data = tmp_path / "data"
    write_synthetic_dataset(data, n_train=400, n_val=100, n_test=0, seed=0)
    # 6 epochs of 8 batches: about 20x (4 epochs: 14x, 8 epochs: 32x); seconds of CPU
    cfg = load_config("symponet", CONFIG_DIR / "symponet_small.yaml", {"epochs": 6, "batch_size": 50})
    untrained = untrained_val_loss("symponet", cfg, data, batch_size=100)
    metrics = train("symponet", cfg, data, tmp_path / "run", progress=False)
    assert metrics["best_val_loss"] * 10 <= untrained, (untrained, metrics["best_val_loss"])
