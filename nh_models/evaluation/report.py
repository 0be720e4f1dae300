"""The markdown report of `nh eval`: comparison tables built from metrics.json.

`render_report(metrics, images)` is pure (dict in, string out), so the report
can be regenerated from a saved metrics.json at any time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x == 0:
            return "0"
        if 1e-3 <= abs(x) < 1e4:
            return f"{x:.{digits}g}"
        return f"{x:.{digits - 1}e}"
    return str(x)


def _us(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e6:.3g}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def comparison_table(metrics: dict[str, Any]) -> str:
    """One row per run: the headline numbers side by side."""
    runs = metrics["runs"]
    header = [
        "run",
        "model",
        "params",
        "test loss",
        "rel L2",
        "physics loss",
        "us / traj",
        "RK4 dt at equal cost",
        "RK4 loss there",
        "max abs(dH), mean",
        "median abs(det J - 1)",
        "long-time err t_end (mean)",
    ]
    rows = []
    for label, r in runs.items():
        lt = [v.get("long_time_err_end") for v in (r.get("physics") or {}).values()]
        lt = [x for x in lt if x is not None]
        eq = r.get("rk4_equal_cost") or {}
        dt = _fmt(eq.get("dt")) + (" (extrap.)" if eq.get("extrapolated") else "") if eq else "n/a"
        rows.append(
            [
                label,
                r.get("model", ""),
                r.get("n_params"),
                _get(r, "test", "overall", "loss"),
                _get(r, "test", "overall", "rel_l2"),
                r.get("physics_mean_loss"),
                _us(_get(r, "work_precision", "time_per_traj_s")),
                dt,
                eq.get("loss"),
                _get(r, "energy", "mean_max_abs_dH"),
                _get(r, "detJ", "median_abs_detJ_minus_1"),
                sum(lt) / len(lt) if lt else None,
            ]
        )
    return _table(header, rows)


def strata_table(metrics: dict[str, Any]) -> str:
    """Test loss per energy stratum, one row per run (n in the header)."""
    runs = {k: v for k, v in metrics["runs"].items() if "test" in v}
    names: list[str] = []
    counts: dict[str, int] = {}
    for r in runs.values():
        for s, v in r["test"]["strata"].items():
            if s not in names:
                names.append(s)
            counts[s] = v["n"]
    header = ["run", "overall"] + [f"u {s} (n={counts[s]:,})" for s in names]
    rows = [
        [label, r["test"]["overall"]["loss"]] + [_get(r, "test", "strata", s, "loss") for s in names]
        for label, r in runs.items()
    ]
    detail = ["run", "stratum", "n", "MSE q", "MSE p", "loss", "median loss", "rel L2"]
    drows = []
    for label, r in runs.items():
        for s, v in [("overall", r["test"]["overall"]), *r["test"]["strata"].items()]:
            drows.append([label, s, v["n"], v["mse_q"], v["mse_p"], v["loss"], v["loss_median"], v["rel_l2"]])
    return _table(header, rows) + "\n\n" + _table(detail, drows)


def physics_table(metrics: dict[str, Any]) -> str:
    """Loss 0.5 (MSE_q + MSE_p) on every physics potential: models beside the integrators."""
    integ = metrics["integrators"].get("physics") or {}
    if not integ:
        return "_no physics potentials evaluated_"
    runs = metrics["runs"]
    methods = list(next(iter(integ.values())))
    dt = metrics["settings"]["physics_dt"]
    header = ["potential"] + list(runs) + [f"{m} (dt={dt:g})" for m in methods]
    rows = []
    for name in integ:
        rows.append(
            [name]
            + [_get(r, "physics", name, "loss") for r in runs.values()]
            + [integ[name][m]["loss"] for m in methods]
        )
    header2 = (
        ["potential"] + [f"{label}: max abs dH" for label in runs] + [f"{m}: max abs dH" for m in methods]
    )
    rows2 = [
        [name]
        + [_get(r, "physics", name, "max_abs_dH") for r in runs.values()]
        + [integ[name][m]["max_abs_dH"] for m in methods]
        for name in integ
    ]
    t_long = metrics["settings"]["t_long"]
    header3 = (
        ["potential"]
        + [f"{label}: err t={t_long:g}" for label in runs]
        + [f"{m}: err t={t_long:g}" for m in methods]
    )
    rows3 = [
        [name]
        + [_get(r, "physics", name, "long_time_err_end") for r in runs.values()]
        + [integ[name][m]["long_time_err_end"] for m in methods]
        for name in integ
    ]
    # the largest error and energy error along the chained windows (integrators straight through)
    header4 = ["potential"] + [f"{label}: max err, max abs(dH)" for label in [*runs, *methods]]
    rows4 = [
        [name]
        + [_pair(r.get("physics", {}).get(name)) for r in runs.values()]
        + [_pair(integ[name][m]) for m in methods]
        for name in integ
    ]
    return "\n\n".join([_table(header, rows), _table(header2, rows2), _table(header3, rows3), _table(header4, rows4)])


def _pair(entry: dict[str, Any] | None) -> str:
    """'max err, max abs(dH)' of one long-time entry ('n/a' for what an older metrics.json lacks)."""
    entry = entry or {}
    return f"{_fmt(entry.get('long_time_err_max'))}, {_fmt(entry.get('long_time_dH_max'))}"


def _loss_cell(row: dict[str, Any]) -> Any:
    if row.get("loss") is None:
        return f"inf ({row.get('n_diverged', '?')} orbits diverged)"
    return row["loss"]


def work_precision_table(metrics: dict[str, Any]) -> str:
    """The integrator curves of the work-precision diagram, then the models as points."""
    wp = metrics["integrators"].get("work_precision") or {}
    if not wp:
        return "_no test set: work-precision not measured_"
    methods = list(wp)
    header = ["dt", "steps"] + [f"{m}: us / traj" for m in methods] + [f"{m}: loss" for m in methods]
    rows = []
    for i, r0 in enumerate(wp[methods[0]]):
        rows.append(
            [r0["dt"], r0["steps"]]
            + [_us(wp[m][i]["time_per_traj_s"]) for m in methods]
            + [_loss_cell(wp[m][i]) for m in methods]
        )
    mrows = []
    for label, r in metrics["runs"].items():
        w = r.get("work_precision")
        if w:
            eq = r.get("rk4_equal_cost") or {}
            mrows.append(
                [
                    label,
                    w.get("device", ""),
                    w.get("batch"),
                    _us(w["time_per_traj_s"]),
                    w.get("loss"),
                    eq.get("dt"),
                    eq.get("loss") if eq.get("loss") is not None else "inf (diverged)",
                    eq.get("extrapolated"),
                ]
            )
    models = _table(
        [
            "run",
            "device",
            "batch",
            "us / traj",
            "loss",
            "RK4 dt at equal cost",
            "RK4 loss there",
            "extrapolated",
        ],
        mrows,
    )
    return _table(header, rows) + "\n\n" + models


def extras_table(metrics: dict[str, Any]) -> str:
    """Energy and area preservation on the test subset, models and integrators."""
    rows = []
    for label, r in metrics["runs"].items():
        if "energy" in r:
            rows.append(
                [
                    label,
                    r["energy"]["mean_max_abs_dH"],
                    r["energy"]["median_max_abs_dH"],
                    r["detJ"]["median_abs_detJ_minus_1"],
                    r["detJ"]["mean_abs_detJ_minus_1"],
                    r["detJ"]["max_abs_detJ_minus_1"],
                ]
            )
    for m, v in (metrics["integrators"].get("test") or {}).items():
        rows.append(
            [
                f"{m} (dt={v['dt']:g})",
                v["energy"]["mean_max_abs_dH"],
                v["energy"]["median_max_abs_dH"],
                v["detJ"]["median_abs_detJ_minus_1"],
                v["detJ"]["mean_abs_detJ_minus_1"],
                v["detJ"]["max_abs_detJ_minus_1"],
            ]
        )
    if not rows:
        return "_no test set: energy and area preservation not measured_"
    table = _table(
        ["predictor", "max_t abs(H - H0), mean", "median", "abs(det J - 1): median", "mean", "max"], rows
    )
    eps = metrics["settings"].get("eps")
    return table + (
        "\n\ndet J of the networks by automatic differentiation of their weights in float64 (exact "
        f"to round-off); of the integrators by fourth-order finite differences on (q0, p0) with eps = {eps:g}. "
        "Orbits near a separatrix make a finite-difference estimate large (the flow map bends sharply "
        "there): the integrators' maxima show that floor; their median is the robust figure."
    )


def coverage_table(metrics: dict[str, Any]) -> str:
    """Empirical coverage of the calibrated bands per stratum, and along chained windows."""
    rows, chained, levels = [], [], ["0.5", "0.9", "0.99"]
    for label, r in metrics["runs"].items():
        cov = r.get("coverage")
        if not cov:
            continue
        for s, v in cov["strata"].items():
            rows.append(
                [label, s, v["n"]]
                + [v["coverage"].get(lv) for lv in levels]
                + [v["width_q"].get("0.9"), v["width_p"].get("0.9")]
            )
        chained.append([label] + [c["coverage"] for c in cov.get("chained", [])])
    if not rows:
        return ""
    header = ["run", "stratum", "n"] + [f"coverage {lv}" for lv in levels] + ["width q (0.9)", "width p (0.9)"]
    text = _table(header, rows)
    if chained:
        n = max(len(c) for c in chained) - 1
        w = metrics["settings"]["window"]
        text += (
            "\n\nCoverage of the same 0.9 band in chained windows (the guarantee holds for the first "
            "window only; later windows start from a predicted state), truth Yoshida 8 at dt = 1e-3 on "
            "the sensor interpolant:\n\n"
            + _table(["run"] + [f"t <= {(k + 1) * w:g}" for k in range(n)], chained)
        )
    return text + window_coverage_table(metrics)


def window_coverage_table(metrics: dict[str, Any]) -> str:
    """Coverage of each chained window's own band (a calibration of K windows), +- its standard error."""
    rows, widths, notes, n_max = [], [], [], 0
    for label, r in metrics["runs"].items():
        cov = r.get("coverage") or {}
        if cov.get("windows_note"):
            notes.append(f"{label}: {cov['windows_note']}")
        ws = cov.get("windows")
        if not ws:
            continue
        n_max = max(n_max, len(ws))
        src = cov.get("windows_source", {})
        rows.append([label, src.get("n")] + [f"{x['coverage']:.3f} ± {x['se']:.3f}" if x["n"] else "—" for x in ws])
        widths.append([label] + [x["width_q"] for x in ws])
    if not rows and not notes:
        return ""
    text = "\n\n" + "\n".join(f"Note: {n}" for n in notes) if notes else ""
    if rows:
        w = metrics["settings"]["window"]
        cols = [f"t <= {(k + 1) * w:g}" for k in range(n_max)]
        rows = [r + [""] * (n_max + 2 - len(r)) for r in rows]
        widths = [r + [""] * (n_max + 1 - len(r)) for r in widths]
        text += (
            "\n\nEach chained window's own 0.9 band (a calibration of K windows, `nh calibrate --windows K`): "
            "coverage ± its standard error sqrt(c (1 - c) / n) on n long certified orbits: new ones drawn like "
            "the test data from the engine's evaluation stream (neither calibration nor test orbits), or the "
            "test orbits themselves where they reach past one window:\n\n"
            + _table(["run", "n"] + cols, rows)
            + "\n\nMean full width of the q band (0.9) per window:\n\n"
            + _table(["run"] + cols, widths)
        )
    return text


