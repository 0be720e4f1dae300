"""SympONet's processed grid (issue 21): the prior alone is exactly leapfrog or Yoshida-4 on the
sensor spline, the stated cost is what a counting force function counts, the map is symplectic
and the identity at t = 0 for any weights, the correction is local, the classical correction
is fourth order, the equal-cost baselines converge at their orders, and the small recipe learns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from naive import fixed_grid_reference, prior_substeps

from nh_data.errors import NHError
from nh_data.random_potentials import sample_potentials
from nh_models.evaluation import sensor_integrators as si
from nh_models.evaluation.cases import TestData
from nh_models.evaluation.cost_table import equal_cost_table, interpolation_floor
from nh_models.models import get_model, processed, processor, sensor_spline
from nh_models.models.correction import FEATURES, GridCorrection

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PROCESSED = {"grid": "processed", "steps": 16, "shears": 0, "local_width": 8}
X = np.linspace(0, 1, 100)
K, C = 6.0, 0.45  # V = K (x - C)^2: the quintic spline reproduces it, V' = 2 K (x - C) exactly


def harmonic(B: int) -> torch.Tensor:
    return torch.from_numpy(K * (X - C) ** 2)[None].repeat(B, 1)


def smooth_problem(B: int, seed: int, t=None):
    """One smooth potential and orbits that stay well inside the box (no clamped force)."""
    rng = np.random.default_rng(seed)
    V = torch.from_numpy(1.5 * np.cos(2 * np.pi * X) + 0.3 * np.sin(5 * X))[None].repeat(B, 1)
    if t is None:
        t = torch.from_numpy(np.sort(rng.uniform(0.0, 2.0, (B, 6)), axis=1))
        t[:, -1] = 2.0
    ic = torch.from_numpy(np.stack([rng.uniform(0.35, 0.65, B), rng.uniform(-0.5, 0.5, B)], axis=1))
    return V, t, ic


def random_problem(B: int, seed: int):
    rng = np.random.default_rng(seed)
    V = torch.from_numpy(sample_potentials(rng, B).V)
    t = torch.from_numpy(np.sort(rng.uniform(0.0, 2.0, (B, 5)), axis=1))
    t[:, -1] = 2.0
    ic = torch.from_numpy(np.stack([rng.uniform(0.2, 0.8, B), rng.uniform(-1.0, 1.0, B)], axis=1))
    return V, t, ic


def randomise(model, scale: float) -> None:
    torch.manual_seed(3)
    with torch.no_grad():
        for w in model.parameters():
            w.copy_(scale * torch.randn_like(w))


@pytest.mark.parametrize("prior", ["leapfrog", "yoshida4"])
def test_learned_false_is_exactly_the_prior_integrator_on_the_sensor_spline(prior):
    model = get_model("symponet", {**PROCESSED, "steps": 8, "prior": prior}).double()
    randomise(model, 0.5)  # trained-looking weights: learned: false must ignore them
    alone = model.prior_alone()
    assert alone.config.learned is False and model.config.learned is True
    V = harmonic(2)
    t = torch.tensor([[0.3, 1.0, 2.0, 0.25], [1.75, 0.0, 1.9, 0.6]], dtype=torch.float64)
    ic = torch.tensor([[0.5, 0.2], [0.3, -0.4]], dtype=torch.float64)
    q, p = alone(V, t, ic)
    qq, pp = fixed_grid_reference(ic, t, 2.0 / 8, prior_substeps(prior), K, C)
    assert q.detach().numpy() == pytest.approx(qq, abs=1e-12)
    assert p.detach().numpy() == pytest.approx(pp, abs=1e-12)
    q_learned, _ = model(V, t, ic)
    assert (q_learned - q).abs().max() > 1e-6  # the learned correction does change the map


def counting_lookup(monkeypatch) -> list[int]:
    """Patch sensor_spline.lookup to count the points it reads per orbit; returns the counter."""
    count = [0]
    real = sensor_spline.lookup

    def lookup(tables, q):
        count[0] += q.shape[1]  # q (B, points): each orbit reads `points` of them
        return real(tables, q)

    monkeypatch.setattr(sensor_spline, "lookup", lookup)
    return count


@pytest.mark.parametrize(
    "config",
    [PROCESSED, {**PROCESSED, "learned": False}, {**PROCESSED, "prior": "yoshida4"}, {**PROCESSED, "tables": "local"}, {**PROCESSED, "readout": "scaled"}, {**PROCESSED, "readout": "scaled", "learned": False},
     {**PROCESSED, "readout": "hermite"}, {**PROCESSED, "readout": "hermite", "learned": False},
     {**PROCESSED, "tables": "own", "local_layers": 0}, {**PROCESSED, "tables": "local", "readout": "corrected"},
     {**PROCESSED, "tables": "inline", "local_layers": 0},
     {"grid": "fixed", "steps": 10, "shears": 0, "latent": 8, "nodes": 16},
     {"grid": "fixed", "steps": 10, "shears": 0, "latent": 8, "nodes": 16, "prior": "yoshida4"},
     {"grid": "scaled", "steps": 6, "shears": 1, "latent": 8, "nodes": 16}],  # fmt: skip
    ids=["processed", "prior-alone", "processed-yoshida4", "local-tables", "scaled", "scaled-prior-alone", "hermite", "hermite-prior-alone", "own-tables", "corrected", "inline-tables", "fixed", "fixed-yoshida4", "scaled"],
)
def test_force_evaluations_per_orbit_match_a_counting_force_function(monkeypatch, config):
    model = get_model("symponet", config).double()
    V, t, ic = random_problem(3, seed=1)
    count = counting_lookup(monkeypatch)
    with torch.no_grad():
        model(V, t, ic)
    assert count[0] == model.force_evaluations_per_orbit(t.shape[1])


@pytest.mark.parametrize("method", si.METHODS)
def test_integrator_evaluations_match_a_counting_force_function(monkeypatch, method):
    V, t, ic = random_problem(2, seed=4)
    count = counting_lookup(monkeypatch)
    si.integrate(V, t, ic, method, 12)
    # processed: the kernel's force and the processor's V', V'' at a stored state are one lookup
    # (so are the Hermite derivative's); nodal derivatives of V~ are read from the table, not looked up
    assert count[0] == si.evaluations(method, 12)
    assert si.evaluations(method, si.steps_for(method, 233)) <= 233 < si.evaluations(method, si.steps_for(method, 233) + 1)


@pytest.mark.parametrize(
    "scale,tables,readout",
    [(scale, tables, readout) for scale in (0.05, 0.1)
     for tables, readout in (("spline", "step"), ("local", "step"), ("local", "scaled"))]
    # the corrected read-out's quadratic has its root only while the processor's lift is far from
    # singular (1 + A'' > 0 by a margin): random weights of 0.1 bring 1 + A'' near 0 on some orbit
    + [(0.05, "local", "corrected"), (0.05, "spline", "corrected")],
)  # fmt: skip
def test_det_j_is_one_and_t0_is_the_identity_for_random_weights(scale, tables, readout):
    model = get_model("symponet", {**PROCESSED, "local_layers": 2, "tables": tables, "readout": readout}).double()
    randomise(model, scale)
    V, t, ic = random_problem(16, seed=2)
    t = torch.cat([torch.zeros(16, 1, dtype=torch.float64), t], dim=1)
    dV, a, b = model.local(V)
    assert a.abs().max() > 1e-4 and b.abs().max() > 1e-4  # a real processor, not the identity
    tol = 2e-14 * (1.0 + float(a.detach().abs().max()))  # round-off of chi(chi^-1(x)) through values of size |A'|
    assert_identity_at_t0_and_det_j_one(model, V, t, ic, tol)


def assert_identity_at_t0_and_det_j_one(model, V, t, ic, tol: float) -> None:
    """The map at t[:, 0] = 0 is the identity to `tol`; at every other time det J = 1 to round-off
    (float64 autograd, relative to the size of the determinant's two products)."""
    icg = ic.clone().requires_grad_(True)
    q, p = model(V, t, icg)
    assert torch.isfinite(q).all()
    assert (q[:, 0] - ic[:, 0]).abs().max() < tol and (p[:, 0] - ic[:, 1]).abs().max() < tol
    for j in range(1, t.shape[1]):
        (dq,) = torch.autograd.grad(q[:, j].sum(), icg, retain_graph=True)
        (dp,) = torch.autograd.grad(p[:, j].sum(), icg, retain_graph=True)
        det = dq[:, 0] * dp[:, 1] - dq[:, 1] * dp[:, 0]
        size = (dq[:, 0] * dp[:, 1]).abs() + (dq[:, 1] * dp[:, 0]).abs()
        assert ((det - 1).abs() / size).max() < 1e-11


def test_chaining_two_windows_is_one_integration():
    """Prediction at t = 2 fed back as the next initial condition continues the same trajectory:
    chi^-1 undoes chi to round-off, so window 2 is steps n + 1 .. 2n of the kernel."""
    model = get_model("symponet", {**PROCESSED, "steps": 32}).double()
    randomise(model, 0.05)
    V, _, ic = random_problem(4, seed=5)
    t2 = torch.full((4, 1), 2.0, dtype=torch.float64)
    with torch.no_grad():
        q1, p1 = model(V, t2, ic)
        q2, p2 = model(V, t2, torch.cat([q1, p1], 1))
        # straight through: the same kernel on a window of 4 (h unchanged: 64 steps of 4 / 64)
        dV, a, b = model.local(V)
        kernel, proc = sensor_spline.force_table(V + dV), processor.tables(a, b)
        q, p, _ = processor.invert(ic[:, :1], ic[:, 1:], proc)
        table = kernel.unsqueeze(2)
        h = 2.0 / 32
        F = sensor_spline.lookup(table, q)[..., 0]
        for _ in range(64):
            p = p - 0.5 * h * F
            q = q + h * p
            F = sensor_spline.lookup(table, q)[..., 0]
            p = p - 0.5 * h * F
        qe, pe = processor.apply(q, p, sensor_spline.lookup(proc, q))
    assert torch.allclose(q2, qe, atol=1e-12) and torch.allclose(p2, pe, atol=1e-12)


@pytest.mark.parametrize("tables", ["spline", "local"])
def test_the_correction_is_local(tables):
    torch.manual_seed(0)
    corr = GridCorrection(0.02, width=16, layers=2, kernel=5, tables=tables).double()
    randomise(corr, 0.3)
    V = torch.from_numpy(sample_potentials(np.random.default_rng(1), 1).V)
    bump = torch.zeros_like(V)
    bump[0, 48:53] = torch.tensor([0.2, 0.6, 1.0, 0.6, 0.2], dtype=torch.float64) * 1e-3
    with torch.no_grad():
        before = torch.stack(corr(V))
        after = torch.stack(corr(V + bump))
    moved = (after - before).abs()[:, 0]  # (3, 100): dV, a, b
    for out in moved:
        assert out.sum() > 0
        near = out[38:63].sum() / out.sum()  # within 12 sensor spacings of the bump
        assert near > 0.99


@pytest.mark.parametrize(
    "readout,tables", [("hermite", "spline"), ("step", "spline"), ("step", "local"), ("scaled", "local")]
)
def test_classical_correction_is_fourth_order_on_the_sensor_spline(readout, tables):
    """The linear part set to the textbook coefficients (init: classical) turns leapfrog into a
    fourth-order method: its error against a converged integration falls as h^4, leapfrog's as h^2
    (with the partial-step read-out at the grid points; between them its read-out is third order)."""
    grid = torch.linspace(0, 2, 17, dtype=torch.float64)[None].repeat(8, 1)  # grid points of every n
    V, t, ic = smooth_problem(8, seed=6, t=grid if readout == "step" else None)  # scaled: between grid points too
    ref = si.integrate(V, t, ic, "yoshida4", 4000)
    errs = {"classical": [], "leapfrog": []}
    steps = (64, 128, 256)
    for n in steps:
        cfg = {**PROCESSED, "steps": n, "init": "classical", "local_layers": 0, "readout": readout, "tables": tables}
        model = get_model("symponet", cfg).double()
        with torch.no_grad():
            for name, m in (("classical", model), ("leapfrog", model.prior_alone())):
                q, p = m(V, t, ic)
                errs[name].append(float(((q - ref[0]) ** 2 + (p - ref[1]) ** 2).max().sqrt()))
    for name, order in (("classical", 4), ("leapfrog", 2)):
        slope = np.polyfit(np.log(2.0 / np.array(steps)), np.log(errs[name]), 1)[0]
        assert abs(slope - order) < 0.5, (name, slope, errs[name])
    assert errs["classical"][-1] < errs["leapfrog"][-1] / 100


@pytest.mark.parametrize("method,order", [("leapfrog", 2), ("yoshida4", 4), ("rk4", 4), ("processed", 4)])
def test_equal_cost_integrators_converge_at_their_order(method, order):
    V, t, ic = smooth_problem(8, seed=7)
    ref = si.integrate(V, t, ic, "yoshida4", 4000)
    steps = (40, 80, 160)
    errs = []
    for n in steps:
        q, p = si.integrate(V, t, ic, method, n)
        errs.append(float(((q - ref[0]) ** 2 + (p - ref[1]) ** 2).max().sqrt()))
    slope = np.polyfit(np.log(2.0 / np.array(steps)), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.5, (method, slope, errs)


def test_equal_cost_table_gives_every_integrator_at_most_the_models_evaluations():
    model = get_model("symponet", {**PROCESSED, "steps": 32, "init": "classical", "local_layers": 0})
    V, t, ic = random_problem(6, seed=8)
    ref = si.integrate(V, t, ic, "yoshida4", 2000)
    data = TestData(V.numpy(), t.numpy(), ic.numpy(), ref[0].numpy(), ref[1].numpy(), np.full(6, 0.5))
    table = equal_cost_table(model, data, repeats=1)
    budget = table["evaluations_per_orbit"]
    assert budget == model.force_evaluations_per_orbit(5)
    rows = table["rows"]
    assert set(rows) == {"model", "prior alone", "classical coefficients", *si.METHODS, "rk4 at equal time",
                         "processed at equal time"}  # fmt: skip
    for name in si.METHODS:
        assert rows[name]["evaluations"] <= budget
        assert si.evaluations(name, rows[name]["steps"] + 1) > budget
    assert rows["model"]["loss"] < rows["prior alone"]["loss"]  # the classical correction helps
    assert all(r["us_per_orbit"] > 0 for r in rows.values())
    # the floor: the truth here is an orbit on the spline (Yoshida-4, 2000 steps), so only its own
    # integration error is left (3e-13); orbits moved by 1e-3 in q sit 0.5 * 1e-6 from the spline's
    assert 0 <= table["interpolation_floor"] < 1e-11
    moved = dataclasses.replace(data, q=data.q + 1e-3)
    assert interpolation_floor(moved) == pytest.approx(0.5e-6, rel=1e-3)


def test_the_parameter_count_leaves_out_the_weights_the_forward_pass_never_reads():
    """`tables: inline` reads two of the dictionary's 27 weights and `own` twelve: the count (the
    training line, metrics.json, `nh eval`) says so, and the others get no gradient."""
    V, t, ic = smooth_problem(3, 1)
    for tables, used in (("spline", 27), ("local", 27), ("own", 12), ("inline", 2)):
        model = get_model("symponet", {**PROCESSED, "local_layers": 0, "tables": tables, "init": "classical"}).double()
        assert model.num_parameters() == used, tables
        q, p = model(V, t, ic)
        (q.square().sum() + p.square().sum()).backward()
        assert int((model.local.linear.weight.grad != 0).sum()) <= used, tables


def test_features_are_the_dictionary_and_zero_init_is_no_correction():
    corr = GridCorrection(0.02).double()
    V = torch.from_numpy(sample_potentials(np.random.default_rng(2), 3).V)
    dV, a, b = corr(V)
    assert dV.abs().max() == 0 and a.abs().max() == 0 and b.abs().max() == 0
    corr.classical()
    dV, a, b = corr(V)
    v1 = sensor_spline.nodal_derivatives(V)[:, 0]
    assert torch.allclose(dV, -(0.02**2 / 24) * v1**2, rtol=1e-12, atol=0)
    assert torch.allclose(a, -(0.02**2 / 12) * v1, rtol=1e-12, atol=0)
    assert b.abs().max() == 0
    assert len(FEATURES) == corr.linear.weight.shape[1]


def test_processed_config_errors_are_one_line():

    with pytest.raises(NHError, match="shears: 0"):
        get_model("symponet", {**PROCESSED, "shears": 1})
    with pytest.raises(NHError, match="init classical"):
        get_model("symponet", {**PROCESSED, "init": "classical", "prior": "yoshida4"})
    with pytest.raises(NHError, match="learned must be true or false"):
        get_model("symponet", {**PROCESSED, "learned": "no"})
    with pytest.raises(NHError, match="readout hermite is a read-out of grid processed"):
        get_model("symponet", {"grid": "fixed", "readout": "hermite"})
    with pytest.raises(NHError, match="init must be one of"):
        get_model("symponet", {**PROCESSED, "init": "textbook"})
    with pytest.raises(NHError, match="tables must be one of spline, local, own"):
        get_model("symponet", {**PROCESSED, "tables": "cubic"})
    with pytest.raises(NHError, match="tables own is the linear dictionary alone"):
        get_model("symponet", {**PROCESSED, "tables": "own", "local_layers": 1})
    with pytest.raises(NHError, match="readout scaled is a read-out of a leapfrog kernel"):
        get_model("symponet", {**PROCESSED, "readout": "scaled", "prior": "yoshida4"})


def test_scaled_readout_is_continuous_and_chi_at_the_grid_points():
    """At a grid point the scaled read-out is chi of the grid state, as the step read-out is; just
    past it, it moves continuously (no jump from the scaling), at any weights."""
    cfg = {**PROCESSED, "steps": 10, "tables": "local", "init": "classical"}
    step, scaled = (get_model("symponet", {**cfg, "readout": r}).double().eval() for r in ("step", "scaled"))
    randomise(scaled.local, 0.02)
    step.load_state_dict(scaled.state_dict())
    V, _, ic = random_problem(4, seed=12)
    h = 0.2
    t = torch.tensor([[0.0, 3 * h, 3 * h + 1e-9, 4 * h - 1e-9, 2.0]], dtype=torch.float64).repeat(4, 1)
    with torch.no_grad():
        qs, ps = step(V, t, ic)
        qc, pc = scaled(V, t, ic)
    for j in (0, 1, 4):  # grid points: the same map
        assert torch.allclose(qc[:, j], qs[:, j], atol=1e-13) and torch.allclose(pc[:, j], ps[:, j], atol=1e-13)
    assert torch.allclose(qc[:, 2], qc[:, 1], atol=1e-7) and torch.allclose(pc[:, 2], pc[:, 1], atol=1e-7)
    with torch.no_grad():
        q4, p4 = scaled(V, torch.full((4, 1), 4 * h, dtype=torch.float64), ic)
    assert torch.allclose(qc[:, 3], q4[:, 0], atol=1e-7) and torch.allclose(pc[:, 3], p4[:, 0], atol=1e-7)


def test_local_table_is_c1_exact_for_cubics_and_through_the_grid_values():
    """Cubics are reproduced exactly on every interval (ends included); any grid values are
    interpolated, with a continuous first derivative at the sensors."""
    x = torch.from_numpy(X)
    cubic = (0.3 - 1.2 * x + 2.5 * x**2 - 4.0 * x**3)[None]
    table = sensor_spline.local_table(cubic).unsqueeze(2)
    q = torch.from_numpy(np.random.default_rng(0).uniform(0.0, 1.0, (1, 500)))
    assert torch.allclose(sensor_spline.lookup(table, q)[..., 0], 0.3 - 1.2 * q + 2.5 * q**2 - 4.0 * q**3, atol=1e-13)
    y = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 100)))
    tab = sensor_spline.local_table(y)[0]  # (99, 5): in s on each interval
    assert torch.allclose(tab[:, 0], y[0, :-1], atol=1e-14)
    assert torch.allclose(tab.sum(1), y[0, 1:], atol=1e-13)
    slope_end = tab[:-1, 1] + 2 * tab[:-1, 2] + 3 * tab[:-1, 3]  # d/ds at s = 1 of interval i
    assert torch.allclose(slope_end, tab[1:, 1], atol=1e-12)  # = at s = 0 of interval i + 1


