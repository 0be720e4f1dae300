"""The report of the accuracy benchmark (bench/accuracy.py): its markdown block and its plot.

From the benchmark's entries (one per model and recipe, aggregated over seeds), its data
baselines and RK4's figures, `render_block` writes the block of one data folder:

- the facts of the run (command, machine, date, data, test orbits) (`_block_facts`);
- the results table (`results_table`: a row per entry, then RK4 at RK4_DT, the mean predictor
  and the rank-K floors) and its legend (`_table_legend`); the physics table;
- the claims, read off the numbers (`claims`: accuracy, equal cost, speed, physics);
- the plot, validation loss against training time (`plot_curves`).

`upsert_block` puts the block between its markers `<!-- accuracy:<name> start -->` and
`<!-- accuracy:<name> end -->` of the results file, keeping every other text.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nh_data.problem import PHYSICS_DT
from nh_models.evaluation.metrics import OTHER  # the label of orbits outside the energy strata

if TYPE_CHECKING:
    from accuracy import RunSpec

DONE_STATUSES = ("completed", "time_limit")
RK4_DT = PHYSICS_DT  # the fixed-step RK4 baseline of the table (evaluate's physics_dt)
SMOOTH = ("sho", "quartic", "morse")  # physics potentials with smooth V
KINKED = ("mff", "smff")  # with a kink (mff) or a steep corner (smff)


# ---------------------------------------------------------------- the entries


def mean_of(values: list[Any]) -> float | None:
    """Mean of the finite values, None if there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


@dataclass
class Entry:
    """One row of the table: a model and recipe, aggregated over its seeds."""

    model: str
    recipe: str
    data: str
    params: int | None
    seeds: list[int]
    epochs: list[int]
    statuses: list[str]
    samples_per_s: float | None
    train_minutes: float | None
    test: list[float]  # evaluated test loss per seed
    strata: dict[str, float | None]
    physics: dict[str, float | None]  # potential -> loss, mean over seeds
    us_per_orbit: float | None  # the fastest over seeds (same architecture and device)
    sub_loss: float | None  # loss on evaluate's timing subset (what equal cost compares)
    equal_cost: dict[str, Any] | None  # rk4_at_cost at us_per_orbit
    branches: int | None

    @property
    def name(self) -> str:
        """model (recipe)."""
        return f"{self.model} ({self.recipe})"

    @property
    def test_mean(self) -> float | None:
        """Mean test loss over seeds."""
        return mean_of(self.test)


# ---------------------------------------------------------------- formatting


def fmt(x: Any, digits: int = 3) -> str:
    """A number for the tables: None -> n/a, floats with `digits` significant digits."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    x = float(x)
    if x == 0:
        return "0"
    if 1e-2 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{digits - 1}e}"


def fmt_spread(values: list[float | None]) -> str:
    """Mean, and (min–max) over seeds when there are at least two finite values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(float(np.mean(vals)))} ({fmt(min(vals))}–{fmt(max(vals))})"


def fmt_range(values: list[int]) -> str:
    """An integer, or min–max of several."""
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def ratio(a: float | None, b: float | None) -> str:
    """a / b as `0.42x`, n/a when either is missing."""
    if a is None or b is None or not b > 0:
        return "n/a"
    return f"{fmt(a / b)}x"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def physics_cells(losses: dict[str, float | None]) -> list[str]:
    """(mean over potentials, the worst potential and its loss) of per-potential losses."""
    vals = {k: v for k, v in losses.items() if v is not None}
    if not vals:
        return ["n/a", "n/a"]
    worst = max(vals, key=vals.get)
    return [fmt(float(np.mean(list(vals.values())))), f"{fmt(vals[worst])} ({worst})"]


# ---------------------------------------------------------------- the tables and the claims


