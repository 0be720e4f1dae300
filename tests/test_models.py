"""The five operator networks: shapes, gradients, overfitting, registry, configs (issue 4)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml

from nh_data.errors import NHError
from nh_models.models import MODEL_NAMES, PAPER_MODEL_NAMES, OperatorModel, get_model, model_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "paper"  # the paper's, unchanged

# small enough for a fast test, large enough to fit a batch of 8 orbits
TINY = {
    "deeponet": {"nodes": 32, "layers": 3, "branches": 8},
    "varonet": {"hidden_size": 16, "num_layers": 1, "latent_size": 4, "kl_weight": 1e-3},
    "traonet": {"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 32},
    "mambonet": {
        "d_model": 16,
        "mamba_layers": 1,
        "d_state": 4,
        "nhead": 2,
        "decoder_layers": 1,
        "dim_feedforward": 32,
    },
    "fno": {
        "d_model": 16,
        "fourier_layers": 2,
        "modes": 4,
        "nhead": 2,
        "decoder_layers": 1,
        "dim_feedforward": 32,
    },
    "symponet": {"latent": 8, "nodes": 16, "encoder_layers": 2, "hyper_layers": 2, "steps": 4, "shears": 1,
                 "ridges": 4},
}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny(name: str, **extra) -> OperatorModel:
    torch.manual_seed(0)
    return get_model(name, {**TINY[name], **extra})


def harmonic_batch(B: int = 8, W: int = 20, seed: int = 0, dtype=torch.float32):
    """Harmonic wells V = k (x - 1/2)^2 with their closed-form orbits from random (q0, p0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, 100, dtype=torch.float64)
    k = 1 + 3 * torch.rand(B, 1, generator=g, dtype=torch.float64)
    V = k * (x - 0.5) ** 2  # (B, 100)
    omega = (2 * k).sqrt()  # (B, 1)
    t = torch.sort(2 * torch.rand(B, W, generator=g, dtype=torch.float64), dim=1).values  # (B, W)
    ic = torch.rand(B, 2, generator=g, dtype=torch.float64) - 0.5  # (B, 2)
    q0, p0 = ic[:, :1], ic[:, 1:]
    q = q0 * torch.cos(omega * t) + p0 / omega * torch.sin(omega * t)
    p = -q0 * omega * torch.sin(omega * t) + p0 * torch.cos(omega * t)
    return tuple(v.to(dtype) for v in (V, t, ic, q, p))


def loss_fn(model: OperatorModel, V, t, ic, q, p) -> torch.Tensor:
    q_hat, p_hat = model(V, t, ic)
    return 0.5 * (torch.mean((q_hat - q) ** 2) + torch.mean((p_hat - p) ** 2)) + model.regularizer()