def test_feature_slopes_are_the_derivatives_of_the_features():
    """On a cubic V (which the quintic spline reproduces), the slopes of `features` are the exact
    x-derivatives of the nine features, to round-off."""
    from nh_models.models.correction import features

    x = torch.from_numpy(X).requires_grad_(True)
    V = (1.0 - 2.0 * x + 3.0 * x**2 - 5.0 * x**3)[None]
    f, d = features(V.detach(), slopes=True)
    assert torch.allclose(f, features(V.detach()))
    for c in range(f.shape[1]):
        (want,) = torch.autograd.grad(_feature_of(x, c).sum(), x)
        # V'''' is a third difference over dx^3 of the table: where it should vanish, round-off
        # leaves 7e-8 (V'''') and 1.5e-7 (V' V'''' in feature 7's slope); a lost term is O(0.1)
        assert torch.allclose(d[0, c], want / list(FEATURES.values())[c], rtol=1e-9, atol=1e-6), c


def _feature_of(x, c):
    """Feature c of the dictionary (`correction.FEATURES`, unscaled) of V = 1 - 2x + 3x^2 - 5x^3, as a function of x."""
    from nh_data.problem import V0

    v = 1.0 - 2.0 * x + 3.0 * x**2 - 5.0 * x**3
    v1, v2, v3 = -2.0 + 6.0 * x - 15.0 * x**2, 6.0 - 30.0 * x, -30.0 + 0.0 * x
    return [v - V0, v1, v2, v3, v1**2, v1**2 * v2, v2**2, v1 * v3, v1**4][c]


