"""The basis head and the sequence-model options beyond the paper (nh_models/models/heads.py):
`decoder: chebyshev`, `patch`, and the input options on MambONet and VaRONet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nh_data.errors import NHError
from nh_models.models import get_model
from nh_models.models.heads import chebyshev_expand, patchify

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# small networks of each sequence model, with every option beyond the paper switched on
SMALL = {
    "traonet": {"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 16, "patch": 4},
    "fno": {
        "d_model": 16,
        "fourier_layers": 1,
        "modes": 4,
        "nhead": 2,
        "decoder_layers": 1,
        "dim_feedforward": 16,
        "patch": 2,
    },
    "mambonet": {
        "d_model": 16,
        "mamba_layers": 1,
        "nhead": 2,
        "decoder_layers": 1,
        "dim_feedforward": 16,
        "patch": 4,
    },
    "varonet": {"hidden_size": 16, "num_layers": 1, "latent_size": 4, "patch": 4},
}
HEAD = {
    "decoder": "chebyshev",
    "features": "energy",
    "scale": True,
    "basis": 12,
    "head_nodes": 16,
    "head_layers": 2,
    "head_width": 4,
}
CONFIG_CLASS = {
    "traonet": "TraONetConfig",
    "fno": "FNOConfig",
    "mambonet": "MambONetConfig",
    "varonet": "VaRONetConfig",
}
PAPER_DECODER = {"traonet": "attention", "fno": "attention", "mambonet": "attention", "varonet": "lstm"}
# parameter counts of the paper networks (the defaults): the new options must not change them
PAPER_PARAMETERS = {"traonet": 557_506, "fno": 1_939_842, "mambonet": 2_085_762, "varonet": 63_353_918}


def inputs(B: int = 4, W: int = 9, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    V = torch.rand(B, 100, generator=g, dtype=dtype) * 2
    t = torch.sort(torch.rand(B, W, generator=g, dtype=dtype) * 2, dim=1).values
    ic = torch.rand(B, 2, generator=g, dtype=dtype) * torch.tensor([0.6, 0.5], dtype=dtype) + torch.tensor(
        [0.2, 0.0], dtype=dtype
    )
    return V, t, ic


@pytest.mark.parametrize("name", sorted(SMALL))
def test_basis_head_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = get_model(name, {**SMALL[name], **HEAD})
    assert not hasattr(model, "decoder") and not hasattr(model, "decoder_q")
    V, t, ic = inputs()
    q, p = model(V, t, ic)
    assert q.shape == p.shape == (4, 9) and torch.isfinite(q).all() and torch.isfinite(p).all()
    (q.square().mean() + p.square().mean() + model.regularizer()).backward()
    missing = [n for n, w in model.named_parameters() if w.grad is None or not torch.isfinite(w.grad).all()]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(SMALL))
def test_basis_head_output_is_a_chebyshev_series_of_degree_below_basis(name):
    """q(t) and p(t) lie exactly in the span of T_0..T_{K-1}: a least-squares fit of degree K-1
    leaves round-off, one of degree K-3 does not (the head really uses its K terms)."""
    torch.manual_seed(0)
    model = get_model(name, {**SMALL[name], **HEAD}).double().eval()
    V, _, ic = inputs(2, 1, torch.float64)
    t = torch.linspace(0, 2, 200, dtype=torch.float64).expand(2, 200)
    with torch.no_grad():
        q, p = model(V, t, ic)
    x = t[0].numpy() - 1.0
    K = HEAD["basis"]
    for y in (q[0].numpy(), p[1].numpy()):
        fit = np.polynomial.chebyshev.chebfit(x, y, K - 1)
        assert np.abs(np.polynomial.chebyshev.chebval(x, fit) - y).max() < 1e-10
        low = np.polynomial.chebyshev.chebfit(x, y, K - 3)
        assert np.abs(np.polynomial.chebyshev.chebval(x, low) - y).max() > 1e-8


@pytest.mark.parametrize("name", sorted(SMALL))
def test_basis_head_shared_grid_equals_per_orbit_times(name):
    torch.manual_seed(0)
    model = get_model(name, {**SMALL[name], **HEAD}).double().eval()
    V, _, ic = inputs(3, 1, torch.float64)
    t = torch.linspace(0, 2, 17, dtype=torch.float64).expand(3, 17).clone()
    with torch.no_grad():
        q1, p1 = model(V, t, ic)  # one basis for the batch
        t[0, 3] += 1e-9  # no longer shared: the batched path
        q2, p2 = model(V, t, ic)
    assert torch.allclose(q1[1:], q2[1:], atol=1e-12) and torch.allclose(p1[1:], p2[1:], atol=1e-12)


def test_chebyshev_expand_is_the_series():
    coef = torch.tensor([[[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]], dtype=torch.float64)  # (1, 2, 3)
    t = torch.tensor([[0.0, 0.5, 1.0, 2.0]], dtype=torch.float64)
    q, p = chebyshev_expand(coef, t, torch.tensor([0.25, -0.25], dtype=torch.float64))
    x = t[0].numpy() - 1.0
    assert np.allclose(q[0].numpy(), np.polynomial.chebyshev.chebval(x, [1.0, 2.0, 3.0]) + 0.25)
    assert np.allclose(p[0].numpy(), np.polynomial.chebyshev.chebval(x, [0.5, 0.0, -1.0]) - 0.25)


def test_patchify_puts_neighbouring_sensors_side_by_side():
    x = torch.arange(2 * 100 * 3, dtype=torch.float32).view(2, 100, 3)  # (B, sensors, channels)
    y = patchify(x, 4)
    assert y.shape == (2, 25, 12)
    for j, k, c in [(0, 0, 0), (3, 2, 1), (24, 3, 2)]:
        assert y[1, j, k * 3 + c] == x[1, 4 * j + k, c]
    assert torch.equal(patchify(x, 1), x)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_patches_see_every_sensor(name):
    """With patches, changing one sensor value still changes the prediction."""
    torch.manual_seed(0)
    model = get_model(name, {**SMALL[name], **HEAD}).double().eval()
    V, t, ic = inputs(1, 5, torch.float64)
    with torch.no_grad():
        q0, _ = model(V, t, ic)
        for j in (1, 50, 98):
            V2 = V.clone()
            V2[0, j] += 0.1
            q1, _ = model(V2, t, ic)
            assert (q0 - q1).abs().max() > 1e-12, j


@pytest.mark.parametrize("name", sorted(SMALL))
def test_paper_networks_are_unchanged(name):
    model = get_model(name)
    assert model.config.decoder == PAPER_DECODER[name] and model.config.patch == 1
    assert model.num_parameters() == PAPER_PARAMETERS[name]
    assert not any(k.startswith("head.") for k in model.state_dict())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_head_options_are_named(name):
    cls = CONFIG_CLASS[name]
    small = SMALL[name]
    decoders = f"{PAPER_DECODER[name]}, chebyshev"
    with pytest.raises(NHError, match=f"{cls}.decoder must be one of {decoders}, got 'fourier'"):
        get_model(name, {**small, "decoder": "fourier"})
    with pytest.raises(NHError, match=f"{cls}.patch must divide 100, got 3"):
        get_model(name, {**small, "patch": 3})
    with pytest.raises(NHError, match=f"{cls}.basis must be >= 2, got 1"):
        get_model(name, {**small, **HEAD, "basis": 1})
    with pytest.raises(NHError, match=f"{cls}.head_width must be an integer >= 1, got 0"):
        get_model(name, {**small, **HEAD, "head_width": 0})
    with pytest.raises(NHError, match=f"{cls}.features must be one of sensors, energy, got 'grid'"):
        get_model(name, {**small, "features": "grid"})


def test_fno_modes_are_bounded_by_the_tokens():
    with pytest.raises(NHError, match="FNOConfig.modes must be at most 12, got 16"):
        get_model("fno", {"patch": 4, "modes": 16})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_basis_head_overfits_eight_orbits(name):
    """Eight orbits of one smooth family: the head's loss falls 10x in 150 Adam steps."""
    torch.manual_seed(0)
    model = get_model(name, {**SMALL[name], **HEAD})
    V, _, ic = inputs(8, 1)
    t = torch.linspace(0, 2, 20).expand(8, 20)
    w = 1.0 + ic[:, :1]  # (8, 1)
    q_true = ic[:, :1] + 0.1 * torch.sin(w * t)
    p_true = 0.1 * w * torch.cos(w * t)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        q, p = model(V, t, ic)
        loss = 0.5 * ((q - q_true).square().mean() + (p - p_true).square().mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10