# ---------------------------------------------------------------- shapes and gradients


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(("B", "W"), [(1, 1), (3, 7), (2, 100)])
def test_output_shapes(name, B, W):
    model = tiny(name)
    V, t, ic, _, _ = harmonic_batch(B, W)
    q, p = model(V, t, ic)
    assert q.shape == (B, W) and p.shape == (B, W)
    assert q.dtype == p.dtype == torch.float32
    assert torch.isfinite(q).all() and torch.isfinite(p).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_float64_model(name):
    model = tiny(name).double()
    V, t, ic, _, _ = harmonic_batch(2, 5, dtype=torch.float64)
    q, p = model(V, t, ic)
    assert q.dtype == p.dtype == torch.float64 and q.shape == (2, 5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_parameter_gets_a_gradient(name):
    model = tiny(name)
    model.train()
    loss = loss_fn(model, *harmonic_batch(4, 9))
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_overfits_a_batch_of_eight(name):
    """Adam on one batch of 8 harmonic orbits: the (eval-mode) loss falls 100x."""
    model = tiny(name)
    V, t, ic, q, p = batch = harmonic_batch(8, 20)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = loss_fn(model, *batch).item()
        model.train()
        return value

    first = eval_loss()
    best = first
    for step in range(1, 1001):
        opt.zero_grad()
        loss_fn(model, V, t, ic, q, p).backward()
        opt.step()
        if step % 25 == 0:
            best = min(best, eval_loss())
            if best < first / 100:
                break
    assert best < first / 100, f"{name}: loss {first:.3g} -> {best:.3g} after {step} steps"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_evaluation_blocks_equal_one_pass(name):
    """Without autograd a big batch runs in blocks of infer_tokens points: same result."""
    model = tiny(name).eval()
    V, t, ic, _, _ = harmonic_batch(25, 12)
    model.infer_tokens = 36  # blocks of 3 samples
    with torch.no_grad():
        q_blocks, p_blocks = model(V, t, ic)
    q_one, p_one = model(V, t, ic)  # autograd on: one pass
    torch.testing.assert_close(q_blocks, q_one.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p_blocks, p_one.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "config",
    [{}, {"layers": 1}, {"layers": 2}, {"layers": 4, "nodes": 12}],
    ids=["tiny", "layers1", "layers2", "layers4"],
)
def test_deeponet_inference_buffers_equal_autograd_path(config):
    """DeepONet's buffer-reusing inference blocks do the same arithmetic: bit-identical."""
    model = tiny("deeponet", **config).eval()
    V, t, ic, _, _ = harmonic_batch(25, 12)
    with torch.no_grad():
        ref = model._forward(V, t, ic)  # one pass, fresh tensors
        for tokens in (36, 100, None):  # blocks of 3 orbits, of 8 with an uneven end, one block
            model.infer_tokens = tokens
            q, p = model(V, t, ic)
            assert torch.equal(q, ref[0]) and torch.equal(p, ref[1]), tokens


def test_deeponet_shared_grid_equals_per_point_path_with_gradients():
    """All orbits on one time grid (the trunk runs once): values and gradients equal the
    per-point path's."""
    model = tiny("deeponet")
    V, _, ic, _, _ = harmonic_batch(16, 30)
    t = torch.linspace(0.0, 2.0, 30).repeat(16, 1)  # (16, 30), every row the same
    q, p = model(V, t, ic)
    q_ref, p_ref = model._forward(V, t, ic)  # the per-point path
    torch.testing.assert_close(q, q_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad((q.square().sum() + p.sum()), list(model.parameters()))
    grads_ref = torch.autograd.grad((q_ref.square().sum() + p_ref.sum()), list(model.parameters()))
    for (name, _), g, g_ref in zip(model.named_parameters(), grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6, msg=name)


def test_deeponet_trunk_counts_work_per_grid():
    """The trunk's cost follows the query points it is given: W for a shared grid."""
    model = tiny("deeponet")
    seen: list[int] = []
    original = model.trunk

    def counting(t):
        seen.append(t.numel())
        return original(t)

    model.trunk = counting
    V, t, ic, _, _ = harmonic_batch(16, 30)
    model(V, torch.linspace(0, 2, 30).repeat(16, 1), ic)
    model(V, t, ic)  # per-orbit times: all 16 x 30 points
    assert seen == [30, 16 * 30]


def test_deeponet_depends_on_ic_and_is_pointwise_in_time():
    """The initial condition changes the prediction (through the branch); the value at one
    time does not depend on which other times are asked for (the trunk sees t alone)."""
    model = tiny("deeponet")
    V, t, ic, _, _ = harmonic_batch(4, 10)
    with torch.no_grad():
        q, p = model(V, t, ic)
        q2, _ = model(V, t, ic + 0.25)
        assert (q2 - q).abs().max() > 1e-4
        q_sub, p_sub = model(V, t[:, 3:4], ic)  # one time per orbit
    torch.testing.assert_close(q_sub[:, 0], q[:, 3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p_sub[:, 0], p[:, 3], rtol=1e-5, atol=1e-6)


def test_inputs_checked():
    model = tiny("traonet")
    V, t, ic, _, _ = harmonic_batch(3, 4)
    with pytest.raises(NHError, match=r"V must have shape \(B, 100\), got \(3, 99\)"):
        model(V[:, :99], t, ic)
    with pytest.raises(NHError, match=r"t must have shape \(B=3, W>=1\), got \(2, 4\)"):
        model(V, t[:2], ic)
    with pytest.raises(NHError, match=r"ic must have shape \(B=3, 2\), got \(3, 3\)"):
        model(V, t, torch.zeros(3, 3))


# ---------------------------------------------------------------- VaRONet


def test_varonet_eval_is_deterministic_and_train_samples():
    model = tiny("varonet")
    V, t, ic, _, _ = harmonic_batch(4, 10)
    model.eval()
    torch.manual_seed(1)
    q1, p1 = model(V, t, ic)
    torch.manual_seed(2)
    q2, p2 = model(V, t, ic)
    assert torch.equal(q1, q2) and torch.equal(p1, p2)
    assert model.regularizer().item() == 0.0
    model.train()
    q3, _ = model(V, t, ic)
    q4, _ = model(V, t, ic)
    assert not torch.equal(q3, q4), "training mode should sample z"
    reg = model.regularizer()
    assert reg.item() > 0 and reg.requires_grad
    model.eval()
    assert model.regularizer().item() == 0.0


def test_varonet_kl_weight_scales_regularizer():
    V, t, ic, _, _ = harmonic_batch(4, 10)
    regs = []
    for w in (0.1, 0.3):
        model = tiny("varonet", kl_weight=w).train()
        torch.manual_seed(0)
        model(V, t, ic)
        regs.append(model.regularizer().item())
    assert regs[1] == pytest.approx(3 * regs[0], rel=1e-6)


def test_gaussian_kl_closed_form():
    from nh_models.models.varonet import gaussian_kl

    mu = torch.tensor([[0.0, 1.0]])
    logvar = torch.tensor([[0.0, 2.0]])
    # KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2, averaged over the two components
    expected = 0.5 * (0.0 + (1 + torch.e**2 - 1 - 2)) / 2
    assert gaussian_kl(mu, logvar).item() == pytest.approx(expected, rel=1e-6)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


# ---------------------------------------------------------------- FNO


def test_spectral_conv_equals_fft_reference():
    from nh_models.models.fno import dft_matrices, spectral_conv

    g = torch.Generator().manual_seed(0)
    M, d_in, d_out = 16, 3, 5
    v = torch.randn(4, 100, d_in, generator=g, dtype=torch.float64)
    w_re = torch.randn(M, d_in, d_out, generator=g, dtype=torch.float64)
    w_im = torch.randn(M - 1, d_in, d_out, generator=g, dtype=torch.float64)
    forward, inverse = dft_matrices(100, M, torch.float64)
    R = torch.complex(w_re, torch.cat([torch.zeros(1, d_in, d_out, dtype=torch.float64), w_im]))
    v_hat = torch.fft.rfft(v, dim=1)[:, :M]  # (B, M, d_in)
    Y = torch.zeros(4, 51, d_out, dtype=torch.complex128)
    Y[:, :M] = torch.einsum("bmi,mio->bmo", v_hat, R)
    expected = torch.fft.irfft(Y, n=100, dim=1)
    torch.testing.assert_close(spectral_conv(v, forward, inverse, w_re, w_im), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- registry and configs


def test_unknown_model_lists_valid_names():
    with pytest.raises(NHError) as err:
        get_model("resnet")
    assert str(err.value) == (
        "unknown model 'resnet'; valid models: deeponet, varonet, traonet, mambonet, fno, symponet "
        "(a model of your own: --plugin MODULE, docs/extending.md)"
    )


def test_unknown_key_lists_valid_keys():
    with pytest.raises(NHError) as err:
        model_config("traonet", {"d_model": 32, "heads": 4})
    assert str(err.value) == (
        "unknown traonet config key 'heads'; valid keys: basis, head_nodes, head_layers, head_width, patch, "
        "d_model, nhead, num_layers, dim_feedforward, dropout, features, scale, decoder"
    )
    with pytest.raises(
        NHError, match="unknown deeponet config keys 'a', 'b'; valid keys: nodes, layers, branches"
    ):
        get_model("deeponet", {"b": 1, "a": 2})


def test_config_must_be_a_mapping():
    with pytest.raises(NHError, match="the fno config must be a mapping of keys to values, got list"):
        get_model("fno", [("d_model", 8)])


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("deeponet", {"nodes": 0}, "DeepONetConfig.nodes must be an integer >= 1, got 0"),
        ("deeponet", {"layers": 2.5}, "DeepONetConfig.layers must be an integer >= 1, got 2.5"),
        ("deeponet", {"branches": True}, "DeepONetConfig.branches must be an integer >= 1, got True"),
        (
            "traonet",
            {"d_model": 30, "nhead": 4},
            "TraONetConfig.d_model (30) must be a multiple of nhead (4)",
        ),
        ("varonet", {"kl_weight": -1}, "VaRONetConfig.kl_weight must be a finite number >= 0, got -1"),
        ("mambonet", {"scan": "cuda"}, "MambONetConfig.scan must be one of fast, pscan, seq, got 'cuda'"),
        ("fno", {"modes": 51}, "FNOConfig.modes must be at most 50, got 51"),
    ],
)
def test_invalid_values(name, config, message):
    with pytest.raises(NHError, match=re.escape(message)):
        get_model(name, config)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_round_trip_rebuilds_same_architecture(name):
    model = tiny(name)
    assert model.name == name
    again = get_model(name, dataclasses.asdict(model.config))
    assert again.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    again.load_state_dict(model.state_dict())
    V, t, ic, _, _ = harmonic_batch(3, 6)
    model.eval(), again.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(V, t, ic), again(V, t, ic), strict=True))


