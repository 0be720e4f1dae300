"""The whole `nh eval`: every run's best checkpoint and the baseline integrators judged on the
test split and the physics cases, then metrics.json, report.md and the plots (`evaluate_runs`).

See docs/evaluation.md for what each number means and why it is fair.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nh_data.errors import NHError
from nh_data.fileio import write_text_atomic

from ..devices import resolve_device
from ..models.base import count_parameters
from ..runtime import retain_freed_memory
from .cases import PhysicsCase, TestData, TestSplit, load_physics_cases, physics_energy, physics_names
from .metrics import finite, orbit_errors, summarize
from .oracle import integrator_native, integrator_predictor
from .predictors import Candidate, float64_predictor, model_dtype
from .settings import EvalSettings, _log
from .structure import (
    _detj_summary,
    _energy_summary,
    _long_time_grid,
    candidate_jacobian_det,
    chain,
    energy_error,
    jacobian_det,
)
from .work_precision import _best_time, equal_cost, integrator_work_precision, time_model


def _physics_entry(case: PhysicsCase, q_hat: np.ndarray, p_hat: np.ndarray) -> dict[str, float]:
    """Errors of one predicted orbit (W,) on a physics case, energy with the analytic V."""
    err = orbit_errors(q_hat[None], p_hat[None], case.q_ref[None], case.p_ref[None])
    dH = physics_energy(case.name, q_hat, p_hat, case.q_ref[0], case.p_ref[0])
    return {k: float(v[0]) for k, v in err.items()} | {
        "max_abs_q": float(np.max(np.abs(q_hat - case.q_ref))),
        "max_abs_p": float(np.max(np.abs(p_hat - case.p_ref))),
        "max_abs_dH": float(dH.max()),
    }


def _baselines_test(
    sub: TestData, detj_sub: TestData, settings: EvalSettings, curves: dict, progress: bool
) -> dict[str, Any]:
    """Work-precision curves, and accuracy / energy / det J at physics_dt, of each baseline integrator."""
    _log(f"work-precision of {', '.join(settings.methods)} on {len(sub.u)} test orbits", progress)
    out: dict[str, Any] = {
        "work_precision": integrator_work_precision(
            sub.V, sub.t, sub.ic, sub.q, sub.p, settings.methods, settings.dts, settings.repeats, progress
        ),
        "test": {},
    }
    curves["energy"]["t"] = sub.t
    for m in settings.methods:
        q_hat, p_hat = integrator_native(sub.V, sub.t, sub.ic, m, settings.physics_dt)
        dH = energy_error(sub.V, q_hat, p_hat, sub.ic)
        curves["energy"][f"{m} dt={settings.physics_dt:g}"] = dH
        det = jacobian_det(
            integrator_predictor(m, settings.physics_dt, native=False),
            detj_sub.V,
            detj_sub.t,
            detj_sub.ic,
            settings.eps,
        )
        out["test"][m] = {
            "dt": settings.physics_dt,
            **summarize(orbit_errors(q_hat, p_hat, sub.q, sub.p))["overall"],
            "energy": _energy_summary(dH),
            "detJ": _detj_summary(det),
        }
    return out


def _baselines_physics(cases: list[PhysicsCase], settings: EvalSettings, curves: dict) -> dict[str, Any]:
    """Each baseline integrator on each physics case: the window, and straight through to t_long."""
    from nh_data.physics import reference

    t_long = _long_time_grid(settings)
    out: dict[str, Any] = {}
    for case in cases:
        ic = np.array([[case.q_ref[0], case.p_ref[0]]])
        q_ref, p_ref = reference(case.name, t_long, float(ic[0, 0]), float(ic[0, 1]))
        curves["physics"][case.name] = {"case": case, "pred": {}}
        curves["long_time"][case.name] = {"t": t_long, "ref": (q_ref, p_ref), "err": {}, "dH": {}}
        out[case.name] = {}
        for m in settings.methods:
            q_hat, p_hat = integrator_native(case.V[None], case.t[None], ic, m, settings.physics_dt)
            curves["physics"][case.name]["pred"][m] = (q_hat[0], p_hat[0])
            ql, pl = integrator_native(case.V[None], t_long[None], ic, m, settings.physics_dt)
            lt_err = np.sqrt((ql[0] - q_ref) ** 2 + (pl[0] - p_ref) ** 2)  # (T,)
            lt_dH = energy_error(case.V[None], ql, pl, ic)[0]  # (T,)
            curves["long_time"][case.name]["err"][m] = lt_err
            curves["long_time"][case.name]["dH"][m] = lt_dH
            out[case.name][m] = _physics_entry(case, q_hat[0], p_hat[0]) | {
                "long_time_err_end": float(lt_err[-1]),
                "long_time_err_max": float(lt_err.max()),
                "long_time_dH_max": float(lt_dH.max()),
            }
    return out


def _coverage(cal, cand: Candidate, scores: np.ndarray, u: np.ndarray, sub: TestData, settings: EvalSettings,
              progress: bool = False):  # fmt: skip
    """Band coverage per stratum on the test split, its decay along chained windows and, for a
    calibration of K windows, each window's own band on long orbits (`long_window_coverage`)."""
    from .coverage import N_CHAIN, chained_coverage, coverage_summary, long_window_coverage

    out = coverage_summary(cal, scores, u)
    few = sub.take(np.arange(min(N_CHAIN, len(sub.u))))
    n_windows = int(round(settings.t_long / settings.window))
    out["chained"] = chained_coverage(cal, cand.predict, few.V, few.ic, few.u, n_windows, settings.window)
    if cal.windows > 1:
        _log(f"{cand.label}: coverage of its {cal.windows} windows' bands on long orbits", progress)
        out |= long_window_coverage(cal, cand.predict, sub, settings.window_potentials, settings.seed, progress)
    return out