def test_local_tables_give_the_spline_tables_corrections():
    """The same weights through local cubics (`tables: local`, no solve) or through the spline:
    the same map to O(dx^4 h^2), far below the correction itself."""
    V, t, ic = smooth_problem(6, seed=8)
    cfg = {**PROCESSED, "steps": 32, "init": "classical", "local_layers": 0}
    spline, local = (get_model("symponet", {**cfg, "tables": k}).double().eval() for k in ("spline", "local"))
    with torch.no_grad():
        qs, ps = spline(V, t, ic)
        ql, pl = local(V, t, ic)
        q0, p0 = spline.prior_alone()(V, t, ic)
    gap = max((qs - ql).abs().max(), (ps - pl).abs().max())
    assert gap < 1e-3 * max((qs - q0).abs().max(), (ps - p0).abs().max())


def test_own_tables_read_the_linear_part_from_the_potentials_own_spline():
    """`tables: own`: A' of the textbook correction is -(h^2 / 12) V' from V's own table, exactly,
    A'' its derivative, no kick; the kernel differs from `local`'s only by the re-interpolation of
    dF's linear part (none here) and the map by O(dx^4 h^2) from `local`'s."""
    V, t, ic = smooth_problem(6, seed=8)
    cfg = {**PROCESSED, "steps": 32, "init": "classical", "local_layers": 0}
    own, local = (get_model("symponet", {**cfg, "tables": k}).double().eval() for k in ("own", "local"))
    force = sensor_spline.force_table(V)
    with torch.no_grad():
        kernel, proc = own.local.own(V, force)
        qo, po = own(V, t, ic)
        ql, pl = local(V, t, ic)
        q0, p0 = own.prior_alone()(V, t, ic)
    h2 = (2.0 / 32) ** 2
    assert torch.allclose(proc[:, :, 0], -(h2 / 12.0) * force, rtol=1e-12, atol=0)
    assert torch.equal(proc[:, :, 1], sensor_spline.derivative_table(proc[:, :, 0]))
    assert (proc[:, :, 2] == 0).all()
    dF = sensor_spline.local_table(-(h2 / 12.0) * _nodal(V, 0) * _nodal(V, 1))  # (-h^2 V'^2 / 24)'
    assert torch.allclose(kernel - force, dF, rtol=1e-7, atol=0)  # the weight -1/24 is stored in float32
    gap = max((qo - ql).abs().max(), (po - pl).abs().max())
    assert gap < 1e-3 * max((qo - q0).abs().max(), (po - p0).abs().max())