def equal_cost_table(metrics: dict[str, Any]) -> str:
    """Each SympONet beside its prior alone and the integrators at its force evaluations per orbit."""
    from .cost_table import REFERENCE_STEPS
    parts = []
    for label, run in metrics["runs"].items():
        ec = run.get("equal_cost")
        if not ec:
            continue
        rows = [
            [name, r["evaluations"], r["steps"], r["loss"], r.get("median"), f"{r['us_per_orbit']:.1f}",
             f"{r['model_wins']:.3f} ± {r['model_wins_se']:.3f}" if "model_wins" in r else "—", mean_ratio(r)]
            for name, r in ec["rows"].items()
        ]  # fmt: skip
        parts += [
            f"**{label}**: {ec['evaluations_per_orbit']} force evaluations per orbit ({ec['n_times']} query "
            f"times, {ec['n_orbits']} test orbits, float64, {ec['threads']} thread, timed side by side: "
            f"{ec.get('timing', 'torch (float64)')}). "
            f"Read-out: model, {ec['readout']['model']}; integrators, {ec['readout']['integrators']}.",
            "",
            _table(["row", "force evaluations", "steps", "loss", "median", "us/orbit", "model better on",
                    "model / row, mean loss (95 % bootstrap)"], rows),  # fmt: skip
            "",
        ]
        if ec.get("interpolation_floor") is not None:
            parts += [
                f"The sensor spline itself is {ec['interpolation_floor']:.3g} from the test orbits (the mean loss of "
                f"RK4 with {REFERENCE_STEPS:,} steps on it): every row above includes that floor; "
                "`bench/compiled_cost.py --reference interpolant` scores each method's own error.",
                "",
            ]
    if parts:
        parts.append(
            "The last column: the ratio of the mean losses on the same orbits, with the 95 % interval of a "
            "paired bootstrap over them; where it holds 1, the split does not say which mean is lower."
        )
    return "\n".join(parts)


