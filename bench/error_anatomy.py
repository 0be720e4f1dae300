"""Where a processed SympONet's test error comes from (issue 21): the read-out between grid
points against the kernel at them, the learned weights against the textbook ones, and the few
orbits that carry the mean.

    python bench/error_anatomy.py zoo:symponet-fast --data parquet_data/normal --n 0 \
        --plot docs/error_anatomy.png --json runs/error_anatomy.json

Every row runs compiled (Numba, float64) on the same test orbits and the same quintic sensor
spline; the reference is RK4 with `--ref-steps` steps on that spline (its distance to the data,
printed first, is the interpolant's floor). Sections:

1. Grid points against the read-out: each structure (the trained weights and the textbook ones,
   `classical_alone()`; the run's read-out and, for the leapfrog kernel, the other one of `step`
   and `scaled`) at the grid times t = k h (the read-out is chi of a stored state) and half a
   step later (t = (k + 1/2) h, the read-out's partial step at its longest), against the
   reference; and at the data's query times, against the data. Mean and median loss per orbit.
2. The mean's carriers, against the reference at the data's times: the share of the mean loss
   carried by the worst 1 % of orbits, and the mean over the model's worst 1 % at the run's
   steps, twice and four times as many (the trained weights, the textbook ones and RK4 from
   `--rk4-steps`, by default 123: its equal-time count beside the 160-step recipe,
   `bench/compiled_cost.py`): how fast the hard orbits converge.
3. Each structure's median squared error against the phase tau / h of the query time within
   its step (the data's query times, against the reference). The plot draws it beside the share
   of the mean loss (against the data) carried by the worst orbits, the model's and RK4's.
4. Who the model's worst 1 % are, beside the other orbits: the share coming within 0.02 of a
   wall, the share in the top energy stratum (u >= 0.95), the median largest |p|.

Loss is 0.5 (MSE_q + MSE_p) per orbit, as everywhere. Needs the package installed
(`pip install -e .`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from nh_data.errors import NHError

PHASE_BINS = 10
READOUTS = ("step", "scaled", "corrected")  # the compiled read-outs of a leapfrog kernel
WALL_GAP = 0.02  # section 4: an orbit "near a wall" comes within this of q = 0 or 1
SHARE, WORST = "worst 1 % share", "mean over the model's worst 1 %"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run folder of a SympONet with grid: processed, or zoo:NAME")
    ap.add_argument("--data", default="", help="dataset folder with a test split [default: the run's]")
    ap.add_argument("--n", type=int, default=4000, help="test orbits (a seeded subset; 0: the whole split)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset")
    ap.add_argument("--ref-steps", type=int, default=3200, help="RK4 steps of the reference")
    ap.add_argument("--rk4-steps", type=int, default=123, help="RK4's steps beside the model's (section 2)")
    ap.add_argument("--plot", default="", help="PNG to draw (empty: none)")
    ap.add_argument("--json", default="", help="write the figures to this JSON file")
    return ap.parse_args(argv)


def losses(q, p, Q, P) -> np.ndarray:
    """0.5 (MSE_q + MSE_p) of each orbit (row)."""
    return 0.5 * (((q - Q) ** 2).mean(1) + ((p - P) ** 2).mean(1))


def stats(x: np.ndarray) -> dict:
    return {"mean": float(np.mean(x)), "median": float(np.median(x))}


def top_share(x: np.ndarray, fraction: float = 0.01) -> float:
    """The share of sum(x) carried by its largest `fraction` of entries (at least one)."""
    k = max(1, int(len(x) * fraction))
    return float(np.sort(x)[::-1][:k].sum() / x.sum())


def structures(model) -> dict:
    """{label: model}: the trained and the textbook weights, each with the run's read-out and
    (leapfrog kernel) the others of step, scaled and corrected where they compile (`tables: own`
    has no compiled scaled read-out); a variant to `corrected` from another read-out carries the
    textbook read-out generator (`SympONet.variant`)."""
    from nh_models.compiled import why_not

    c = model.config
    out = {"trained": model}
    classical = model.classical_alone()
    if classical is not None:
        out["textbook"] = classical.eval()
    others = [r for r in READOUTS if r != c.readout] if c.prior == "leapfrog" else []
    for label in list(out):
        for other in others:
            variant = out[label].variant(readout=other)  # to `corrected`: the textbook generator
            if why_not(variant) is None:
                out[f"{label}, {other} read-out"] = variant
    return out


def grid_rows(parts: dict, at_data: dict, data, ref, steps: int) -> dict:
    """Section 1: each structure at the grid times, half a step later, and at the data's times
    (`at_data`: each structure's (q, p) there)."""
    from nh_models.compiled import export, forward

    h = 2.0 / steps
    B = len(data.V)
    k = np.arange(1, steps, 2)  # every other grid time; (k + 1/2) h stays inside [0, 2]
    rows = {}
    at = {"grid": np.tile(k * h, (B, 1)), "half step": np.tile((k + 0.5) * h, (B, 1))}
    refs = {name: ref(t) for name, t in at.items()}
    for label, m in parts.items():
        prm = export(m)
        row = {}
        for name, t in at.items():
            row[name] = stats(losses(*forward(prm, data.V, t, data.ic, parallel=True), *refs[name]))
        row["data times"] = stats(losses(*at_data[label], data.q, data.p))
        rows[label] = row
    return rows


def carriers(parts: dict, first: dict, data, ref_data, steps: int, rk4_steps: int) -> dict:
    """Section 2 (against the reference at the data's times, so that the interpolant's floor does
    not hide the convergence): the worst 1 %'s share of the mean, and the model's worst 1 % at
    1x, 2x, 4x the steps. `first`: (q, p) at the data's times at 1x, for trained, textbook, rk4."""
    from nh_models.compiled import export, forward
    from nh_models.compiled.integrators import integrate

    def run(kind, label, n):
        if kind == "rk4":
            q, p = integrate(data.V, data.t, data.ic, "rk4", n, parallel=True)
        else:
            q, p = forward(export(parts[label].variant(steps=n)), data.V, data.t, data.ic, parallel=True)
        return losses(q, p, *ref_data)

    base = losses(*first["trained"], *ref_data)
    worst = np.argsort(base)[::-1][: max(1, len(base) // 100)]
    out = {}
    for label, kind, n0 in (
        ("trained", "model", steps),
        ("textbook", "model", steps),
        ("rk4", "rk4", rk4_steps),
    ):
        if kind == "model" and label not in parts:
            continue
        rows = []
        for f in (1, 2, 4):
            x = losses(*first[label], *ref_data) if f == 1 else run(kind, label, f * n0)
            rows.append({"steps": f * n0, **stats(x), SHARE: top_share(x), WORST: float(x[worst].mean())})
        out[label] = rows
    return out


def who(base: np.ndarray, ref_data, u: np.ndarray) -> dict:
    """Section 4: the model's worst 1 % of orbits (by `base`, its loss per orbit) beside the rest:
    the share whose reference orbit comes within WALL_GAP of a wall (at the data's times), the
    share in the top energy stratum (u >= 0.95: turning close to the wall's top), the median
    largest |p|."""
    q, p = ref_data
    worst = np.zeros(len(base), dtype=bool)
    worst[np.argsort(base)[::-1][: max(1, len(base) // 100)]] = True
    near = (q.min(axis=1) < WALL_GAP) | (q.max(axis=1) > 1.0 - WALL_GAP)
    top = np.nan_to_num(u, nan=1.0) >= 0.95
    pmax = np.abs(p).max(axis=1)
    return {
        name: {"orbits": int(m.sum()), "near a wall": float(near[m].mean()), "u >= 0.95": float(top[m].mean()),
               "median max |p|": float(np.median(pmax[m]))}
        for name, m in (("worst 1 %", worst), ("the rest", ~worst)) if m.any()
    }  # fmt: skip


def phase_curve(qp, data, ref_at_data, steps: int) -> list[float]:
    """Median squared error (q and p averaged) of each query point (q, p at the data's times)
    against the reference, binned by the phase tau / h of its time within the step."""
    q, p = qp
    e = 0.5 * ((q - ref_at_data[0]) ** 2 + (p - ref_at_data[1]) ** 2)
    x = data.t * steps / 2.0
    phase = np.minimum(((x - np.floor(x)) * PHASE_BINS).astype(int), PHASE_BINS - 1)
    return [float(np.median(e[phase == b])) if np.any(phase == b) else math.nan for b in range(PHASE_BINS)]


def analyse(args: argparse.Namespace) -> dict:
    import numba

    from nh_models.compiled import export, forward
    from nh_models.compiled.integrators import integrate
    from nh_models.evaluation.cases import load_test
    from nh_models.inference.predict import load_predictor_run
    from nh_models.zoo import source as run_source

    source = run_source(args.run)
    model, _, meta = load_predictor_run(source)
    model = model.double().cpu().eval()
    export(model)  # NHError if it does not compile
    data_dir = args.data or meta.get("data_dir") or ""
    if not data_dir:
        raise NHError(f"{args.run} names no dataset: pass --data")
    if args.ref_steps < 1 or args.rk4_steps < 1:
        raise NHError("--ref-steps and --rk4-steps must be at least 1")
    data = load_test(data_dir, args.n or None, args.seed)
    steps = int(model.config.steps)

    def ref(t):
        return integrate(data.V, t, data.ic, "rk4", args.ref_steps, parallel=True)

    ref_data = ref(data.t)
    parts = structures(model)
    at_data = {label: forward(export(m), data.V, data.t, data.ic, parallel=True) for label, m in parts.items()}
    rk4 = integrate(data.V, data.t, data.ic, "rk4", args.rk4_steps, parallel=True)
    res = {
        "run": args.run,
        "data": str(data_dir),
        "n_orbits": int(len(data.V)),
        "steps": steps,
        "readout": model.config.readout,
        "ref_steps": args.ref_steps,
        "threads": numba.get_num_threads(),
        "floor": stats(losses(*ref_data, data.q, data.p)),
        "grid": grid_rows(parts, at_data, data, ref, steps),
        "carriers": carriers(parts, {**at_data, "rk4": rk4}, data, ref_data, steps, args.rk4_steps),
        "phase": {label: phase_curve(qp, data, ref_data, steps) for label, qp in at_data.items()},
        "who": who(losses(*at_data["trained"], *ref_data), ref_data, data.u),
        "tails": {"trained": losses(*at_data["trained"], data.q, data.p).tolist(),
                  f"rk4, {args.rk4_steps} steps": losses(*rk4, data.q, data.p).tolist()},  # fmt: skip
    }
    return res


def report(res: dict) -> str:
    f = res["floor"]
    lines = [
        f"{res['run']}: {res['n_orbits']} test orbits of {res['data']}; {res['steps']} kernel steps, "
        f"readout {res['readout']}; reference RK4 with {res['ref_steps']} steps on the same spline",
        f"the reference against the data (the interpolant's floor): mean {f['mean']:.2e}, median {f['median']:.2e}",
        "",
        "1. loss per orbit, mean / median: at grid times and half a step later (against the reference),",
        "   at the data's query times (against the data)",
        f"{'structure':<34} {'grid times':>21} {'half a step later':>21} {'data times':>21}",
    ]
    for label, row in res["grid"].items():
        cells = " ".join(
            f"{row[k]['mean']:>10.2e} {row[k]['median']:>10.2e}" for k in ("grid", "half step", "data times")
        )
        lines.append(f"{label:<34} {cells}")
    lines += ["", "2. against the reference at the data's times: the worst 1 % of orbits' share of the mean loss,",
              "   and the mean over the model's worst 1 % (chosen at its own steps), at 1x, 2x, 4x the steps",
              f"{'row':<12} {'steps':>6} {'mean':>10} {'median':>10} {'worst 1 % share':>16} {'model worst 1 %':>16}"]  # fmt: skip
    for label, rows in res["carriers"].items():
        for r in rows:
            lines.append(f"{label:<12} {r['steps']:>6d} {r['mean']:>10.2e} {r['median']:>10.2e} "
                         f"{r[SHARE]:>16.2f} {r[WORST]:>16.2e}")  # fmt: skip
    lines += [
        "",
        "3. median squared error of a query point against the reference, by its phase tau / h in the step",
    ]
    for label, curve in res["phase"].items():
        lines.append(f"{label:<34} " + " ".join(f"{v:.1e}" for v in curve))
    lines += ["", f"4. who the model's worst 1 % are: orbits coming within {WALL_GAP} of a wall, in the top energy "
              "stratum, their largest |p|",
              f"{'':<12} {'orbits':>7} {'near a wall':>12} {'u >= 0.95':>10} {'median max |p|':>15}"]  # fmt: skip
    for name, r in res["who"].items():
        lines.append(f"{name:<12} {r['orbits']:>7d} {r['near a wall']:>12.2f} {r['u >= 0.95']:>10.2f} "
                     f"{r['median max |p|']:>15.2f}")  # fmt: skip
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    centres = (np.arange(PHASE_BINS) + 0.5) / PHASE_BINS
    for label, curve in res["phase"].items():
        ax1.semilogy(centres, curve, "o-", label=label)
    ax1.set_xlabel("phase tau / h of the query time within its step")
    ax1.set_ylabel("median squared error against the reference")
    ax1.set_title("the read-out between grid points")
    ax1.legend(fontsize=8)
    for label, x in res["tails"].items():
        x = np.sort(np.asarray(x))[::-1]
        share = np.cumsum(x) / x.sum()
        frac = np.arange(1, len(x) + 1) / len(x)
        ax2.semilogx(frac, share, label=f"{label} (mean {x.mean():.1e})")
    ax2.set_xlabel("share of orbits, worst first")
    ax2.set_ylabel("share of the mean loss")
    ax2.set_title("who carries the mean")
    ax2.legend()
    fig.suptitle(f"{res['run']}: {res['n_orbits']} test orbits, {res['steps']} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        res = analyse(args)
    except NHError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(report(res))
    if args.plot:
        plot(res, args.plot)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({k: v for k, v in res.items() if k != "tails"}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