def _nodal(V, k: int):
    """V's (k + 1)-th derivative at the sensors (`sensor_spline.nodal_derivatives`)."""
    return sensor_spline.nodal_derivatives(V)[:, k]


@pytest.mark.parametrize("readout", ["step", "scaled"])
def test_own_tables_keep_det_j_one_and_t0_the_identity_for_random_weights(readout):
    model = get_model("symponet", {**PROCESSED, "local_layers": 0, "tables": "own", "readout": readout}).double()
    randomise(model, 0.05)
    V, t, ic = random_problem(16, seed=2)
    t = torch.cat([torch.zeros(16, 1, dtype=torch.float64), t], dim=1)
    _, proc = model.local.own(V, sensor_spline.force_table(V))
    assert proc[:, :, 0].abs().max() > 1e-4  # a real processor, not the identity
    assert_identity_at_t0_and_det_j_one(model, V, t, ic, 1e-14)


def test_processed_flow_is_a_composition_of_the_module_functions():
    """flow() without a processor equals leapfrog on the kernel table (the module's own contract)."""
    V, t, ic = random_problem(3, seed=9)
    table = sensor_spline.force_table(V)
    q, p = processed.flow(t, ic, table, None, 20, (1.0,))
    qh, ph = si.integrate(V, t[:, -1:], ic, "leapfrog", 20)  # t = 2: a grid point, no read-out error
    assert torch.allclose(q[:, -1:], qh, atol=1e-12) and torch.allclose(p[:, -1:], ph, atol=1e-12)


