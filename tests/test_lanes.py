"""Orbits in lanes (`nh_models.compiled.lanes`): several orbits stepped side by side on one
thread give the bytes and the counts of one orbit at a time, for the model (every kind of table,
both priors, step and corrected read-outs, the prior alone, unsorted and NaN query times, a
block that does not fill its lanes, the time-by-phase stops) and for every baseline; lanes that
cannot run are refused with one line."""

from __future__ import annotations

import numpy as np
import pytest
from test_compiled import problem, trained_like

from nh_data.errors import NHError
from nh_models.compiled import export, forward
from nh_models.compiled import integrators as ci
from nh_models.compiled.lanes import LANES_MAX, check_lanes
from nh_models.compiled.processed import SETUP, STEPPING
from nh_models.evaluation import sensor_integrators as si

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def awkward_times(t):
    """Every third orbit's times reversed (unsorted), one time NaN."""
    t = t.copy()
    t[::3] = t[::3, ::-1]
    t[1, 3] = np.nan
    return t


def same(a, b) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "tables,prior,readout",
    [("local", "leapfrog", "step"), ("own", "leapfrog", "step"), ("spline", "leapfrog", "step"),
     ("local", "leapfrog", "corrected"), ("own", "leapfrog", "corrected"), ("spline", "yoshida4", "step"),
     ("inline", "leapfrog", "step")],  # fmt: skip
)
def test_model_in_lanes_is_the_model_one_orbit_at_a_time(tables, prior, readout):
    model = trained_like(prior, 7, tables, readout)
    V, t, ic = problem(11, 3)
    t = awkward_times(t)
    for m in (model, model.prior_alone()):
        params = export(m)
        want = forward(params, V, t, ic, counts=True)
        assert np.isfinite(want[0]).sum() > 0
        for lanes in (2, 4, 16):  # 11 orbits: blocks that do not fill their lanes
            assert same(forward(params, V, t, ic, counts=True, lanes=lanes), want), lanes
        assert same(forward(params, V, t, ic, counts=True, lanes=4, parallel=True), want)
        for stop in (SETUP, STEPPING):  # the benchmark's time by phase: the same lookups counted
            n = forward(params, V, t, ic, counts=True, stop=stop)[2]
            assert (forward(params, V, t, ic, counts=True, stop=stop, lanes=4)[2] == n).all()


@pytest.mark.parametrize("method", si.METHODS)
def test_baselines_in_lanes_are_the_baselines_one_orbit_at_a_time(method):
    V, t, ic = problem(9, 5)
    t = awkward_times(t)
    steps = si.steps_for(method, 120)
    want = ci.integrate(V, t, ic, method, steps, counts=True)
    for lanes in (3, 8, 16):
        assert same(ci.integrate(V, t, ic, method, steps, counts=True, lanes=lanes), want), lanes
    assert same(ci.integrate(V, t, ic, method, steps, counts=True, lanes=4, parallel=True), want)


def test_equal_cost_table_with_lanes_has_the_same_losses_and_says_how_it_was_timed():
    from nh_models.evaluation.cases import TestData
    from nh_models.evaluation.cost_table import equal_cost_table

    model = trained_like("leapfrog", 7, "local")
    V, t, ic = problem(6, 9)
    q, p = ci.integrate(V, t, ic, "rk4", 2000)
    data = TestData(V, t, ic, q, p, np.full(6, 0.5))
    one = equal_cost_table(model, data, repeats=1, compiled=True)
    side = equal_cost_table(model, data, repeats=1, compiled=True, lanes=4)
    assert one["timing"].endswith("one orbit at a time)") and side["timing"].endswith("4 orbits side by side)")
    for name, row in side["rows"].items():
        if not name.endswith("at equal time"):  # timed step counts
            assert row["loss"] == one["rows"][name]["loss"] and row["steps"] == one["rows"][name]["steps"], name
    scaled = equal_cost_table(trained_like("leapfrog", 7, "local", "scaled"), data, repeats=1, compiled=True, lanes=4)
    assert scaled["timing"].endswith("one orbit at a time)")  # the scaled read-out has no lanes


def test_lanes_that_cannot_run_are_refused_in_one_line():
    V, t, ic = problem(2, 1)
    params = export(trained_like("leapfrog", 1, "local"))
    for bad in (0, LANES_MAX + 1, 2.5, True, np.bool_(True), "8", np.int64(0), np.float64(4.0)):
        with pytest.raises(NHError, match="lanes must be an integer in 1"):
            forward(params, V, t, ic, lanes=bad)
        with pytest.raises(NHError, match="lanes must be an integer in 1"):
            ci.integrate(V, t, ic, "rk4", 10, lanes=bad)
    scaled = export(trained_like("leapfrog", 1, "local", "scaled"))
    with pytest.raises(NHError, match="readout scaled runs one orbit at a time"):
        forward(scaled, V, t, ic, lanes=4)
    q, p = forward(export(trained_like("leapfrog", 1, "local", "scaled").prior_alone()), V, t, ic, lanes=4)
    assert np.isfinite(q).all()  # the prior alone has no scaled read-out to refuse


def test_lanes_take_numpy_integers():
    V, t, ic = problem(5, 3)
    params = export(trained_like("leapfrog", 1, "local"))
    assert check_lanes(np.int64(16)) == 16 and type(check_lanes(np.int32(3))) is int
    for a, b in zip(forward(params, V, t, ic, lanes=np.int64(2)), forward(params, V, t, ic, lanes=2), strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(ci.integrate(V, t, ic, "rk4", 10, lanes=np.int16(2)), ci.integrate(V, t, ic, "rk4", 10, lanes=2), strict=True):
        assert np.array_equal(a, b)
