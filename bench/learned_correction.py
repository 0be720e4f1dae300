"""Error against cost of SympONet's processed grid beside the integrators on its own interpolant
(issue 21): the curve of test loss against force evaluations per orbit, prior alone against
trained.

    python bench/learned_correction.py --data parquet_data/normal \
        --runs runs/accuracy/normal-symponet-fast/symponet-fast-s928,runs/accuracy/normal-symponet-fast/symponet-fast-s814 \
        --max-test 4000 --plot docs/learned_correction.png

Every curve runs on the same test orbits, in float64, on the same quintic sensor spline:

- leapfrog, yoshida4, rk4 and the classical processed leapfrog (`evaluation/sensor_integrators.py`,
  cubic Hermite read-out) over a range of steps;
- the processed grid of the runs' config with `learned: false` (the prior alone: leapfrog with
  the same partial-step read-out) and with the textbook coefficients (`classical_alone()`), over
  the same range of steps;
- each trained run as one point at its own cost.

Prints one line per point (force evaluations, mean and median loss) and draws mean and median
against force evaluations per orbit (log-log). Needs the package installed (`pip install -e .`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import torch

from nh_data.errors import NHError
from nh_models.evaluation import sensor_integrators as si
from nh_models.evaluation.cases import TestSplit
from nh_models.evaluation.metrics import orbit_errors
from nh_models.models import get_model
from nh_models.training.checkpoint import load_run

STEPS = (48, 64, 96, 128, 160, 200, 256, 320)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset folder with a test split")
    ap.add_argument("--runs", required=True, help="comma-separated SympONet run folders (grid: processed)")
    ap.add_argument("--max-test", type=int, default=4000, help="test orbits (a seeded subset; 0: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset")
    ap.add_argument("--plot", default="", help="PNG to draw (empty: none)")
    return ap.parse_args(argv)


def _losses(q: torch.Tensor, p: torch.Tensor, data) -> tuple[float, float]:
    err = orbit_errors(q.numpy(), p.numpy(), data.q, data.p)["loss"]
    return float(np.mean(err)), float(np.median(err))


def curves(runs: list[str], data) -> dict[str, list[tuple[int, float, float]]]:
    """{label: [(force evaluations, mean loss, median loss), ...]} on the orbits of `data`."""
    V, t, ic = (torch.from_numpy(np.ascontiguousarray(a)) for a in (data.V, data.t, data.ic))
    W = t.shape[1]
    out: dict[str, list[tuple[int, float, float]]] = {}
    models = [load_run(r)[0].double().eval() for r in runs]
    base = models[0].config
    if base.grid != "processed":
        raise NHError(f"{runs[0]} is not a SympONet with grid: processed")
    with torch.inference_mode():
        for method in si.METHODS:
            out[method] = [(si.evaluations(method, n), *_losses(*si.integrate(V, t, ic, method, n), data)) for n in STEPS]
        for label, learned in (("prior alone", False), ("classical coefficients", True)):
            rows = []
            for n in STEPS:
                cfg = dataclasses.replace(base, steps=n, init="classical", local_layers=0, learned=learned)
                model = get_model("symponet", dataclasses.asdict(cfg)).double().eval()
                rows.append((model.force_evaluations_per_orbit(W), *_losses(*model(V, t, ic), data)))
            out[label] = rows
        for run, model in zip(runs, models, strict=True):
            out[f"trained: {run.rstrip('/').split('/')[-1]}"] = [
                (model.force_evaluations_per_orbit(W), *_losses(*model(V, t, ic), data))
            ]
    return out


def plot(result: dict[str, list[tuple[int, float, float]]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, col, name in ((axes[0], 1, "mean"), (axes[1], 2, "median")):
        for label, rows in result.items():
            x = [r[0] for r in rows]
            y = [r[col] for r in rows]
            if label.startswith("trained"):
                ax.plot(x, y, "*", ms=12, label=label)
            else:
                ax.plot(x, y, "o-" if "alone" in label or "classical" in label else ".--", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("force evaluations per orbit")
        ax.set_ylabel(f"{name} test loss")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    try:
        split = TestSplit(args.data, args.max_test or None, args.seed)
        data = split.take(np.arange(len(split.u)))
        result = curves([r for r in args.runs.split(",") if r], data)
    except NHError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(data.u)} test orbits of {args.data}; loss 0.5 (MSE_q + MSE_p), float64")
    print(f"{'curve':<44} {'evaluations':>11} {'mean':>10} {'median':>10}")
    for label, rows in result.items():
        for ev, mean, median in rows:
            print(f"{label:<44} {ev:>11d} {mean:>10.3e} {median:>10.3e}")
    if args.plot:
        plot(result, args.plot, f"{args.data}, {len(data.u)} test orbits: error against cost on the quintic sensor spline")
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