def results_table(
    entries: list[Entry],
    base: dict[str, Any],
    rk4: dict[str, Any],
    budget: float,
    strata: list[str],
    wall: bool,
) -> str:
    """The main table: one row per (model, recipe), then RK4 at RK4_DT and the data baselines.

    wall: a wall-start dataset, whose one stratum is headed "wall" (also when an older
    `stratum_labels` files its u = 0 under "other").
    """
    rk4_test = base["rk4"]["overall"]["loss"]
    rows = [_entry_row(e, budget, strata, rk4_test) for e in entries]
    rows += _baseline_rows(entries, base, rk4, strata)
    return md_table(_results_header(strata, wall), rows)


def _results_header(strata: list[str], wall: bool) -> list[str]:
    """The columns of `results_table`."""
    return [
        "entry",
        "recipe",
        "data",
        "params",
        "budget (min)",
        "train time (min)",
        "epochs",
        "samples/s",
        "test loss, mean (min–max)",
        *[f"loss {'wall' if wall and s == OTHER else s}" for s in strata],
        "physics: mean",
        "physics: worst",
        "us/orbit",
        f"vs RK4 dt={RK4_DT:g}",
        "RK4 at equal cost",
    ]


def _equal_cost_cell(ec: dict[str, Any] | None) -> str:
    """The `RK4 at equal cost` cell of an entry from its `rk4_at_cost` (None: n/a)."""
    if ec is not None and ec["cheaper"]:
        loss = fmt(ec["loss"]) if ec["loss"] is not None else "diverged"
        return f"cheaper than every RK4 point (RK4's cheapest, dt {ec['dt']:g}: {loss})"
    if ec is not None:
        return f"{fmt(ec['loss'])} (dt {ec['dt']:.3g}{', extrapolated' if ec['extrapolated'] else ''})"
    return "n/a"


def _entry_row(e: Entry, budget: float, strata: list[str], rk4_test: float) -> list[str]:
    """The row of one (model, recipe); a run that did not finish shows its statuses."""
    status = "" if all(s in DONE_STATUSES for s in e.statuses) else f" [{', '.join(e.statuses)}]"
    return [
        e.model + status,
        e.recipe,
        e.data,
        fmt(e.params),
        fmt(budget),
        fmt(e.train_minutes),
        fmt_range(e.epochs),
        fmt(e.samples_per_s),
        fmt_spread(e.test),
        *[fmt(e.strata.get(s)) for s in strata],
        *physics_cells(e.physics),
        fmt(e.us_per_orbit),
        ratio(e.test_mean, rk4_test),
        _equal_cost_cell(e.equal_cost),
    ]


def _baseline_rows(
    entries: list[Entry], base: dict[str, Any], rk4: dict[str, Any], strata: list[str]
) -> list[list[str]]:
    """The rows of RK4 at RK4_DT, the mean predictor and the rank-K floors (n/a off a shared grid)."""
    rk4_test = base["rk4"]["overall"]["loss"]
    dash = ["—"] * 7

    def baseline_row(name: str, summary: dict[str, Any], physics: list[str], us: str) -> list[str]:
        loss = summary["overall"]["loss"]
        strata_cells = [fmt(summary["strata"].get(s, {}).get("loss")) for s in strata]
        return [name, *dash, fmt(loss), *strata_cells, *physics, us, ratio(loss, rk4_test), "—"]

    rows = [
        baseline_row(
            f"RK4 dt={RK4_DT:g}", base["rk4"], physics_cells(rk4["physics"]), fmt(rk4["us_per_orbit"])
        )
    ]
    mean_name = "mean predictor" + ("" if base["uniform"] else " (constant)")
    rows.append(baseline_row(mean_name, base["mean"], ["—", "—"], "—"))
    if base["rank"]:
        branches = {e.branches for e in entries if e.branches}
        for k, summary in base["rank"].items():
            note = " (a DeepONet branch count)" if k in branches else ""
            rows.append(baseline_row(f"rank-{k} floor{note}", summary, ["—", "—"], "—"))
    else:
        rows.append(
            [
                "rank-K floor",
                *dash,
                "n/a (per-orbit times)",
                *["n/a"] * len(strata),
                "—",
                "—",
                "—",
                "n/a",
                "—",
            ]
        )
    return rows


