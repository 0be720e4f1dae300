"""The chunked selective scan against mambapy's reference `selective_scan_seq` (issue 4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mambapy.mamba import Mamba, MambaBlock, MambaConfig

import nh_models.models.scan as scan_mod
from nh_models.models import get_model
from nh_models.models.mambonet import mamba_forward
from nh_models.models.scan import selective_scan, selective_scan_ref

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def scan_inputs(Bt: int, L: int, E: int, N: int, seed: int = 0, dtype=torch.float64):
    """Inputs shaped as inside a MambaBlock: positive step sizes delta, negative A."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(Bt, L, E, generator=g, dtype=dtype)
    delta = F.softplus(torch.randn(Bt, L, E, generator=g, dtype=dtype) - 1)
    A = -torch.exp(torch.randn(E, N, generator=g, dtype=dtype))
    B = torch.randn(Bt, L, N, generator=g, dtype=dtype)
    C = torch.randn(Bt, L, N, generator=g, dtype=dtype)
    D = torch.randn(E, generator=g, dtype=dtype)
    return [v.requires_grad_() for v in (x, delta, A, B, C, D)]


def mambapy_seq(E: int, N: int):
    """mambapy's own sequential scan (a bound method of a MambaBlock with d_inner E, d_state N)."""
    block = MambaBlock(MambaConfig(d_model=E // 2, n_layers=1, d_state=N))
    assert block.config.d_inner == E
    return block.selective_scan_seq


@pytest.mark.parametrize(
    ("Bt", "L", "E", "N", "chunk_elements"),
    [
        (3, 37, 8, 4, 1 << 20),  # one chunk
        (7, 23, 6, 3, 23 * 6 * 3 * 2),  # chunks of 2 samples, the last one short
        (5, 1, 4, 2, 1 << 20),  # L = 1
        (2, 100, 8, 16, 1),  # chunks of one sample, L = 100 (no padding to 128)
    ],
)
def test_scan_matches_mambapy_seq(Bt, L, E, N, chunk_elements, monkeypatch):
    monkeypatch.setattr(scan_mod, "_CPU_CHUNK_ELEMENTS", chunk_elements)
    args = scan_inputs(Bt, L, E, N)
    y_ref = mambapy_seq(E, N)(*args)
    y = selective_scan(*args)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad(y_ref, args, dy)
    grads = torch.autograd.grad(y, args, dy)
    for name, g, g_ref in zip("x delta A B C D".split(), grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10, msg=f"gradient of {name}")


def test_scan_float32_close_to_float64():
    args64 = scan_inputs(4, 100, 16, 8, seed=3)
    args32 = [a.detach().float() for a in args64]
    y64 = selective_scan(*args64)
    y32 = selective_scan(*args32)
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    Bt=st.integers(1, 4),
    L=st.integers(1, 12),
    E=st.integers(1, 5),
    N=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_scan_matches_step_by_step_loop(Bt, L, E, N, seed):
    args = scan_inputs(Bt, L, E, N, seed=seed)
    torch.testing.assert_close(selective_scan(*args), selective_scan_ref(*args), rtol=1e-12, atol=1e-12)


def test_scan_gradcheck():
    args = scan_inputs(2, 6, 3, 2, seed=5)
    assert torch.autograd.gradcheck(selective_scan, args)


def test_mamba_forward_equals_mambapy_module():
    """The written-out Mamba forward with mambapy's scans equals mambapy's Mamba.forward."""
    torch.manual_seed(0)
    mamba = Mamba(MambaConfig(d_model=8, n_layers=2, d_state=4)).double()
    x = torch.randn(3, 100, 8, dtype=torch.float64)
    expected = mamba(x)  # mambapy: pscan
    # mambapy rounds A = -exp(A_log) to float32 even in a float64 model (relative error ~1e-8 in A);
    # mamba_forward keeps float64, hence the tolerance
    for scan in ("pscan", "seq", "fast"):
        torch.testing.assert_close(mamba_forward(mamba, x, scan), expected, rtol=1e-7, atol=1e-9)
    # in float32 both compute A the same way
    mamba32, x32 = mamba.float(), x.float()
    for scan in ("pscan", "seq", "fast"):
        torch.testing.assert_close(mamba_forward(mamba32, x32, scan), mamba32(x32), rtol=1e-5, atol=1e-6)


def test_mambonet_scans_agree_with_gradients():
    cfg = {
        "d_model": 8,
        "mamba_layers": 2,
        "d_state": 4,
        "nhead": 2,
        "decoder_layers": 1,
        "dim_feedforward": 16,
    }
    g = torch.Generator().manual_seed(0)
    V = torch.randn(3, 100, generator=g, dtype=torch.float64)
    t = torch.rand(3, 9, generator=g, dtype=torch.float64)
    ic = torch.randn(3, 2, generator=g, dtype=torch.float64)
    results = {}
    for scan in ("fast", "pscan", "seq"):
        torch.manual_seed(0)
        model = get_model("mambonet", {**cfg, "scan": scan}).double()
        q, p = model(V, t, ic)
        (q.square().mean() + p.square().mean()).backward()
        results[scan] = (q, p, {k: v.grad for k, v in model.named_parameters()})
    for scan in ("pscan", "seq"):
        torch.testing.assert_close(results["fast"][0], results[scan][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(results["fast"][1], results[scan][1], rtol=1e-12, atol=1e-12)
        for k, grad in results["fast"][2].items():
            torch.testing.assert_close(grad, results[scan][2][k], rtol=1e-9, atol=1e-12, msg=k)


def test_mambonet_under_torch_compile_equals_eager():
    """torch.compile (CPU backend here) compiles the model around the scan, which stays eager
    (`scan._scan`): same outputs and gradients as the eager model. The abort this avoids
    ("double free or corruption" when the traced scan was compiled) showed only in a full
    `_small` training run after minutes; this test checks the compiled path is correct."""
    torch.manual_seed(0)
    cfg = {"d_model": 16, "mamba_layers": 1, "d_state": 4, "nhead": 2, "decoder_layers": 1, "dim_feedforward": 32}
    model = get_model("mambonet", cfg)
    g = torch.Generator().manual_seed(1)
    V, t, ic = torch.randn(6, 100, generator=g), torch.rand(6, 20, generator=g), torch.rand(6, 2, generator=g)

    def loss_and_grads(net):
        model.zero_grad()
        q, p = net(V, t, ic)
        (q.square().sum() + p.sum()).backward()
        return q.detach(), p.detach(), [w.grad.clone() for w in model.parameters()]

    q0, p0, g0 = loss_and_grads(model)
    q1, p1, g1 = loss_and_grads(torch.compile(model))
    torch.testing.assert_close(q1, q0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(p1, p0, rtol=1e-4, atol=1e-5)
    for (name, _), a, b in zip(model.named_parameters(), g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