def _test_set_metrics(cand: Candidate, test, sub, settings: EvalSettings, progress: bool) -> dict[str, Any]:
    """Errors per stratum on the whole test split, and the bands' coverage if the run has them."""
    from nh_data.progress import iterate

    errs: dict[str, list[np.ndarray]] = {k: [] for k in ("mse_q", "mse_p", "loss", "rel_l2")}
    cal, scores = cand.calibration, []
    bs = settings.batch_size
    for b in iterate(
        test.batches(bs),
        total=-(-len(test.u) // bs),
        desc=f"{cand.label}: test set",
        unit="batch",
        enabled=progress,
        leave=False,
    ):
        q_hat, p_hat = cand.predict(b.V, b.t, b.ic)
        for k, v in orbit_errors(q_hat, p_hat, b.q, b.p).items():
            errs[k].append(v)
        if cal is not None:
            scores.append(cal.scores_of(q_hat, p_hat, b.q, b.p))
    out: dict[str, Any] = {"test": summarize({k: np.concatenate(v) for k, v in errs.items()}, test.u)}
    if cal is not None:
        out["coverage"] = _coverage(cal, cand, np.concatenate(scores), test.u, sub, settings, progress)
    return out


def _structure_metrics(cand: Candidate, sub, detj_sub, settings: EvalSettings, curves: dict, device: str):
    """Energy error on the timing subset and det J on the det-J subset; returns (metrics, q_hat, p_hat)."""
    q_hat, p_hat = cand.predict(sub.V, sub.t, sub.ic)
    dH = energy_error(sub.V, q_hat, p_hat, sub.ic)
    curves["energy"][cand.label] = dH
    # the learned map is the function the weights define: a network's det J by automatic
    # differentiation in float64 (round-off, not a finite-difference floor), any other
    # predictor's by finite differences in float64
    det, how = candidate_jacobian_det(
        cand.model,
        float64_predictor(cand, device, settings.batch_size),
        detj_sub.V,
        detj_sub.t,
        detj_sub.ic,
        settings.eps,
        device,
    )
    return {"energy": _energy_summary(dH), "detJ": _detj_summary(det) | how}, q_hat, p_hat


def _cost_metrics(cand: Candidate, sub, q_hat, p_hat, settings, rk4_rows, curves, device, progress):
    """Time per orbit (a work-precision point), RK4 at that cost and, for a SympONet, the
    integrators at its force evaluations per orbit (`cost_table`)."""
    out: dict[str, Any] = {}
    if cand.model is not None:
        timing = time_model(cand.model, sub.V, sub.t, sub.ic, device, settings.batch_size, settings.repeats)
    else:
        seconds = _best_time(lambda: cand.predict(sub.V, sub.t, sub.ic), settings.repeats)
        timing = {"time_per_traj_s": seconds / len(sub.u), "batch": len(sub.u), "device": "cpu"}
    if hasattr(cand.model, "force_evaluations_per_orbit") and cand.cost_table:
        from .cost_table import equal_cost_table

        _log(f"{cand.label}: the integrators at its cost", progress)
        out["equal_cost"] = equal_cost_table(
            cand.model, sub, settings.repeats, compiled=settings.compiled, lanes=settings.lanes
        )
    out["work_precision"] = timing | {"loss": float(np.mean(orbit_errors(q_hat, p_hat, sub.q, sub.p)["loss"]))}
    curves["work_precision"][cand.label] = out["work_precision"]
    if rk4_rows:
        out["rk4_equal_cost"] = equal_cost(rk4_rows, timing["time_per_traj_s"])
    return out


def _physics_metrics(cand: Candidate, cases: list[PhysicsCase], settings: EvalSettings, curves: dict):
    """Each physics case in its window and chained to t_long (error and energy error)."""
    out: dict[str, Any] = {"physics": {}}
    for case in cases:
        ic = np.array([[case.q_ref[0], case.p_ref[0]]])
        q_hat, p_hat = cand.predict(case.V[None], case.t[None], ic)
        curves["physics"][case.name]["pred"][cand.label] = (q_hat[0], p_hat[0])
        lt = curves["long_time"][case.name]
        _, ql, pl = chain(
            cand.predict, case.V[None], ic, int(round(settings.t_long / settings.window)), settings.window
        )
        lt_err = np.sqrt((ql[0] - lt["ref"][0]) ** 2 + (pl[0] - lt["ref"][1]) ** 2)  # (T,)
        lt_dH = energy_error(case.V[None], ql, pl, ic)[0]  # (T,)
        lt["err"][cand.label] = lt_err
        lt["dH"][cand.label] = lt_dH
        out["physics"][case.name] = _physics_entry(case, q_hat[0], p_hat[0]) | {
            "long_time_err_end": float(lt_err[-1]),
            "long_time_err_max": float(lt_err.max()),
            "long_time_dH_max": float(lt_dH.max()),
        }
    if cases:
        out["physics_mean_loss"] = float(np.mean([v["loss"] for v in out["physics"].values()]))
    return out


def _evaluate_candidate(
    cand: Candidate,
    test: TestData | TestSplit | None,
    sub: TestData | None,
    detj_sub: TestData | None,
    cases: list[PhysicsCase],
    settings: EvalSettings,
    rk4_rows,
    curves: dict,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    """Every metric of one candidate: test set, energy and det J, cost, physics and long time."""
    out: dict[str, Any] = {"run": cand.run, **cand.info}
    if test is not None:
        out |= _test_set_metrics(cand, test, sub, settings, progress)
        structure, q_hat, p_hat = _structure_metrics(cand, sub, detj_sub, settings, curves, device)
        out |= structure
        out |= _cost_metrics(cand, sub, q_hat, p_hat, settings, rk4_rows, curves, device, progress)
    return out | _physics_metrics(cand, cases, settings, curves)


def evaluate_candidates(
    candidates: list[Candidate],
    test: TestData | TestSplit | None,
    cases: list[PhysicsCase],
    settings: EvalSettings | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate the baseline integrators, then every candidate, on the same orbits.

    Returns (metrics, curves): metrics is JSON-ready; curves holds the arrays
    the plots need. `test` may be None (physics only) and `cases` empty.
    """
    settings = settings or EvalSettings()
    metrics: dict[str, Any] = {"settings": asdict(settings), "integrators": {}, "runs": {}}
    curves: dict[str, Any] = {"physics": {}, "long_time": {}, "energy": {}, "work_precision": {}}
    sub = detj_sub = None
    if test is not None:
        n = len(test.u)
        rng = np.random.default_rng(settings.seed)
        sub = test.take(np.sort(rng.choice(n, size=min(settings.n_sub, n), replace=False)))
        detj_sub = sub.take(np.arange(min(settings.n_detj, len(sub.u))))
        metrics["data"] = {
            "dir": test.source,
            "n_test": int(n),
            "n_sub": len(sub.u),
            "n_detj": len(detj_sub.u),
        }
        metrics["integrators"].update(_baselines_test(sub, detj_sub, settings, curves, progress))
    metrics["integrators"]["physics"] = _baselines_physics(cases, settings, curves)
    rk4_rows = metrics["integrators"].get("work_precision", {}).get("rk4")
    for cand in candidates:
        _log(f"evaluating {cand.label}", progress)
        metrics["runs"][cand.label] = _evaluate_candidate(
            cand, test, sub, detj_sub, cases, settings, rk4_rows, curves, device, progress
        )
    return _json_safe(metrics), curves


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return finite(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ---------------------------------------------------------------- nh eval


def _labels(runs: list[str]) -> list[str]:
    labels: list[str] = []
    for r in runs:
        base = Path(r).resolve().name or str(r)
        label, k = base, 2
        while label in labels:
            label, k = f"{base}#{k}", k + 1
        labels.append(label)
    return labels


def write_outputs(metrics: dict[str, Any], curves: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """metrics.json, report.md and the PNG plots into `out_dir`; returns the report's path."""
    from . import plots
    from .report import render_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = plots.make_all(curves, metrics, out)
    metrics["plots"] = [p.name for p in images]
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    report = out / "report.md"
    write_text_atomic(report, render_report(metrics, images))
    return report



def _load_source(r, device: str, label: str, progress: bool):
    """(model, calibration or None, the data folder it was trained on or None) of a run folder or
    a shipped entry (`zoo.Pretrained`). A stale or damaged calibration: no bands, with a line."""
    from ..calibration import load_calibration
    from ..training.checkpoint import build_model, checkpoint_path, load_checkpoint
    from ..zoo import Pretrained, load_pretrained

    if isinstance(r, Pretrained):
        model, cal, meta = load_pretrained(r.name, device)
        return model, cal, meta["data_dir"]
    ckpt = load_checkpoint(checkpoint_path(r, "best"), device)  # NHError for a missing folder or checkpoint
    model = build_model(ckpt, device)
    try:
        cal = load_calibration(r, ckpt["digest"])
    except NHError as exc:
        _log(f"{label}: no band coverage ({exc})", progress)
        cal = None
    return model, cal, ckpt.get("data_dir")


def evaluate_runs(
    runs: list[str | os.PathLike],
    data_dir: str | os.PathLike | None = None,
    physics: str = "all",
    physics_dir: str | os.PathLike = "parquet_data/physics",
    device: str = "cpu",
    out_dir: str | os.PathLike = "runs/eval",
    settings: EvalSettings | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], Path]:
    """`nh eval`: load each run's best checkpoint, evaluate, write metrics.json, report.md, plots.

    data_dir None: the data folder the first run was trained on (recorded in its
    checkpoint); if that is gone too, the test-set parts are skipped with a note.
    physics: "all", "none" or "name,name". Returns (metrics, path of report.md).
    """
    if not runs:
        raise NHError("give at least one run folder")
    retain_freed_memory()  # steady model timings: no page faults on every batch (runtime.py)
    device = resolve_device(device)
    settings = settings or EvalSettings()
    names = physics_names(physics)
    labels = _labels([str(r) for r in runs])
    loaded = [_load_source(r, device, label, progress) for label, r in zip(labels, runs, strict=True)]
    if data_dir is not None and not Path(data_dir).is_dir():
        raise NHError(f"data directory {str(data_dir)!r} does not exist")
    candidates = []
    for label, r, (model, cal, trained_on) in zip(labels, runs, loaded, strict=True):
        if data_dir is None and trained_on and Path(trained_on).is_dir():
            data_dir = trained_on
            _log(f"test data: {data_dir} (where {label} was trained)", progress)
        n_params = count_parameters(model)
        dtype = str(model_dtype(model)).removeprefix("torch.")  # the arithmetic it is evaluated in
        candidates.append(
            Candidate.from_model(
                label,
                model,
                device,
                settings.batch_size,
                run=str(r),
                info={"model": model.name, "n_params": int(n_params), "dtype": dtype},
                calibration=cal,
            )
        )
        if hasattr(model, "fixed_parts") and model.config.learned:  # what training added: its fixed parts beside it
            for name, other in model.fixed_parts():
                candidates.append(
                    Candidate.from_model(
                        f"{label} ({name})",
                        other,
                        device,
                        settings.batch_size,
                        run=str(r),
                        info={"model": model.name, "n_params": int(n_params), "learned": name != "prior alone",
                              "dtype": dtype},  # fmt: skip
                        cost_table=False,  # its rows are in the trained run's table
                    )
                )
    if data_dir is None:
        if not names:
            raise NHError("nothing to evaluate: no test data (give --data) and --physics none")
        _log(
            "no test data (give --data): test-set metrics, work-precision, energy and det J skipped", progress
        )
    test = TestSplit(data_dir, settings.max_test, settings.seed) if data_dir is not None else None
    cases = load_physics_cases(physics_dir, names, progress)
    metrics, curves = evaluate_candidates(candidates, test, cases, settings, device, progress)
    metrics["device"] = device
    report = write_outputs(metrics, curves, out_dir)
    return metrics, report