def physics_table(entries: list[Entry], rk4: dict[str, Any]) -> str:
    """Loss on each physics potential: one row per (model, recipe), then RK4 at RK4_DT."""
    names = list(rk4["physics"])
    rows = [[e.name, *[fmt(e.physics.get(n)) for n in names]] for e in entries]
    rows.append([f"RK4 dt={RK4_DT:g}", *[fmt(rk4["physics"].get(n)) for n in names]])
    return md_table(["entry", *names], rows)


def listing(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def claims(entries: list[Entry], base: dict[str, Any], rk4: dict[str, Any], device: str) -> list[str]:
    """Statements read off the measured numbers of this run, nothing more: accuracy against the
    baselines, RK4 at equal cost, inference speed, the smooth and kinked physics potentials."""
    return [
        *_accuracy_claims(entries, base),
        *_equal_cost_claims(entries, device),
        *_speed_claims(entries, rk4, device),
        *_physics_claims(entries, rk4),
    ]


def _accuracy_claims(entries: list[Entry], base: dict[str, Any]) -> list[str]:
    """The most accurate networks, and which beat the mean predictor and RK4 at RK4_DT."""
    out = []
    scored = sorted((e for e in entries if e.test_mean is not None), key=lambda e: e.test_mean)
    rk4_test = base["rk4"]["overall"]["loss"]
    mean_loss = base["mean"]["overall"]["loss"]
    if not scored:
        return out
    best = scored[0]
    seeds = f"mean of {len(best.seeds)} seeds" if len(best.seeds) > 1 else f"seed {best.seeds[0]}"
    text = f"In this run, the most accurate network is {best.name}: test loss {fmt(best.test_mean)}"
    text += f" ({seeds})"
    if len(scored) > 1:
        text += f"; next is {scored[1].name} at {fmt(scored[1].test_mean)}"
        lo, hi = min(best.test), max(best.test)
        if len(best.seeds) > 1 and min(scored[1].test) <= hi:
            text += f" (their seed ranges overlap: {fmt(lo)}–{fmt(hi)} vs {fmt(min(scored[1].test))}–"
            text += f"{fmt(max(scored[1].test))})"
    out.append(text + ".")
    above_mean = [e.name for e in scored if e.test_mean >= mean_loss]
    if above_mean:
        out.append(f"In this run, {listing(above_mean)} did not beat the mean predictor ({fmt(mean_loss)}).")
    below = [e for e in scored if e.test_mean < rk4_test]
    if below:
        cells = [f"{e.name} ({ratio(e.test_mean, rk4_test)})" for e in below]
        out.append(f"In this run, {listing(cells)} scored below RK4 at dt = {RK4_DT:g} ({fmt(rk4_test)}).")
    else:
        out.append(
            f"In this run, no network scored below RK4 at dt = {RK4_DT:g} ({fmt(rk4_test)} on the same "
            f"orbits); the closest, {best.name}, is at {ratio(best.test_mean, rk4_test)}."
        )
    return out


def _equal_cost_claims(entries: list[Entry], device: str) -> list[str]:
    """Which networks beat RK4 at their own cost per orbit (and which could not be compared)."""
    out = []
    costed = [e for e in entries if e.equal_cost is not None and e.sub_loss is not None]
    compared = [e for e in costed if e.equal_cost["loss"] is not None]
    if compared:
        beat = [e for e in compared if e.sub_loss < e.equal_cost["loss"]]
        extra = any(e.equal_cost["extrapolated"] for e in compared)
        note = " (some equal-cost points extrapolated beyond RK4's measured steps)" if extra else ""
        if beat:
            cells = [f"{e.name} ({fmt(e.sub_loss)} vs RK4 {fmt(e.equal_cost['loss'])})" for e in beat]
            out.append(f"At equal cost per orbit on {device}, {listing(cells)} scored below RK4{note}.")
        else:
            out.append(f"At equal cost per orbit on {device}, no network scored below RK4{note}.")
        cheap = [e.name for e in compared if e.equal_cost["cheaper"]]
        if cheap:
            out.append(
                f"{listing(cheap)} cost less per orbit than RK4 at any measured step: the comparison "
                "above is with RK4's cheapest measured point, which costs more."
            )
    uncompared = [e.name for e in costed if e.equal_cost["loss"] is None]
    if uncompared:
        out.append(f"{listing(uncompared)}: no equal-cost comparison (RK4 diverged at the comparable step).")
    return out


def _speed_claims(entries: list[Entry], rk4: dict[str, Any], device: str) -> list[str]:
    """The fastest (and slowest) network at inference, beside RK4 at RK4_DT."""
    timed = sorted((e for e in entries if e.us_per_orbit is not None), key=lambda e: e.us_per_orbit)
    if not timed:
        return []
    fastest = timed[0]
    text = f"The fastest network at inference is {fastest.name}: {fmt(fastest.us_per_orbit)} us/orbit"
    text += f" on {device}"
    if len(timed) > 1:
        text += f" (slowest: {timed[-1].name}, {fmt(timed[-1].us_per_orbit)} us/orbit)"
    if rk4["us_per_orbit"] is not None:
        text += f"; RK4 at dt = {RK4_DT:g} takes {fmt(rk4['us_per_orbit'])} us/orbit on the CPU"
    return [text + "."]


def _physics_claims(entries: list[Entry], rk4: dict[str, Any]) -> list[str]:
    """The networks' mean loss on the SMOOTH and the KINKED physics potentials, and their ratio."""
    out = []
    group_means: dict[str, dict[str, float]] = {}
    for group, what in ((SMOOTH, "smooth"), (KINKED, "kinked")):
        names = [n for n in group if n in rk4["physics"]]
        per = {e.name: mean_of([e.physics.get(n) for n in names]) for e in entries} if names else {}
        per = {k: v for k, v in per.items() if v is not None}
        if not per:
            continue
        group_means[what] = per
        rk = mean_of([rk4["physics"].get(n) for n in names])
        best = min(per, key=per.get)
        if len(per) == 1:
            text = f"the mean loss of {best} is {fmt(per[best])}"
        else:
            text = f"the networks' mean loss ranges {fmt(per[best])} ({best}) to {fmt(max(per.values()))}"
        out.append(
            f"On the {what} physics potentials ({'/'.join(names)}), {text}; "
            f"RK4 at dt = {RK4_DT:g}: {fmt(rk)}."
        )
    if len(group_means) == 2:
        smooth, kinked = group_means["smooth"], group_means["kinked"]
        ratios = {k: kinked[k] / smooth[k] for k in smooth if k in kinked and smooth[k] > 0}
        if ratios:
            worse = [k for k, r in ratios.items() if r > 1]
            out.append(
                f"Kinked over smooth mean physics loss: {fmt(min(ratios.values()))}x to "
                f"{fmt(max(ratios.values()))}x across networks; {len(worse)} of {len(ratios)} "
                "did worse on the kinked potentials."
            )
    return out


# ---------------------------------------------------------------- the block


def machine_line(device: str) -> str:
    """Processor, core count, torch version and device of this run."""
    import torch

    proc = platform.processor() or platform.machine()
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return (
        f"{proc}, {os.cpu_count()} CPUs (torch threads {torch.get_num_threads()}), "
        f"torch {torch.__version__}, device {dev}"
    )


def dataset_line(data_dir: Path, manifest: dict[str, Any]) -> str:
    """The dataset's build config from its manifest."""
    c, n = manifest["config"], manifest["counts"]
    return (
        f"`{data_dir}`: ic {c.get('ic')}, times {c.get('times')}, integrator {c.get('integrator')}, "
        f"{c.get('n')} potentials (seed {c.get('seed')}); orbits train {n.get('train')}, "
        f"val {n.get('val')}, test {n.get('test')}"
    )


def render_block(
    name: str,
    command: str,
    data_dir: Path,
    device: str,
    entries: list[Entry],
    base: dict[str, Any],
    rk4: dict[str, Any],
    metrics: dict[str, Any],
    args: argparse.Namespace,
    plot_name: str,
    failed: list[RunSpec],
    train_threads: list[int] | None = None,
) -> str:
    """The markdown between the markers of data folder `name` (markers included): the facts of
    the run, the results table and its legend, the physics table, the claims and the plot."""
    from nh_data.schema import read_manifest

    strata = list(dict.fromkeys([k for e in entries for k in e.strata] + list(base["rk4"]["strata"])))
    manifest = read_manifest(data_dir)
    wall = manifest["config"].get("ic") == "wall"
    lines = [
        f"<!-- accuracy:{name} start -->",
        f"## Accuracy: `{name}`, {fmt(args.budget)} min per run",
        "",
        *_block_facts(command, data_dir, manifest, device, entries, base, metrics, args, train_threads),
        "",
        results_table(entries, base, rk4, args.budget, strata, wall),
        "",
        *[f"Failed run (left out): {s.label}: {s.error}" for s in failed],
        *([""] if failed else []),
        _table_legend(device, base),
        "",
    ]
    if rk4["physics"]:
        lines += [
            "Physics potentials, loss per potential (mean over seeds):",
            "",
            physics_table(entries, rk4),
            "",
        ]
    lines += ["### Claims (generated from the numbers above)", ""]
    lines += [f"- {c}" for c in claims(entries, base, rk4, device)]
    lines += [
        "",
        f"![validation loss against training time, {name}]({plot_name})",
        "",
        f"<!-- accuracy:{name} end -->",
    ]
    return "\n".join(lines)


def _block_facts(
    command: str,
    data_dir: Path,
    manifest: dict[str, Any],
    device: str,
    entries: list[Entry],
    base: dict[str, Any],
    metrics: dict[str, Any],
    args: argparse.Namespace,
    train_threads: list[int] | None,
) -> list[str]:
    """The block's list of facts: command, machine, training threads, date, data, test orbits."""
    n_sub = metrics.get("data", {}).get("n_sub")
    seeds = sorted({s for e in entries for s in e.seeds})
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- command: `{command}`",
        f"- machine: {machine_line(device)}",
        *(
            [
                f"- training: torch threads per run {', '.join(map(str, train_threads))} (each run's metrics.json)"
            ]
            if train_threads
            else []
        ),
        f"- date: {when}",
        f"- data: {dataset_line(data_dir, manifest)}",
        f"- scored on {base['n_test']} test orbits"
        + (f" (a seeded random subset, --max-test {args.max_test})" if args.max_test else "")
        + f"; seeds {', '.join(map(str, seeds))}; timing and equal cost on {n_sub} of them",
    ]


