"""Judge trained operators against integrators given the same information.

The pieces are plain functions on numpy arrays and "predictors" (callables
``(V (B, 100), t (B, W), ic (B, 2)) -> (q, p)``, float64): a trained network
(`model_predictor`) and an integrator on the sensor interpolant
(`nh_models.evaluation.oracle`) are judged by the same code.

- `metrics`: `orbit_errors` / `summarize`: MSE of q and p, the loss 0.5 (MSE_q + MSE_p)
  and the relative L2 error per orbit, summarised overall and per energy
  stratum of u (a wall-start dataset has u = 1 or NaN: stratum "wall").
- `work_precision`: error against wall time per trajectory, integrators on
  their native grid at several dt, a model as one point; `equal_cost` finds
  the RK4 step that costs what the model costs, and RK4's error there.
- `structure`: `energy_error`, |H(q, p) - H(q0, p0)| along predicted trajectories;
  `jacobian_det`, det d(q, p)(t) / d(q0, p0) by central differences (`autograd_jacobian_det`: of a
  network, by automatic differentiation); `chain`,
  long-time prediction by chaining windows (end state -> next ic).
- `oracle`: the integrator baselines on the sensor interpolant; `predictors`: networks.
- `cases`: the test split and the physics cases; `settings`: `EvalSettings`.
- `eval_command`: `evaluate_runs`, the whole `nh eval`: metrics.json, report.md and plots
  (`report`, `plots`; matplotlib is loaded only there).

See docs/evaluation.md for what each number means and why it is fair.
"""

from __future__ import annotations

from .cases import (
    PhysicsCase,
    TestData,
    TestSplit,
    load_physics_cases,
    load_test,
    physics_energy,
    physics_names,
)
from .eval_command import evaluate_candidates, evaluate_runs, resolve_device, write_outputs
from .metrics import OTHER, STRATA, WALL, finite, orbit_errors, stratum_labels, summarize
from .oracle import BASELINES, OracleModel, Predictor, integrator_predictor
from .predictors import Candidate, float64_predictor, model_dtype, model_predictor
from .settings import EvalSettings
from .structure import autograd_jacobian_det, candidate_jacobian_det, chain, energy_error, jacobian_det
from .work_precision import equal_cost, fit_order, integrator_work_precision, time_model

__all__ = [
    "BASELINES",
    "OTHER",
    "STRATA",
    "WALL",
    "Candidate",
    "EvalSettings",
    "OracleModel",
    "PhysicsCase",
    "Predictor",
    "TestData",
    "TestSplit",
    "chain",
    "energy_error",
    "equal_cost",
    "evaluate_candidates",
    "evaluate_runs",
    "finite",
    "fit_order",
    "float64_predictor",
    "integrator_predictor",
    "integrator_work_precision",
    "autograd_jacobian_det",
    "candidate_jacobian_det",
    "jacobian_det",
    "load_physics_cases",
    "load_test",
    "model_dtype",
    "model_predictor",
    "orbit_errors",
    "physics_energy",
    "physics_names",
    "resolve_device",
    "stratum_labels",
    "summarize",
    "time_model",
    "write_outputs",
]
