"""The Numba kernels of issue 21 (`nh_models.compiled`) compute what the torch code computes, in
float64: the quintic sensor spline (coefficients, V' table, lookup with clamping), SympONet's
processed grid (both priors, learned true and false, the classical coefficients) and the
equal-cost baselines, with the same force evaluations per orbit; `export` refuses what it cannot
compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nh_data.errors import NHError
from nh_data.random_potentials import sample_potentials
from nh_models.compiled import export, forward, why_not
from nh_models.compiled import integrators as ci
from nh_models.compiled import spline as cs
from nh_models.evaluation import sensor_integrators as si
from nh_models.models import get_model, sensor_spline

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PROCESSED = {"grid": "processed", "steps": 24, "shears": 0, "local_layers": 0}
# float64 trajectories of a few hundred lookups, Numba's operation order against torch's: the
# largest gaps reach 1e-10 of the scale on some machines; a wrong term gives 1e-6 or more.
RTOL = 1e-9


def problem(B: int, seed: int, W: int = 12):
    """Strata-like potentials, initial conditions inside the wells, query times in [0, 2] with
    t = 0 and t = 2 (so the whole trajectory runs, and the read-out at a grid point is tested)."""
    rng = np.random.default_rng(seed)
    V = sample_potentials(rng, B).V
    t = np.sort(rng.uniform(0.0, 2.0, (B, W)), axis=1)
    t[:, 0], t[:, -1] = 0.0, 2.0
    t[0, 1] = 1.0  # exactly on the grid
    ic = np.stack([rng.uniform(0.2, 0.8, B), rng.uniform(-1.0, 1.0, B)], axis=1)
    return V, t, ic


def assert_close(got, want, rtol=RTOL):
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


def torch_forward(model, V, t, ic):
    with torch.no_grad():
        q, p = model(*(torch.from_numpy(x) for x in (V, t, ic)))
    return q.numpy(), p.numpy()


# ------------------------------------------------------------------ the spline


def test_coefficients_table_and_lookup_are_the_torch_spline():
    V, _, _ = problem(3, 0)
    Q, _ = sensor_spline.quintic_matrices()
    want = sensor_spline.force_table(torch.from_numpy(V)).numpy()  # (3, 99, 5)
    for b in range(3):
        c = np.zeros(cs.NCOEF)
        c[2:102] = V[b]
        cs.solve1(c)
        assert_close(c, Q @ V[b], 1e-13)
        table = np.empty((5, cs.NI))
        cs.build_table(c, table)
        assert_close(table.T, want[b], 1e-12)
    # three right-hand sides in one pass: the same as one at a time
    cols = [np.zeros(cs.NCOEF) for _ in range(3)]
    for b in range(3):
        cols[b][2:102] = V[b]
    cs.solve3(*cols)
    for b in range(3):
        assert_close(cols[b], Q @ V[b], 1e-13)
    # lookup, clamped like sensor_spline.lookup (outside the box, exactly at its ends, inside)
    q = np.array([-0.3, 0.0, 1e-9, 0.2, 0.5, 0.77, 1.0 - 1e-16, 1.0, 1.4])
    want_q = sensor_spline.sensor_force(torch.from_numpy(want[:1]), torch.from_numpy(q[None]))[0].numpy()
    c = np.zeros(cs.NCOEF)
    c[2:102] = V[0]
    cs.solve1(c)
    table = np.empty((5, cs.NI))
    cs.build_table(c, table)
    got = np.array([cs.force(table, x) for x in q])
    assert_close(got, want_q, 1e-12)
    assert np.isnan(cs.force(table, np.nan))


def test_local_tables_and_nodal_derivatives_from_the_table_are_the_torch_ones():
    rng = np.random.default_rng(3)
    V = sample_potentials(rng, 1).V[0]
    y = rng.normal(size=100)
    c = np.zeros(cs.NCOEF)
    c[2:102] = V
    cs.solve1(c)
    table = np.zeros((5, cs.NI))
    cs.build_table(c, table)
    nod = np.zeros((4, 100))
    cs.nodal_from_table(table, nod)
    want = sensor_spline.nodal_derivatives(torch.from_numpy(V)[None])[0].numpy()
    # Round-off grows as 1/dx^k in the k-th derivative: V''' reaches 1.6e-10 of its scale and
    # V'''' 5.6e-10 on some potentials (numpy 2.4, numba 0.68), against 1e-14 for V'.
    for r in range(4):
        assert_close(nod[r], want[r], (RTOL, RTOL, 1e-9, 1e-8)[r])
    local = np.full((5, cs.NI), np.nan)
    cs.local_into(y, np.zeros(100), local, False)
    want = sensor_spline.local_table(torch.from_numpy(y)[None])[0].numpy().T
    assert_close(local, want, 1e-13)
    cs.local_into(y, np.zeros(100), table, True)
    assert_close(table[:4], (sensor_spline.force_table(torch.from_numpy(V)[None])[0].numpy().T + want)[:4])


def test_nodal_derivatives_are_the_torch_ones():
    V, _, _ = problem(2, 1)
    want = sensor_spline.nodal_derivatives(torch.from_numpy(V)).numpy()[:, :3]  # V', V'', V'''
    for b in range(2):
        c = np.zeros(cs.NCOEF)
        c[2:102] = V[b]
        cs.solve1(c)
        table = np.empty((5, cs.NI))
        cs.build_table(c, table)
        out = np.empty((4, 100))
        cs.nodal_from_table(table, out)
        # each order's values are differences of ~DX^-r larger terms: both sides round at about
        # 1e-14, 1e-12, 1e-11 relative (checked against a 40-digit solve)
        for r, tol in enumerate((1e-13, 1e-11, 1e-9)):
            assert_close(out[r], want[b, r], tol)


# ------------------------------------------------------------------ the model


def trained_like(prior: str, seed: int, tables: str = "spline", readout: str = "step"):
    """A processed SympONet with small random linear weights (the size training leaves them:
    the classical coefficients, or zero, plus O(1e-3)), float64."""
    init = "classical" if prior == "leapfrog" else "zero"
    cfg = {**PROCESSED, "prior": prior, "init": init, "tables": tables, "readout": readout}
    model = get_model("symponet", cfg).double().eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        w = model.local.linear.weight
        w.add_(1e-3 * torch.randn_like(w))
        if model.local.generator is not None:  # `readout: corrected`: off the textbook's too
            model.local.generator.add_(1e-2 * torch.randn_like(model.local.generator))
    return model


@pytest.mark.parametrize(
    "tables,prior,readout",
    [(tables, prior, readout) for tables in ("spline", "local", "own")
     for prior, readout in (("leapfrog", "step"), ("yoshida4", "step"), ("leapfrog", "scaled"), ("leapfrog", "corrected"))
     if (tables, readout) != ("own", "scaled")] + [("inline", "leapfrog", "step")],  # fmt: skip
)
@pytest.mark.parametrize("learned", [True, False])
def test_compiled_model_is_the_torch_model(prior, readout, learned, tables):
    model = trained_like(prior, 5, tables, readout)
    if not learned:
        model = model.prior_alone()
    V, t, ic = problem(6, 2)
    q, p, counts = forward(export(model), V, t, ic, counts=True)
    want_q, want_p = torch_forward(model, V, t, ic)
    assert_close(q, want_q)
    assert_close(p, want_p)
    assert (q[:, 0] == ic[:, 0]).all() or not learned or np.abs(q[:, 0] - ic[:, 0]).max() < 1e-12  # t = 0
    assert (counts == model.force_evaluations_per_orbit(t.shape[1])).all()  # the stated cost, counted
    qq, pp = forward(export(model), V, t, ic, parallel=True)  # one chunk of orbits per thread
    assert (qq == q).all() and (pp == p).all()


@pytest.mark.parametrize("tables", ["spline", "local", "own", "inline"])
def test_compiled_classical_coefficients_are_the_torch_ones(tables):
    model = trained_like("leapfrog", 6, tables)
    classical = model.classical_alone().eval()
    V, t, ic = problem(5, 3)
    q, p = forward(export(classical), V, t, ic)
    want_q, want_p = torch_forward(classical, V, t, ic)
    assert_close(q, want_q)
    assert_close(p, want_p)


def test_export_refuses_what_it_cannot_compile():
    cnn = get_model("symponet", {**PROCESSED, "local_layers": 1, "local_width": 4}).double()
    with pytest.raises(NHError, match="local_layers") as info:
        export(cnn)
    assert "\n" not in str(info.value)
    assert why_not(cnn.prior_alone()) is None  # the prior alone never reads the CNN
    for other in ({"grid": "fixed", "steps": 8}, {**PROCESSED, "readout": "hermite"},
                  {**PROCESSED, "readout": "scaled", "tables": "own"}):  # fmt: skip
        with pytest.raises(NHError, match="grid|readout"):
            export(get_model("symponet", other))
    with pytest.raises(NHError, match="SympONet"):
        export(torch.nn.Linear(2, 2))


def test_wrong_shapes_are_refused_before_a_kernel_reads_them():
    V, t, ic = problem(2, 0)
    params = export(trained_like("leapfrog", 1))
    for bad in ((V[:, :50], t, ic), (V, t, ic[:1]), (V, t[0], ic)):
        with pytest.raises(NHError, match="expected V"):
            forward(params, *bad)
        with pytest.raises(NHError, match="expected V"):
            ci.integrate(*bad, "rk4", 4)
    with pytest.raises(NHError, match="steps"):
        ci.integrate(V, t, ic, "rk4", 0)


def shuffled(t):
    """Each orbit's query times in an order of their own (not sorted), and the permutations."""
    rng = np.random.default_rng(11)
    perm = np.stack([rng.permutation(t.shape[1]) for _ in range(len(t))])
    return np.take_along_axis(t, perm, axis=1), perm


