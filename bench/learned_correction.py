"""Error against cost of SympONet's processed grid beside the integrators on its own interpolant
(issue 21): the curve of test loss against force evaluations per orbit, prior alone against
trained.

    python bench/learned_correction.py --data parquet_data/normal --compiled --max-test 0 \
        --runs runs/accuracy/normal-symponet-fast-local/symponet-fast-s928,runs/accuracy/normal-symponet-fast-local/symponet-fast-s814 \
        --plot docs/learned_correction.png

Every curve runs on the same test orbits, in float64, on the same quintic sensor spline:

- leapfrog, yoshida4, rk4 and the classical processed leapfrog (`evaluation/sensor_integrators.py`,
  cubic Hermite read-out) over a range of steps;
- the processed grid of the runs' config with `learned: false` (the prior alone: leapfrog with
  the same partial-step read-out) and with the textbook coefficients (`classical_alone()`), over
  the same range of steps;
- each trained run as one point at its own cost.

With `--compiled` every point runs as compiled code (`nh_models.compiled`: the SympONet rows
through `export` / `forward`, the integrators through `compiled.integrators`; Numba, float64,
one thread) and is timed (best of `--repeats` rounds over all the points in turn, each call over
all the orbits), and the structure
with the textbook coefficients is drawn with the scaled read-out too (leapfrog prior): the
curves against us/orbit, the cost that decides issue 21's targets 2 and 3. `--lanes K` times
every point with K orbits stepped side by side (`nh_models.compiled.lanes`; the throughput of a
batch, and the faster way for every method; the scaled read-out, which runs one orbit at a
time, is then left out). Time on an idle machine.

Prints one line per point (force evaluations, mean and median loss, us/orbit when compiled)
and draws mean and median against force evaluations per orbit (log-log), and with
`--compiled` against us/orbit below. Needs the package installed (`pip install -e .`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time

import numpy as np
import torch

from nh_data.errors import NHError
from nh_models.compiled.lanes import check_lanes
from nh_models.evaluation import sensor_integrators as si
from nh_models.evaluation.cases import TestSplit
from nh_models.evaluation.metrics import orbit_errors
from nh_models.inference.predict import load_predictor_run
from nh_models.models import get_model
from nh_models.zoo import source as run_source

STEPS = (48, 64, 96, 128, 160, 200, 256, 320)
Point = tuple[
    int, float, float, float
]  # force evaluations, mean loss, median loss, us/orbit (nan: not timed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset folder with a test split")
    ap.add_argument("--runs", required=True, help="comma-separated SympONet run folders (grid: processed)")
    ap.add_argument("--max-test", type=int, default=4000, help="test orbits (a seeded subset; 0: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset")
    ap.add_argument("--compiled", action="store_true", help="run and time every point as compiled code")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per compiled point (the best counts)")
    ap.add_argument(
        "--lanes",
        type=int,
        default=1,
        help="with --compiled, orbits stepped side by side on the thread (1: one at a time; 16: the "
        "throughput of a batch, `nh_models.compiled.lanes`); the scaled read-out's curve is then left out",
    )
    ap.add_argument("--plot", default="", help="PNG to draw (empty: none)")
    return ap.parse_args(argv)


class Evaluator:
    """One point of a curve: a SympONet or an integrator at n steps on the orbits of `data`, in
    torch or compiled (then timed)."""

    def __init__(self, data, compiled: bool, repeats: int, lanes: int = 1) -> None:
        self.data, self.compiled, self.repeats, self.lanes = data, compiled, max(1, repeats), lanes
        self.pending: list = []  # compiled points to time: (point, fn)
        arrays = [np.ascontiguousarray(a) for a in (data.V, data.t, data.ic)]
        self.arrays = arrays if compiled else [torch.from_numpy(a) for a in arrays]
        self.W = data.t.shape[1]

    def _point(self, evaluations: int, fn) -> list:
        """[evaluations, mean, median, us/orbit]; compiled, fn is kept and its time filled in by
        `time_all` (nan until then)."""
        if not self.compiled:
            with torch.inference_mode():
                q, p = fn()
            q, p = q.numpy(), p.numpy()
        else:
            q, p = fn()  # compiled outside the timing
        err = orbit_errors(q, p, self.data.q, self.data.p)["loss"]
        point = [int(evaluations), float(np.mean(err)), float(np.median(err)), math.nan]
        if self.compiled:
            self.pending.append((point, fn))
        return point

    def time_all(self) -> None:
        """Every compiled point timed, best of `repeats` rounds over all the points in turn, so
        that a slow spell of the machine costs every point alike (consecutive calls of one point
        would charge it to the points it hits)."""
        best = [math.inf] * len(self.pending)
        for _ in range(self.repeats):
            for k, (_, fn) in enumerate(self.pending):
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
        for (point, _), sec in zip(self.pending, best, strict=True):
            point[3] = 1e6 * sec / len(self.data.V)
        self.pending = []

    def model(self, model) -> list:
        if self.compiled:
            from nh_models.compiled import export, forward

            params = export(model)
            return self._point(
                model.force_evaluations_per_orbit(self.W), lambda: forward(params, *self.arrays, lanes=self.lanes)
            )
        return self._point(model.force_evaluations_per_orbit(self.W), lambda: model(*self.arrays))

    def method(self, method: str, n: int) -> list:
        if self.compiled:
            from nh_models.compiled.integrators import integrate

            return self._point(si.evaluations(method, n), lambda: integrate(*self.arrays, method, n, lanes=self.lanes))
        return self._point(si.evaluations(method, n), lambda: si.integrate(*self.arrays, method, n))


def curves(runs: list[str], ev: Evaluator) -> dict[str, list[Point]]:
    """{label: [points]}: each integrator and each fixed part of the runs' structure over STEPS,
    each trained run as one point at its own cost."""
    models = [load_predictor_run(run_source(r))[0].double().cpu().eval() for r in runs]
    base = models[0].config
    if base.grid != "processed":
        raise NHError(f"{runs[0]} is not a SympONet with grid: processed")
    out: dict[str, list[Point]] = {m: [ev.method(m, n) for n in STEPS] for m in si.METHODS}
    parts = [("prior alone", False, base.readout), ("classical coefficients", True, base.readout)]
    if ev.compiled and ev.lanes == 1 and base.prior == "leapfrog" and base.readout != "scaled":
        parts.append(("classical coefficients, scaled read-out", True, "scaled"))
    for label, learned, readout in parts:
        rows = []
        for n in STEPS:
            cfg = dataclasses.replace(
                base, steps=n, init="classical", local_layers=0, learned=learned, readout=readout
            )
            rows.append(ev.model(get_model("symponet", dataclasses.asdict(cfg)).double().eval()))
        out[label] = rows
    for run, model in zip(runs, models, strict=True):
        out[f"trained: {run.rstrip('/').split('/')[-1]}, {model.config.steps} steps"] = [ev.model(model)]
    ev.time_all()
    return {label: [tuple(r) for r in rows] for label, rows in out.items()}


def plot(result: dict[str, list[Point]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    timed = all(not math.isnan(r[3]) for rows in result.values() for r in rows)
    xcols = (
        ((0, "force evaluations per orbit"), (3, "us/orbit, compiled, one core"))
        if timed
        else ((0, "force evaluations per orbit"),)
    )
    fig, axes = plt.subplots(len(xcols), 2, figsize=(11, 4.2 * len(xcols)), squeeze=False)
    for row, (xcol, xlabel) in zip(axes, xcols, strict=True):
        for ax, col, name in ((row[0], 1, "mean"), (row[1], 2, "median")):
            for label, rows in result.items():
                x = [r[xcol] for r in rows]
                y = [r[col] for r in rows]
                if label.startswith("trained"):
                    ax.plot(x, y, "*", ms=12, label=label)
                else:
                    ax.plot(x, y, "o-" if "alone" in label or "classical" in label else ".--", label=label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            if xcol == 3:  # a short range of times: plain numbers, not powers of ten
                ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
                ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{name} test loss")
            ax.grid(True, which="both", alpha=0.3)
        row[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.compiled:
        import numba

        numba.set_num_threads(1)
    try:
        if args.lanes != 1 and not args.compiled:
            raise NHError(f"--lanes {args.lanes} times compiled code: pass --compiled as well")
        lanes = check_lanes(args.lanes)
        split = TestSplit(args.data, args.max_test or None, args.seed)
        data = split.take(np.arange(len(split.u)))
        result = curves([r for r in args.runs.split(",") if r], Evaluator(data, args.compiled, args.repeats, lanes))
    except NHError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    side = "one orbit at a time" if lanes == 1 else f"{lanes} orbits side by side"
    how = f"compiled, one thread, {side}, best of {args.repeats}" if args.compiled else "torch"
    print(f"{len(data.u)} test orbits of {args.data}; loss 0.5 (MSE_q + MSE_p), float64, {how}")
    print(f"{'curve':<44} {'evaluations':>11} {'mean':>10} {'median':>10} {'us/orbit':>9}")
    for label, rows in result.items():
        for evals, mean, median, us in rows:
            print(f"{label:<44} {evals:>11d} {mean:>10.3e} {median:>10.3e} {us:>9.2f}")
    if args.plot:
        plot(
            result,
            args.plot,
            f"{args.data}, {len(data.u)} test orbits: error against cost on the quintic sensor spline ({how})",
        )
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
