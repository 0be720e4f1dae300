"""A trained processed SympONet beside the integrators on its own interpolant, all compiled
(Numba, float64, one thread): the same-language equal-cost comparison of issue 21.

    python bench/compiled_cost.py runs/accuracy/normal-symponet-fast-local/symponet-fast-s928 --n 4000
    python bench/compiled_cost.py RUN --readout scaled --steps 120   # the same weights, another read-out

The model runs as `nh_models.compiled` (its exported linear dictionary, `grid: processed`,
`readout: step`, `scaled` or `corrected`); the baselines as `nh_models.compiled.integrators` (leapfrog, Yoshida-4, RK4,
the classical processed leapfrog; cubic Hermite read-out), every method on the same quintic
sensor spline and the same test orbits. Rows, each best of `--repeats` timed calls over all the
orbits, us/orbit on one core:

- the model, its prior alone (`learned: false`) and, with the leapfrog prior, the classical
  coefficients (`SympONet.fixed_parts()`);
- each baseline at the most steps within the model's force evaluations per orbit;
- RK4 at dt = 0.02 (100 steps; the paper's comparison point) and RK4 at the most steps whose
  compiled time is at most the model's (bisection over step counts on measured times), and the
  classical processed leapfrog likewise.

Loss is 0.5 (MSE_q + MSE_p) per orbit, against the data's orbits, or with `--reference
interpolant` against RK4 with `cost_table.REFERENCE_STEPS` steps on the same interpolant: each method's own
error, without the floor that the spline of 100 sensors sets for every method (printed); mean and median over the orbits, the share of orbits
on which the model is more accurate than the row (standard error sqrt(w (1 - w) / n)), and the
ratio of the model's mean loss to the row's with the 95 % interval of a paired bootstrap over
the orbits (`evaluation.metrics.paired_comparison`). Then the
model's time by phase (`compiled.processed`'s `stop`): per-orbit setup (spline solves, features,
tables), stepping (chi^-1 and the kernel's steps, states stored), read-out (the rest: a partial
step and chi per query time, fused into the stepping, so only what the chain's idle cycles do not
hide). Every method's read-out is fused into its stepping (`compiled.stepping.schedule`). With
`--lanes K` every row steps K orbits side by side on the thread (`nh_models.compiled.lanes`: the
same results, the time of a batch's throughput instead of one orbit's latency) and reads out
after the chains. Before
timing, the compiled model is checked against the torch model (float64) on the
first orbits. Time on an idle machine: `--clock thread` counts only this thread's CPU time (for
a busy machine; still disturbed by a busy sibling core). Needs the package installed
(`pip install -e .`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

import numpy as np

from nh_data.errors import NHError

RK4_DT = 0.02


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "run",
        help="run folder of a SympONet with grid: processed (its best checkpoint), or zoo:NAME for a shipped entry",
    )
    ap.add_argument("--data", default="", help="dataset folder with the split [default: the run's]")
    ap.add_argument("--n", type=int, default=2000, help="test orbits (a seeded subset; 0: the whole split)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset")
    ap.add_argument("--split", default="test", choices=("test", "val"), help="the split to run on (val: to choose a recipe)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per row (the best counts)")
    ap.add_argument(
        "--clock", choices=("wall", "thread"), default="wall", help="wall time or this thread's CPU time"
    )
    ap.add_argument("--check", type=int, default=200, help="orbits on which compiled and torch are compared")
    ap.add_argument("--torch", action="store_true", help="also time the torch model (float64, one thread)")
    ap.add_argument("--json", default="", help="write the rows to this JSON file")
    ap.add_argument(
        "--readout", default="", help="the trained weights with this read-out instead (step, scaled or corrected)"
    )
    ap.add_argument(
        "--steps", type=int, default=0, help="the trained weights with this many kernel steps (they are per h^2)"
    )
    ap.add_argument(
        "--reference",
        choices=("data", "interpolant"),
        default="data",
        help="what every row is scored against: the data's orbits, or RK4 with many steps on the same "
        "interpolant (`cost_table.REFERENCE_STEPS`) (each method's own error, without the interpolation floor, which is printed)",
    )
    ap.add_argument(
        "--lanes",
        type=int,
        default=1,
        help="orbits stepped side by side on the thread, every row (1: one at a time, the read-out fused; "
        "16: the throughput of a batch, `nh_models.compiled.lanes`)",
    )
    return ap.parse_args(argv)


class Timer:
    def __init__(self, clock: str, repeats: int) -> None:
        self.now = time.thread_time if clock == "thread" else time.perf_counter
        self.repeats = repeats

    def best(self, fn):
        """(fn's result, its best time in seconds over the repeats)."""
        best, out = math.inf, None
        for _ in range(self.repeats):
            t0 = self.now()
            out = fn()
            best = min(best, self.now() - t0)
        return out, best


def losses(q, p, data) -> np.ndarray:
    from nh_models.evaluation.metrics import orbit_errors

    return orbit_errors(q, p, data.q, data.p)["loss"]


def at_time(method: str, data, target_us: float, timer: Timer, mine: np.ndarray, lanes: int = 1) -> dict:
    """`method` at the most steps whose compiled time per orbit is at most `target_us`: bisection
    on the step count between a count measured at most the target and one measured above it."""
    from nh_models.compiled.integrators import integrate
    from nh_models.evaluation.cost_table import cost_row
    from nh_models.evaluation.sensor_integrators import evaluations

    B = len(data.V)
    measured: dict[int, float] = {}

    def us(n: int) -> float:
        if n not in measured:
            measured[n] = 1e6 * timer.best(lambda: integrate(data.V, data.t, data.ic, method, n, lanes=lanes))[1] / B
        return measured[n]

    lo, hi = 1, 100
    while us(hi) <= target_us and hi < 100_000:  # an upper end above the target
        lo, hi = hi, 2 * hi
    if us(lo) > target_us:  # even one step is dearer: RK4 at one step
        hi = lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if us(mid) <= target_us else (lo, mid)
    (q, p), sec = timer.best(lambda: integrate(data.V, data.t, data.ic, method, lo, lanes=lanes))
    return cost_row(losses(q, p, data), evaluations(method, lo), lo, sec, mine)


def agreement(model, params, data, n: int) -> tuple[float, float]:
    """Largest |compiled - torch| / max |torch| of q and of p on the first n orbits (float64)."""
    import torch

    from nh_models.compiled import forward

    sl = slice(0, min(n, len(data.V)))
    V, t, ic = data.V[sl], data.t[sl], data.ic[sl]
    q, p = forward(params, V, t, ic)
    with torch.inference_mode():
        qt, pt = model(*(torch.from_numpy(np.ascontiguousarray(x)) for x in (V, t, ic)))
    qt, pt = qt.numpy(), pt.numpy()
    return float(np.abs(q - qt).max() / np.abs(qt).max()), float(np.abs(p - pt).max() / np.abs(pt).max())


def run(args: argparse.Namespace) -> dict:
    """The rows, one thread (Numba's and torch's thread counts restored at the end)."""
    import numba
    import torch

    threads = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        return _rows(args)
    finally:
        numba.set_num_threads(threads[0])
        torch.set_num_threads(threads[1])


def _rows(args: argparse.Namespace) -> dict:
    import torch

    from nh_models.compiled import export, forward
    from nh_models.compiled.integrators import integrate
    from nh_models.compiled.processed import SETUP, STEPPING
    from nh_models.evaluation.cases import load_test
    from nh_models.evaluation.cost_table import cost_row, interpolant_reference, interpolation_floor
    from nh_models.evaluation.sensor_integrators import METHODS, evaluations, steps_for
    from nh_models.inference.predict import load_predictor_run
    from nh_models.zoo import source as run_source

    source = run_source(args.run)
    model, _, meta = load_predictor_run(source)
    model = model.double().cpu().eval().variant(args.readout, args.steps)
    params = export(model)  # NHError if it does not compile
    data_dir = args.data or meta.get("data_dir") or ""
    if not data_dir:
        raise NHError(f"{args.run} names no dataset: pass --data")
    data = load_test(data_dir, args.n or None, args.seed, args.split)
    floor = None
    if args.reference == "interpolant":  # the fine orbits on the interpolant replace the data's
        ref = interpolant_reference(data)
        floor = interpolation_floor(data, ref)
        data = dataclasses.replace(data, q=ref[0], p=ref[1])
    B, W = data.t.shape
    timer = Timer(args.clock, args.repeats)
    V, t, ic = data.V, data.t, data.ic
    L = args.lanes

    parts = [("model", model, params)] + [(label, m, export(m)) for label, m in model.fixed_parts()]
    for _, _, prm in parts:  # compile outside the timings
        forward(prm, V[:2], t[:2], ic[:2], lanes=L)
    for method in METHODS:
        integrate(V[:2], t[:2], ic[:2], method, 4, lanes=L)
    dq, dp = agreement(model, params, data, args.check)

    budget = model.force_evaluations_per_orbit(W)
    rows: dict[str, dict] = {}
    mine = None
    for label, m, prm in parts:
        (q, p), sec = timer.best(lambda prm=prm: forward(prm, V, t, ic, lanes=L))
        errs = losses(q, p, data)
        rows[label] = cost_row(errs, m.force_evaluations_per_orbit(W), m.config.steps, sec, mine)
        mine = errs if mine is None else mine
    if args.torch:
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(x)) for x in (V, t, ic)]
            _, sec = timer.best(lambda: model(*tensors))
        rows["model (torch, float64)"] = dict(rows["model"], us_per_orbit=1e6 * sec / B)
    for method in METHODS:
        n = steps_for(method, budget)
        (q, p), sec = timer.best(lambda n=n, method=method: integrate(V, t, ic, method, n, lanes=L))
        rows[f"{method} (equal evaluations)"] = cost_row(losses(q, p, data), evaluations(method, n), n, sec, mine)
    n = round(2.0 / RK4_DT)
    (q, p), sec = timer.best(lambda: integrate(V, t, ic, "rk4", n, lanes=L))
    rows[f"rk4 dt={RK4_DT}"] = cost_row(losses(q, p, data), evaluations("rk4", n), n, sec, mine)
    for method in ("rk4", "processed"):
        rows[f"{method} (equal time)"] = at_time(method, data, rows["model"]["us_per_orbit"], timer, mine, L)

    phases = {}
    for label, _, prm in parts[:2]:  # the model and its prior alone
        cum = [
            1e6 * timer.best(lambda s=s, prm=prm: forward(prm, V, t, ic, stop=s, lanes=L))[1] / B
            for s in (SETUP, STEPPING)
        ]
        total = rows[label]["us_per_orbit"]
        phases[label] = {
            "setup": cum[0],
            "stepping": cum[1] - cum[0],
            "readout": total - cum[1],
            "total": total,
        }
    return {
        "run": args.run,
        "steps": int(model.config.steps),
        "readout": model.config.readout,
        "data": str(data_dir),
        "split": args.split,
        "reference": args.reference,
        "interpolation_floor": floor,
        "n_orbits": int(B),
        "n_times": int(W),
        "evaluations_per_orbit": int(budget),
        "clock": args.clock,
        "repeats": args.repeats,
        "threads": 1,
        "lanes": L,
        "agreement": {"orbits": min(args.check, B), "q": dq, "p": dp},
        "rows": rows,
        "phases_us": phases,
    }