def test_small_fast_recipe_learns_below_its_prior_alone(tmp_path):
    from synthetic import write_synthetic_dataset

    from nh_models.data import ShardDataset
    from nh_models.training.checkpoint import build_model, load_checkpoint
    from nh_models.training.config import CONFIG_DIR, load_config
    from nh_models.training.steps import evaluate
    from nh_models.training.trainer import train

    data = tmp_path / "data"
    write_synthetic_dataset(data, n_train=400, n_val=100, n_test=100, seed=0)
    cfg = load_config("symponet", CONFIG_DIR / "symponet_fast_small.yaml")
    train("symponet", cfg, data, tmp_path / "run", progress=False)
    model = build_model(load_checkpoint(tmp_path / "run" / "checkpoint_best.pt")).eval()
    test = ShardDataset(data, "test")
    trained = evaluate(model, test, batch_size=100, device=torch.device("cpu"))
    alone = evaluate(model.prior_alone(), test, batch_size=100, device=torch.device("cpu"))
    assert trained * 10 <= alone, (trained, alone)


@pytest.mark.parametrize("grid", ["fixed", "scaled"])
def test_learned_false_on_the_other_grids_is_the_prior_with_the_same_weights(grid):
    """learned: false zeroes the ridge corrections and the shears: the fixed and scaled grids'
    prior alone is exactly the network with its correction amplitudes set to zero."""
    cfg = {"grid": grid, "steps": 8, "shears": 1, "latent": 8, "nodes": 16, "ridges": 4}
    model = get_model("symponet", cfg).double()
    randomise(model, 0.3)
    zeroed = get_model("symponet", cfg).double()
    zeroed.load_state_dict(model.state_dict())
    with torch.no_grad():
        zeroed.amp_rest[-1].weight.zero_()
        zeroed.amp_rest[-1].bias.zero_()
    V, t, ic = random_problem(4, seed=10)
    with torch.no_grad():
        q, p = model.prior_alone()(V, t, ic)
        qz, pz = zeroed(V, t, ic)
        ql, _ = model(V, t, ic)
    assert torch.equal(q, qz) and torch.equal(p, pz)
    assert (ql - q).abs().max() > 1e-6