def _table_legend(device: str, base: dict[str, Any]) -> str:
    """The paragraph under the results table: what each column and baseline is."""
    rank_note = (
        "rank-K floor: the train split's mean orbit plus its first K principal components (SVD of the "
        "centred (N, 100) q and p matrices of the train split); the loss is that of each test orbit "
        "projected onto this train basis, 0.5 (MSE_q + MSE_p) of the residual beyond K components. "
        "A predictor whose q(t) and p(t) each lie in a fixed K-dimensional affine space of functions of t "
        "(e.g. a DeepONet with K branches, its trunk a function of t alone) cannot beat it on the train "
        "split."
        if base["rank"]
        else "rank-K floor: n/a, the orbits do not share one uniform time grid."
    )
    mean_note = (
        "mean predictor: the train split's mean orbit, per time index (all orbits share one uniform grid)."
        if base["uniform"]
        else "mean predictor: the constant train mean of q and of p (orbits have their own times)."
    )
    return (
        "Test loss 0.5 (MSE_q + MSE_p) of the best-validation checkpoint on the test orbits; with several "
        "seeds the mean and, in brackets, the min–max over seeds; other columns are means over seeds. "
        f"`vs RK4 dt={RK4_DT:g}`: the row's mean test loss over RK4's on the same orbits (RK4 on the sensor "
        "interpolant, native grid, Hermite dense output; docs/evaluation.md). `RK4 at equal cost`: RK4's "
        "loss (and step) at the cost per orbit of the network, interpolated from RK4's measured times on "
        f"this machine, on the timing subset. us/orbit: the network on {device}, batches of up to 2,048, "
        "the fastest over seeds (same architecture; other jobs only add time); RK4 on all CPU cores. "
        "train time: the sum of the epochs' training time (validation and the budget planning "
        "excluded). `data`: files = the folder's train split, fresh = freshly generated orbits "
        f"drawn like it. {mean_note} {rank_note}"
    )