@pytest.mark.parametrize("tables,prior", [("local", "leapfrog"), ("own", "leapfrog"), ("inline", "leapfrog"), ("spline", "yoshida4")])
def test_query_times_in_any_order_give_the_same_states(tables, prior):
    """The read-out is fused into the stepping in the order of the grid (`stepping.schedule`):
    times that are not sorted are sorted for it and the states put back, bit for bit."""
    model = trained_like(prior, 3, tables)
    V, t, ic = problem(4, 6)
    ts, perm = shuffled(t)
    for m in (model, model.prior_alone()):
        q, p, n = forward(export(m), V, t, ic, counts=True)
        qs, ps, ns = forward(export(m), V, ts, ic, counts=True)
        assert (qs == np.take_along_axis(q, perm, axis=1)).all()
        assert (ps == np.take_along_axis(p, perm, axis=1)).all()
        assert (ns == n).all()
    for method in si.METHODS:
        q, p = ci.integrate(V, t, ic, method, 30)
        qs, ps = ci.integrate(V, ts, ic, method, 30)
        assert (qs == np.take_along_axis(q, perm, axis=1)).all(), method
        assert (ps == np.take_along_axis(p, perm, axis=1)).all(), method


def test_schedule_orders_by_grid_index_and_reads_nan_at_zero():
    from nh_models.compiled.stepping import schedule

    t = np.array([0.5, 0.1, 2.0, np.nan, 0.1])
    kidx, rest, order = np.empty(5, dtype=np.int64), np.empty(5), np.empty(5, dtype=np.int64)
    assert not schedule(t, 0.25, 7, True, kidx, rest, order)  # 2.0 / 0.25 = 8, clamped to 7
    assert list(order) == [1, 3, 4, 0, 2] and list(kidx) == [0, 0, 0, 2, 7]
    assert rest[0] == pytest.approx(0.4) and np.isnan(rest[1]) and rest[4] == pytest.approx(1.0)
    assert schedule(np.sort(t[:3]), 0.25, 8, False, kidx[:3], rest[:3], order[:3])
    assert list(kidx[:3]) == [0, 2, 8] and rest[2] == 0.0


