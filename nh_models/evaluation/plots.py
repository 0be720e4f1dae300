"""PNG plots of an evaluation (matplotlib, Agg backend, no display needed).

Every function takes the `curves` / `metrics` produced by
`nh_models.evaluation.eval_command.evaluate_candidates` and writes one PNG atomically.
Reference curves are black; each model keeps one colour across all plots;
integrators are grey dashed lines.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from nh_data.problem import SENSORS  # noqa: E402

from .oracle import BASELINES  # noqa: E402

TINY = 1e-16  # floor for log axes of errors (exact zeros, e.g. at t = 0)
TINY_LOSS = 1e-30  # floor for log axes of squared errors
_INTEGRATOR_STYLE = {
    "rk4": dict(color="0.35", ls="--"),
    "leapfrog": dict(color="0.6", ls=":"),
    "yoshida4": dict(color="0.5", ls="-."),
}
_MODEL_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink"]


def _style(label: str, models: list[str]) -> dict[str, Any]:
    base = label.split(" ")[0]
    if base in _INTEGRATOR_STYLE:
        return dict(_INTEGRATOR_STYLE[base], lw=1.3)
    i = models.index(label) if label in models else 0
    if len(models) > len(_MODEL_COLOURS):  # many runs: twenty distinct colours before any repeats
        return dict(color=plt.get_cmap("tab20")(i % 20), ls="-", lw=1.6)
    return dict(color=_MODEL_COLOURS[i % len(_MODEL_COLOURS)], ls="-", lw=1.6)


def _grid_legend(fig, axes) -> None:
    """The legend of a grid of panels: in the first panel, or beside the grid when it would
    cover a panel (more than six entries)."""
    handles, labels = axes[0].get_legend_handles_labels()
    if len(labels) > 6:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    else:
        axes[0].legend(fontsize=7)


def _save(fig, path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _grid(n: int, width: float = 4.2, height: float = 3.0):
    cols = min(4, max(1, n))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def physics_case(name: str, entry: dict[str, Any], models: list[str], out: Path) -> Path:
    """Potential, q(t), p(t) and the phase portrait: reference vs each model."""
    from nh_data.physics import POTENTIALS

    case = entry["case"]
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    x = np.linspace(0.0, 1.0, 400)
    pot = POTENTIALS.get(name)
    if pot is not None:
        ax[0].plot(x, pot.potential(x), "k-", lw=1.5, label="V(q)")
    ax[0].plot(SENSORS, case.V, "o", ms=2.5, color="tab:gray", label="100 sensors")
    ax[0].set(xlabel="q", ylabel="V", title=f"{name}: potential")
    ax[0].legend(fontsize=8)
    ax[1].plot(case.t, case.q_ref, "k-", lw=2.5, alpha=0.35, label="reference")
    ax[2].plot(case.t, case.p_ref, "k-", lw=2.5, alpha=0.35, label="reference")
    ax[3].plot(case.q_ref, case.p_ref, "k-", lw=2.5, alpha=0.35, label="reference")
    for label in models:
        if label not in entry["pred"]:
            continue
        q, p = entry["pred"][label]
        st = _style(label, models)
        ax[1].plot(case.t, q, label=label, **st)
        ax[2].plot(case.t, p, label=label, **st)
        ax[3].plot(q, p, label=label, **st)
    ax[1].set(xlabel="t", ylabel="q", title="q(t)")
    ax[2].set(xlabel="t", ylabel="p", title="p(t)")
    ax[3].set(xlabel="q", ylabel="p", title="phase portrait")
    ax[1].legend(fontsize=8)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out / f"physics_{name}.png")


def physics_error(physics: dict[str, Any], models: list[str], out: Path) -> Path:
    """Error over time sqrt(dq^2 + dp^2) on each physics potential, models and integrators."""
    fig, axes = _grid(len(physics))
    for ax, (name, entry) in zip(axes, physics.items(), strict=False):
        case = entry["case"]
        for label, (q, p) in entry["pred"].items():
            err = np.sqrt((q - case.q_ref) ** 2 + (p - case.p_ref) ** 2)
            ax.semilogy(case.t, np.maximum(err, TINY), label=label, **_style(label, models))
        ax.set(title=name, xlabel="t", ylabel="|error| in (q, p)")
        ax.grid(alpha=0.3, which="both")
    _grid_legend(fig, axes)
    fig.suptitle("Error over time on the physical potentials (integrators on the sensor interpolant)", y=1.0)
    fig.tight_layout()
    return _save(fig, out / "physics_error.png")


def work_precision(metrics: dict[str, Any], models: list[str], out: Path) -> Path:
    """Mean loss against wall time per trajectory: integrator curves (one point per dt), models as stars."""
    wp = metrics["integrators"]["work_precision"]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for method, rows in wp.items():
        rows = [r for r in rows if r["loss"] is not None]  # diverged points (loss inf) are left out
        tt = [r["time_per_traj_s"] * 1e6 for r in rows]
        ll = [max(r["loss"], TINY_LOSS) for r in rows]
        ax.loglog(tt, ll, marker="o", ms=4, label=method, **_style(method, models))
        for r, x, y in zip(rows, tt, ll, strict=True):
            if method == "rk4":
                ax.annotate(
                    f"{r['dt']:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color="0.3"
                )
    for label in models:
        run = metrics["runs"].get(label, {})
        point = run.get("work_precision")
        if not point or point.get("loss") is None:
            continue
        st = _style(label, models)
        ax.loglog(
            [point["time_per_traj_s"] * 1e6],
            [max(point["loss"], TINY_LOSS)],
            marker="*",
            ms=15,
            ls="none",
            color=st["color"],
            label=f"{label} ({point.get('device', 'cpu')})",
        )
    ax.set(
        xlabel="wall time per trajectory [us]",
        ylabel="mean loss 0.5 (MSE_q + MSE_p)",
        title="Work-precision on the test subset (labels: RK4 dt; diverged dt left out)",
    )
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(alpha=0.35, which="major")
    ax.grid(alpha=0.12, which="minor")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "work_precision.png")


def energy_drift(curves: dict[str, Any], models: list[str], out: Path) -> Path:
    """Median and 90 % quantile over test orbits of |H - H0| along the window."""
    energy = curves["energy"]
    t = energy["t"]
    order = np.argsort(t, axis=1)
    ts = np.median(np.take_along_axis(t, order, axis=1), axis=0)  # typical sorted time grid
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for label, dH in energy.items():
        if label == "t":
            continue
        dHs = np.take_along_axis(dH, order, axis=1)
        st = _style(label, models)
        ax.semilogy(ts, np.maximum(np.median(dHs, axis=0), TINY), label=f"{label} (median)", **st)
        if label in models:
            ax.fill_between(
                ts,
                np.maximum(np.quantile(dHs, 0.1, axis=0), TINY),
                np.maximum(np.quantile(dHs, 0.9, axis=0), TINY),
                color=st["color"],
                alpha=0.15,
            )
    ax.set(
        xlabel="t (sorted query index, median time)",
        ylabel="|H(q, p) - H(q0, p0)|",
        title="Energy error along predicted trajectories (band: 10-90 %)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "energy_drift.png")


def long_time(curves: dict[str, Any], models: list[str], window: float, out: Path, key: str = "err") -> Path:
    """Error (`key` "err") or energy error ("dH") against time of chained windows up to t_long,
    per physics potential."""
    lt = curves["long_time"]
    ylabel, name, what = {
        "err": ("|error| in (q, p)", "long_time.png", "Long-time prediction"),
        "dH": ("|H(q, p) - H(q0, p0)|", "long_time_energy.png", "Energy error of the long-time prediction"),
    }[key]
    fig, axes = _grid(len(lt))
    for ax, (case, entry) in zip(axes, lt.items(), strict=False):
        for label, err in entry[key].items():
            ax.semilogy(entry["t"], np.maximum(err, TINY), label=label, **_style(label, models))
        for k in np.arange(window, entry["t"][-1], window):
            ax.axvline(k, color="0.85", lw=0.6, zorder=0)
        ax.set(title=case, xlabel="t", ylabel=ylabel)
        ax.grid(alpha=0.3, axis="y", which="both")
    _grid_legend(fig, axes)
    fig.suptitle(f"{what}: models chain {window:g}-s windows; integrators run straight through", y=1.0)
    fig.tight_layout()
    return _save(fig, out / name)


def strata(metrics: dict[str, Any], models: list[str], out: Path) -> Path:
    """Test loss per energy stratum for each model (log scale)."""
    labels = [m for m in models if "test" in metrics["runs"].get(m, {})]
    names: list[str] = []
    for m in labels:
        names += [s for s in metrics["runs"][m]["test"]["strata"] if s not in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 2), 4.2))
    width = 0.8 / max(1, len(labels))
    for i, m in enumerate(labels):
        st = metrics["runs"][m]["test"]["strata"]
        vals = [max((st.get(s) or {}).get("loss") or TINY, TINY) for s in names]
        ax.bar(np.arange(len(names)) + i * width, vals, width, label=m, color=_style(m, models)["color"])
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.set_yscale("log")
    ax.set(xlabel="energy stratum u", ylabel="mean test loss", title="Test loss per energy stratum")
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "strata.png")


def make_all(curves: dict[str, Any], metrics: dict[str, Any], out: Path) -> list[Path]:
    """Every plot the data allows; returns the paths written."""
    models = list(metrics["runs"])
    paths = []
    for name, entry in curves["physics"].items():
        paths.append(physics_case(name, entry, models, out))
    if curves["physics"]:
        paths.append(physics_error(curves["physics"], models, out))
    if metrics["integrators"].get("work_precision"):
        paths.append(work_precision(metrics, models, out))
    if "t" in curves["energy"]:
        paths.append(energy_drift(curves, models, out))
    if curves["long_time"]:
        paths.append(long_time(curves, models, metrics["settings"]["window"], out))
        paths.append(long_time(curves, models, metrics["settings"]["window"], out, key="dH"))
    if any("test" in r for r in metrics["runs"].values()):
        paths.append(strata(metrics, models, out))
    return paths


__all__ = ["make_all", "BASELINES"]