def test_variant_keeps_the_weights_and_changes_only_what_is_asked():

    model = get_model("symponet", {**PROCESSED, "init": "classical"}).double().eval()
    assert model.variant() is model
    other = model.variant(readout="scaled", steps=32)
    assert (other.config.readout, other.config.steps) == ("scaled", 32)
    assert other.config.tables == model.config.tables and not other.training
    for (name, w), (_, w2) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(w, w2), name
    V, t, ic = smooth_problem(2, 5)
    with torch.no_grad():  # the same weights at the same steps and read-out: the same map
        assert torch.equal(model.variant(readout="step")(V, t, ic)[0], model(V, t, ic)[0])
    with pytest.raises(NHError, match="positive number of kernel steps"):
        model.variant(steps=-4)
    with pytest.raises(NHError, match="readout scaled is a read-out of a leapfrog kernel"):
        get_model("symponet", {**PROCESSED, "prior": "yoshida4"}).variant(readout="scaled")


def test_inline_tables_are_the_textbook_correction_read_from_the_potentials_own_spline():
    """`tables: inline`: with the textbook weights the kernel's force is V' - (h^2 / 12) V' V''
    and A' = -(h^2 / 12) V' at every q, both from V's own table (no table of the correction); the
    map is `tables: own`'s to O(dx^4 h^2) (own re-interpolates dF's V'^2 part through a local
    cubic), and at zero weights it is the prior alone, bit for bit."""
    V, t, ic = smooth_problem(6, seed=8)
    cfg = {**PROCESSED, "steps": 32, "init": "classical", "local_layers": 0}
    inline, own = (get_model("symponet", {**cfg, "tables": k}).double().eval() for k in ("inline", "own"))
    h2 = (2.0 / 32) ** 2
    k, alpha = inline.local.inline()
    assert float(k.detach()) == pytest.approx(-h2 / 12.0, rel=1e-7) and float(alpha.detach()) == pytest.approx(-h2 / 12.0, rel=1e-7)
    with torch.no_grad():
        qi, pi = inline(V, t, ic)
        qo, po = own(V, t, ic)
        q0, p0 = inline.prior_alone()(V, t, ic)
        zero = get_model("symponet", {**cfg, "init": "zero", "tables": "inline"}).double().eval()
        qz, pz = zero(V, t, ic)
    gap = max((qi - qo).abs().max(), (pi - po).abs().max())
    assert 0 < gap < 1e-3 * max((qi - q0).abs().max(), (pi - p0).abs().max())
    assert torch.equal(qz, q0) and torch.equal(pz, p0)


def test_inline_tables_keep_det_j_one_and_t0_the_identity_for_random_weights():
    model = get_model("symponet", {**PROCESSED, "local_layers": 0, "tables": "inline"}).double()
    randomise(model, 0.05)
    k, alpha = model.local.inline()
    assert abs(float(k.detach())) > 1e-5 and abs(float(alpha.detach())) > 1e-5  # a real correction and processor
    V, t, ic = random_problem(16, seed=2)
    t = torch.cat([torch.zeros(16, 1, dtype=torch.float64), t], dim=1)
    assert_identity_at_t0_and_det_j_one(model, V, t, ic, 1e-13)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"local_layers": 1}, "tables inline is the linear dictionary alone"),
     ({"readout": "scaled"}, "tables inline is a correction of leapfrog read out by steps"),
     ({"prior": "yoshida4"}, "tables inline is a correction of leapfrog read out by steps")],  # fmt: skip
)
def test_inline_tables_refuse_what_they_are_not(change, message):
    with pytest.raises(NHError, match=message) as info:
        get_model("symponet", {**PROCESSED, "local_layers": 0, "tables": "inline", **change})
    assert "\n" not in str(info.value)