def mean_ratio(row: dict[str, Any]) -> str:
    """`metrics.paired_comparison`'s ratio of mean losses and its interval, or a dash."""
    if "mean_ratio" not in row:
        return "—"
    return f"{row['mean_ratio']:.3g} [{row['mean_ratio_lo']:.3g}, {row['mean_ratio_hi']:.3g}]"


def render_report(metrics: dict[str, Any], images: list[Path] | list[str] = ()) -> str:
    """The whole report.md as a string."""
    s = metrics["settings"]
    data = metrics.get("data") or {}
    lines = [
        "# Neural Hamilton evaluation report",
        "",
        f"Device: `{metrics.get('device', 'cpu')}`. Test data: `{data.get('dir', 'none')}` "
        f"({_fmt(data.get('n_test'))} orbits; work-precision and energy on {_fmt(data.get('n_sub'))}, "
        f"det J on {_fmt(data.get('n_detj'))}). "
        f"Integrators see the same 100 sensor values as the models (not-a-knot cubic interpolant). "
        f"Loss = 0.5 (MSE_q + MSE_p). See docs/evaluation.md for the definitions.",
        "",
        "## Comparison",
        "",
        comparison_table(metrics),
        "",
    ]
    if any("test" in r for r in metrics["runs"].values()):
        lines += ["## Test set per energy stratum", "", strata_table(metrics), ""]
    cov = coverage_table(metrics)
    if cov:
        lines += [
            "## Calibrated bands (test split)",
            "",
            "Split-conformal simultaneous bands from each run's calibration.json (validation split): "
            "coverage = fraction of test orbits lying entirely inside the band over the window; widths "
            "are full widths (2 Q sigma).",
            "",
            cov,
            "",
        ]
    ec = equal_cost_table(metrics)
    if ec:
        lines += [
            "## At equal cost, on the model's own interpolant",
            "",
            "Each SympONet with its prior alone (`learned: false`, the same weights) and leapfrog, Yoshida-4, "
            "RK4 and the classical processed leapfrog (Takahashi-Imada modified potential, first-order "
            "processor) on the model's quintic sensor spline, each at the most steps within the model's "
            "force evaluations per orbit; last, RK4 and the classical processed leapfrog at the model's "
            "time per orbit.",
            "",
            ec,
            "",
        ]
    lines += [
        "## Physical potentials",
        "",
        f"Integrators at dt = {s['physics_dt']:g} on their native grid (Hermite dense output), on the sensor "
        f"interpolant. Long-time: models chain {s['window']:g}-s windows up to t = {s['t_long']:g}."
        + _arithmetic(metrics),
        "",
        physics_table(metrics),
        "",
        "## Work-precision",
        "",
        work_precision_table(metrics),
        "",
        "## Energy and area preservation (test subset)",
        "",
        extras_table(metrics),
        "",
    ]
    if images:
        lines += ["## Plots", ""]
        for img in images:
            name = Path(img).name
            lines += [f"![{Path(name).stem}]({name})", ""]
    return "\n".join(lines)


def _arithmetic(metrics: dict[str, Any]) -> str:
    """The sentence naming the dtype the models ran in (each in its weights'), or nothing."""
    dtypes = sorted({r["dtype"] for r in metrics.get("runs", {}).values() if r.get("dtype")})
    if not dtypes:
        return ""
    return (
        f" Models run in their weights' dtype ({', '.join(dtypes)}): a chained orbit that turns at the "
        "box's edge can move several-fold with the arithmetic (atw's, docs/results.md)."
    )