# ------------------------------------------------------------------ the baselines


@pytest.mark.parametrize("method", si.METHODS)
def test_compiled_baselines_are_the_torch_ones(method):
    V, t, ic = problem(5, 4)
    steps = si.steps_for(method, 120)
    q, p, counts = ci.integrate(V, t, ic, method, steps, counts=True)
    want_q, want_p = si.integrate(*(torch.from_numpy(x) for x in (V, t, ic)), method, steps)
    assert_close(q, want_q.numpy())
    assert_close(p, want_p.numpy())
    assert (counts == si.evaluations(method, steps)).all()
    qq, pp = ci.integrate(V, t, ic, method, steps, parallel=True)
    assert (qq == q).all() and (pp == p).all()


# ------------------------------------------------------------------ the equal-cost table


def test_equal_cost_table_times_compiled_code_when_the_model_compiles():
    from nh_models.evaluation.cases import TestData
    from nh_models.evaluation.cost_table import equal_cost_table

    model = trained_like("leapfrog", 7)
    V, t, ic = problem(6, 9)
    ref = si.integrate(*(torch.from_numpy(x) for x in (V, t, ic)), "yoshida4", 2000)
    data = TestData(V, t, ic, ref[0].numpy(), ref[1].numpy(), np.full(6, 0.5))
    table = equal_cost_table(model, data, repeats=1, compiled=True)
    assert table["timing"].startswith("compiled")
    plain = equal_cost_table(model, data, repeats=1)
    assert plain["timing"] == "torch (float64)"
    for name, row in table["rows"].items():  # the same losses, whichever code ran
        if not name.endswith("at equal time"):  # timed step counts
            assert row["loss"] == pytest.approx(plain["rows"][name]["loss"], rel=1e-8)
            assert row["steps"] == plain["rows"][name]["steps"]
    cnn = get_model("symponet", {**PROCESSED, "local_layers": 1, "local_width": 4}).double()
    fallback = equal_cost_table(cnn, data, repeats=1, compiled=True)
    assert fallback["timing"].startswith("torch") and "local_layers" in fallback["timing"]