def upsert_block(path: Path, name: str, block: str) -> None:
    """Replace the block of `name` in `path` (markers included), or append it; other text is kept."""
    from nh_data.fileio import write_text_atomic

    start, end = f"<!-- accuracy:{name} start -->", f"<!-- accuracy:{name} end -->"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        text = (
            "# Accuracy results\n\n"
            "Written by `bench/accuracy.py`: one block per data folder, between its `<!-- accuracy:... -->` "
            "markers, regenerated by each run on that folder. Text outside the blocks is kept.\n"
        )
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


# ---------------------------------------------------------------- the plot


def read_history(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative training wall time in minutes, validation loss) per epoch from history.csv."""
    minutes, val = [], []
    try:
        with open(run_dir / "history.csv", newline="") as f:
            for row in csv.DictReader(f):
                minutes.append(float(row["seconds"]) / 60.0)
                val.append(float(row["val_loss"]) if row.get("val_loss") not in (None, "") else math.nan)
    except (OSError, KeyError, ValueError):
        return np.zeros(0), np.zeros(0)
    return np.cumsum(minutes), np.asarray(val)


def plot_curves(
    specs: list[RunSpec],
    metrics: dict[str, Any],
    base: dict[str, Any],
    title: str,
    path: Path,
) -> None:
    """Validation loss against cumulative training wall time, one line per run, final test loss marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(10, 6))
    entries = list(dict.fromkeys(s.entry for s in specs))
    colours = plt.get_cmap("tab10" if len(entries) <= 10 else "tab20")
    seeds = list(dict.fromkeys(s.seed for s in specs))
    styles = ["-", "--", ":", "-."]
    for spec in specs:
        colour = colours(entries.index(spec.entry) % colours.N)
        minutes, val = read_history(spec.run_dir)
        if minutes.size:
            style = styles[seeds.index(spec.seed) % len(styles)]
            ax.plot(minutes, val, style, color=colour, lw=1.4, label=f"{spec.entry} s{spec.seed}")
            test = metrics["runs"].get(spec.label, {}).get("test", {}).get("overall", {}).get("loss")
            if test is not None:
                ax.plot(minutes[-1], test, "o", color=colour, ms=7, mec="black", mew=0.8)
    rk4 = base["rk4"]["overall"]["loss"]
    mean = base["mean"]["overall"]["loss"]
    ax.axhline(rk4, color="black", ls="--", lw=1.0, label=f"RK4 dt={RK4_DT:g} (test)")
    ax.axhline(mean, color="grey", ls=":", lw=1.2, label="mean predictor (test)")
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="", marker="o", color="white", mec="black", label="final test loss"))
    ax.set_yscale("log")
    ax.set_xlabel("cumulative training wall time (min)")
    ax.set_ylabel("validation loss 0.5 (MSE_q + MSE_p)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