TRAIN_KEYS = ["epochs", "batch_size", "lr", "infimum_lr", "weight_decay", "grad_clip", "seed", "bf16", "compile",
              "num_workers", "dtype"]  # fmt: skip
PAPER_LR = {"deeponet": 7.3e-3, "traonet": 1.5e-3, "varonet": 8.7e-4, "mambonet": 1e-3, "fno": 1e-3}
# parameter counts of the paper configurations, as built here (VaRONet: the reference's 63 M)
PARAMS = {
    "deeponet": (68_266, 60_000, 80_000),
    "varonet": (63_353_918, 60_000_000, 66_000_000),
    "traonet": (557_506, 400_000, 700_000),
    "mambonet": (2_085_762, 1_500_000, 3_000_000),
    "fno": (1_939_842, 1_500_000, 2_500_000),
}


def test_every_model_but_symponet_is_the_papers():
    assert PAPER_MODEL_NAMES == tuple(n for n in MODEL_NAMES if n != "symponet")
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(PAPER_MODEL_NAMES)


def test_built_in_models_register_themselves_where_they_are_defined():
    """Each built-in's class statement registers it (name, config class, order); outside the
    package a model of one's own goes through register_model instead."""
    from nh_models.models import model_classes
    from nh_models.models.base import BUILT_IN

    assert MODEL_NAMES == tuple(sorted(BUILT_IN, key=lambda n: BUILT_IN[n].order))
    for name in MODEL_NAMES:
        config_class, model_class = model_classes(name)
        assert model_class.name == name and model_class.__module__ == f"nh_models.models.{name}"
        assert BUILT_IN[name].config_class is config_class and dataclasses.is_dataclass(config_class)

    @dataclasses.dataclass
    class MineConfig:
        width: int = 3

    with pytest.raises(TypeError, match="register_model"):

        class Mine(OperatorModel, config=MineConfig, order=99):
            name = "mine"


