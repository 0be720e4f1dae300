"""The corrected read-out of SympONet's processed grid (`readout: corrected`, issue 21): with its
generator at zero it is the step read-out bit for bit (torch and compiled); with the textbook
generator it takes back the partial step's O(h^2 tau) error, so that between grid points the
error falls as h^4 where the step read-out's falls as h^3, at the same lookups; its weights get
gradients, and the config and `variant` say what they do (`variant` to `corrected` from
another read-out gives the textbook generator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_symponet_processed import PROCESSED, random_problem, smooth_problem

from nh_data.errors import NHError
from nh_models.compiled import export, forward
from nh_models.evaluation import sensor_integrators as si
from nh_models.models import get_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CORRECTED = {**PROCESSED, "tables": "local", "local_layers": 0, "readout": "corrected"}


def textbook(steps: int, readout: str = "corrected"):
    return get_model("symponet", {**CORRECTED, "steps": steps, "init": "classical", "readout": readout}).double().eval()


def test_textbook_generator_is_one_one_and_zero_init_is_zero():
    assert textbook(16).local.generator_weights().tolist() == pytest.approx([1.0, 1.0], rel=1e-7)  # float32-set
    assert get_model("symponet", CORRECTED).local.generator_weights().tolist() == [0.0, 0.0]
    assert get_model("symponet", {**CORRECTED, "readout": "step"}).local.generator is None


@pytest.mark.parametrize("tables", ["spline", "local", "own"])
def test_generator_at_zero_is_the_step_readout_bit_for_bit(tables):
    cfg = {**CORRECTED, "tables": tables, "init": "classical"}
    corrected = get_model("symponet", cfg).double().eval()
    with torch.no_grad():
        corrected.local.generator.zero_()
    step = corrected.variant(readout="step")
    V, t, ic = random_problem(5, seed=8)
    with torch.no_grad():
        want, got = step(V, t, ic), corrected(V, t, ic)
    assert all((a == b).all() for a, b in zip(want, got, strict=True))
    Vn, tn, icn = (x.numpy() for x in (V, t, ic))
    for a, b in zip(forward(export(step), Vn, tn, icn), forward(export(corrected), Vn, tn, icn), strict=True):
        assert (a == b).all()


def test_corrected_readout_is_fourth_order_between_grid_points_where_step_is_third():
    """Query times between grid points (the phase tau / h drawn at random): with the textbook
    coefficients the step read-out's error falls as h^3 (its O(h^2 tau) term), the corrected
    one's as h^4 (from 128 steps on: 3.6 then 4.5 from 128 to 512, 4.0 at the grid points), and
    at 512 steps it is over 10x below."""
    V, t, ic = smooth_problem(8, seed=6)
    ref = si.integrate(V, t, ic, "yoshida4", 4000)
    steps = (128, 256, 512)
    errs = {"corrected": [], "step": []}
    for n in steps:
        for readout in errs:
            with torch.no_grad():
                q, p = textbook(n, readout)(V, t, ic)
            errs[readout].append(float(((q - ref[0]) ** 2 + (p - ref[1]) ** 2).max().sqrt()))
    for readout, order in (("corrected", 4), ("step", 3)):
        slope = np.polyfit(np.log(2.0 / np.array(steps)), np.log(errs[readout]), 1)[0]
        assert abs(slope - order) < 0.5, (readout, slope, errs[readout])
    assert errs["corrected"][-1] * 10 < errs["step"][-1], errs


def test_compiled_corrected_readout_matches_torch_at_the_same_lookups():
    model = textbook(24)
    with torch.no_grad():
        model.local.generator.copy_(torch.tensor([0.13, -0.07], dtype=torch.float64))  # (1.3, -0.7) textbook units
    V, t, ic = (x.numpy() for x in random_problem(6, seed=3))
    q, p, counts = forward(export(model), V, t, ic, counts=True)
    with torch.no_grad():
        want_q, want_p = (x.numpy() for x in model(*(torch.from_numpy(x) for x in (V, t, ic))))
    assert np.abs(q - want_q).max() <= 1e-10 * np.abs(want_q).max()
    assert np.abs(p - want_p).max() <= 1e-10 * np.abs(want_p).max()
    step = model.variant(readout="step")
    assert (counts == step.force_evaluations_per_orbit(t.shape[1])).all()
    assert model.force_evaluations_per_orbit(100) == step.force_evaluations_per_orbit(100)


def test_the_generator_weights_get_gradients():
    model = get_model("symponet", CORRECTED).double()
    V, t, ic = random_problem(4, seed=5)
    q, p = model(V, t, ic)
    (q.square().sum() + p.square().sum()).backward()
    assert model.local.generator.grad is not None and (model.local.generator.grad.abs() > 0).all()


def test_config_and_variant():
    with pytest.raises(NHError, match="readout corrected is a read-out of a leapfrog kernel") as info:
        get_model("symponet", {**CORRECTED, "prior": "yoshida4"})
    assert "\n" not in str(info.value)
    model = textbook(16)
    step = model.variant(readout="step")
    assert step.local.generator is None  # dropped: the step read-out has none
    back = step.variant(readout="corrected")
    assert back.local.generator_weights().tolist() == pytest.approx([1.0, 1.0], rel=1e-7)  # the textbook's
    assert (back.local.linear.weight == model.local.linear.weight).all()  # the rest carried over


@pytest.mark.skipif(__import__("platform").machine() not in ("x86_64", "AMD64"), reason="reads x86-64 assembly")
def test_the_generator_pass_compiles_vectorized():
    """The corrected read-out's generator runs as a pass over independent points so that it
    compiles to SIMD (a packed square root and division): a branch per division (Python's error
    model) or a scalar gather inside it would undo that and cost 0.3-0.9 us/orbit."""
    from nh_models.compiled import processed

    nt = 64
    rng = np.random.default_rng(0)
    side = rng.random((processed.GATHERED, nt))
    q, p, rest = rng.random(nt), rng.random(nt), rng.random(nt) * 0.01
    processed.generated_pass(processed.LOCAL, nt, 2.0 / 224, 1.0 / 12, 1.0 / 12, rest, side, q, p)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(p))
    asm = "\n".join(processed.generated_pass.inspect_asm().values())
    assert "sqrtpd" in asm and "divpd" in asm