def report(res: dict) -> str:
    from nh_models.evaluation.cost_table import REFERENCE_STEPS
    from nh_models.evaluation.report import mean_ratio

    lines = [
        f"{res['run']}: {res['n_orbits']} {res.get('split', 'test')} orbits of {res['data']}, {res['n_times']} query times each; "
        f"compiled (Numba, float64), one thread, {_lanes(res.get('lanes', 1))}, best of {res['repeats']} ({res['clock']} clock)",
        f"compiled == torch on {res['agreement']['orbits']} orbits: max rel. diff q {res['agreement']['q']:.1e}, "
        f"p {res['agreement']['p']:.1e}",
        f"the model's force evaluations per orbit: {res['evaluations_per_orbit']}",
    ]
    if res.get("reference") == "interpolant":
        lines.append(
            f"losses against RK4 with {REFERENCE_STEPS} steps on the same interpolant (each method's own error); "
            f"that reference's mean loss against the data, the interpolation floor: {res['interpolation_floor']:.3e}"
        )
    lines += [
        "",
        f"{'row':<30} {'steps':>6} {'evals':>6} {'us/orbit':>9} {'mean loss':>10} {'median':>10} {'model wins':>14}"
        f" {'model/row mean [95 %]':>22}",
    ]
    for label, r in res["rows"].items():
        wins = f"{r['model_wins']:.3f} ({r['model_wins_se']:.3f})" if "model_wins" in r else ""
        ratio = mean_ratio(r) if "mean_ratio" in r else ""
        lines.append(
            f"{label:<30} {r['steps']:>6d} {r['evaluations']:>6d} {r['us_per_orbit']:>9.2f} "
            f"{r['loss']:>10.3e} {r['median']:>10.3e} {wins:>14} {ratio:>22}"
        )
    lines += [
        "",
        "time by phase, us/orbit (setup: spline solves, features, tables; stepping: chi^-1 and the kernel;",
    ]
    lines.append(
        "read-out: the rest, a partial step and chi per query time "
        + ("fused into the stepping)" if res.get("lanes", 1) == 1 else "in a pass after the chains)")
    )
    for label, ph in res["phases_us"].items():
        share = ", ".join(
            f"{k} {ph[k]:.2f} ({100 * ph[k] / ph['total']:.0f}%)" for k in ("setup", "stepping", "readout")
        )
        lines.append(f"  {label:<22} {share}; total {ph['total']:.2f}")
    return "\n".join(lines)


def _lanes(n: int) -> str:
    return "one orbit at a time" if n == 1 else f"{n} orbits side by side"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        res = run(args)
    except NHError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(report(res))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
