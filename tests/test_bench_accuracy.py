"""bench/accuracy.py's RK4 at equal cost works after an evaluation in the same process (a
submodule once named nh_models/evaluation/equal_cost.py replaced the package's function
`equal_cost` when imported; it is cost_table.py now)."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
from benches import load_bench


def test_rk4_at_cost_after_evaluate_runs_imported_the_equal_cost_module():
    importlib.import_module("nh_models.evaluation.cost_table")  # what evaluate_runs does on its way
    from nh_models import evaluation

    assert callable(evaluation.equal_cost)  # still the function, not a module
    accuracy = load_bench("accuracy")
    rows = [{"dt": dt, "time_per_traj_s": 1e-7 / dt, "loss": dt**8} for dt in (0.1, 0.05, 0.02, 0.01)]
    out = accuracy.rk4_at_cost(rows, 1e-7 / 0.03)  # dearer than RK4's cheapest point: interpolated
    assert out["dt"] == pytest.approx(0.03, rel=1e-12) and out["cheaper"] is False