@pytest.mark.parametrize("name", PAPER_MODEL_NAMES)
def test_paper_config_files(name):
    data = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert list(data) == ["model", "train"]
    # the model section is exactly the paper configuration: every key, the dataclass defaults
    # (DeepONet's options beyond the paper, absent from the file, default to the paper's network)
    assert {**dataclasses.asdict(model_config(name)), **data["model"]} == dataclasses.asdict(model_config(name))
    beyond = {"trunk", "features", "scale", "decoder", "basis", "head_nodes", "head_layers", "head_width", "patch"}
    assert set(dataclasses.asdict(model_config(name))) - set(data["model"]) <= beyond
    assert list(data["train"]) == TRAIN_KEYS
    assert data["train"] == {
        "epochs": 250, "batch_size": 100, "lr": PAPER_LR[name], "infimum_lr": 1e-5, "weight_decay": 0.01,
        "grad_clip": 1.0, "seed": 89, "bf16": False, "compile": False, "num_workers": 0, "dtype": "float32",
    }  # fmt: skip
    # the training side's resolver reads the same file to the same values (the keys beyond the
    # paper, absent from the file, take the defaults that keep the paper's trainer)
    from nh_models.training.config import TRAIN_DEFAULTS, load_config

    resolved = load_config(name, CONFIGS / f"{name}.yaml")
    assert resolved["model"] == dataclasses.asdict(model_config(name))
    assert resolved["train"] == {**TRAIN_DEFAULTS, **data["train"]}
    assert TRAIN_DEFAULTS["schedule"] == "exp_hyperbolic" and TRAIN_DEFAULTS["fresh"] == 0
    model = get_model(name, data["model"])
    n = model.num_parameters()
    expected, low, high = PARAMS[name]
    print(f"{name}: {n:,} parameters")
    assert low <= n <= high
    assert n == expected


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_exact_det_j_agrees_with_finite_differences(name):
    """nh eval's det J of a network (automatic differentiation, forward mode where the network's
    operations allow, `for_derivatives`) against fourth-order finite differences in float64."""
    import numpy as np

    from nh_models.evaluation import autograd_jacobian_det, jacobian_det
    from nh_models.evaluation.predictors import model_predictor

    model = tiny(name).double().eval()
    V, t, ic, _, _ = (x.numpy() for x in harmonic_batch(3, 6, dtype=torch.float64))
    exact = autograd_jacobian_det(model, V, t, ic)
    fd = jacobian_det(model_predictor(model), V, t, ic, eps=1e-4)
    assert exact.shape == (3, 6) and np.abs(exact - fd).max() < 1e-6, np.abs(exact - fd).max()
    with torch.no_grad():  # the form for derivatives computes the same function
        a = model(*(torch.from_numpy(x) for x in (V, t, ic)))
        b = model.for_derivatives()(*(torch.from_numpy(x) for x in (V, t, ic)))
    assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(a, b, strict=True))
