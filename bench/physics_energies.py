"""A SympONet beside its prior alone on the physics potentials over many energies, chained to
t = 20 (issue 21's target 6, over a family of orbits instead of one).

    python bench/physics_energies.py zoo:symponet-fast --potentials atw,mff --energies 19

`nh eval` scores each physics potential on its one case orbit: at rest at q = 0 with E0 = V(0),
the top energy, so that it turns at both ends of [0, 1]. Chained over ten 2-second windows its
error is a phase, which can move several-fold with the step count (on atw it does). Here each
potential gets `--energies` orbits from its minimum q* (V's least sensor value) with
p0 = sqrt(2 (E - V(q*))), E spread evenly strictly between V(q*) and E0; each is chained like
`nh eval` does (`evaluation.structure.chain`, windows of 2, to `--t-long`) for the model and its
prior alone (`learned: false`), and compared with the potential's reference orbit
(`nh_data.physics.reference`, to 1e-10).

Printed per potential: the mean over the orbits of the error |(q, p) - reference| at t_long and
of its largest value along the chain, for each; the ratio of the model's mean to the prior
alone's; and the share of orbits whose end error is above twice the prior alone's, with its
standard error. Beside them, the same for the case orbit itself (`nh eval`'s). `--steps N` runs
the same weights with N kernel steps (`SympONet.variant`). With `--shifts`
the case orbit is also started at rest a little further inside the box (q0 + d for each d): how
far its one ratio moves with its start says whether that one orbit measures the model or the
phase at which its chain happens to end (on atw at 224 steps it moves from 0.2x to 5x between d =
1e-5 and 1e-3, docs/results.md). Runs in torch,
one thread, float64 or with `--dtype float32` in the arithmetic `nh eval` uses for a checkpoint
trained in float32: on atw's case orbit the two differ several-fold (docs/results.md). Needs the
package installed (`pip install -e .`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from nh_data.errors import NHError

WINDOW = 2.0
HARM = 2.0  # target 6: within 2x of the prior alone


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run folder of a SympONet, or zoo:NAME for a shipped entry")
    ap.add_argument("--potentials", default="all", help="physics potentials: all or name,name,...")
    ap.add_argument("--energies", type=int, default=19, help="orbits per potential")
    ap.add_argument("--t-long", type=float, default=20.0, help="chained to this time (windows of 2)")
    ap.add_argument("--physics-dir", default="parquet_data/physics", help="the physics cases (built if missing)")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="the model's arithmetic")
    ap.add_argument("--shifts", default="", help="also the case orbit started at q0 + d, for d in this comma list")
    ap.add_argument("--json", default="", help="write the figures to this JSON file")
    ap.add_argument(
        "--steps", type=int, default=0, help="the trained weights with this many kernel steps (they are per h^2)"
    )
    args = ap.parse_args(argv)
    args.shifts = parse_shifts(args.shifts)
    if args.energies < 1:
        raise NHError(f"--energies must be at least 1, got {args.energies}")
    if not args.t_long >= WINDOW:
        raise NHError(f"--t-long must be at least one window ({WINDOW:g}), got {args.t_long}")
    return args


def parse_shifts(text: str) -> list[float]:
    """The --shifts list: distances into the box, each in (0, 0.5)."""
    out = []
    for part in (x.strip() for x in text.split(",") if x.strip()):
        try:
            d = float(part)
        except ValueError:
            raise NHError(f"--shifts must be numbers separated by commas, got {part!r}") from None
        if not 0.0 < d < 0.5:
            raise NHError(f"--shifts must lie in (0, 0.5) (a distance into the box), got {part}")
        out.append(d)
    return out


def initial_conditions(V: np.ndarray, E0: float, n: int) -> np.ndarray:
    """(n, 2): from the least sensor value's position, momenta for n energies evenly inside
    (V min, E0)."""
    from nh_data.problem import SENSORS

    k = int(np.argmin(V))
    E = V[k] + (E0 - V[k]) * np.arange(1, n + 1) / (n + 1)
    return np.stack([np.full(n, SENSORS[k]), np.sqrt(2.0 * (E - V[k]))], axis=1)


def chained_errors(predict, case, ics: np.ndarray, t_long: float) -> tuple[np.ndarray, np.ndarray]:
    """Each orbit's error against the reference at t_long and its largest along the chain."""
    from nh_data.physics import reference
    from nh_models.evaluation.structure import chain

    n_windows = int(round(t_long / WINDOW))
    V = np.broadcast_to(case.V, (len(ics), case.V.shape[0]))
    t, q, p = chain(predict, V, ics, n_windows, WINDOW)
    ends, peaks = [], []
    for b, (q0, p0) in enumerate(ics):
        qr, pr = reference(case.name, t, float(q0), float(p0))
        err = np.hypot(q[b] - qr, p[b] - pr)
        ends.append(err[-1])
        peaks.append(err.max())
    return np.array(ends), np.array(peaks)


def compare(model_errs, prior_errs) -> dict:
    """The figures of one potential: means, the ratio of the means, orbits above 2x (with SE)."""
    (m_end, m_max), (p_end, p_max) = model_errs, prior_errs
    above = float(np.mean(m_end > HARM * p_end))
    return {
        "model_end": float(m_end.mean()), "prior_end": float(p_end.mean()),
        "model_max": float(m_max.mean()), "prior_max": float(p_max.mean()),
        "ratio_end": float(m_end.mean() / p_end.mean()), "ratio_max": float(m_max.mean() / p_max.mean()),
        "above_2x": above, "above_2x_se": math.sqrt(above * (1.0 - above) / len(m_end)), "orbits": len(m_end),
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    import torch

    from nh_data.problem import SENSORS
    from nh_models.evaluation.cases import load_physics_cases, physics_names
    from nh_models.evaluation.predictors import model_predictor
    from nh_models.inference.predict import load_predictor_run
    from nh_models.zoo import source as run_source

    source = run_source(args.run)
    model, _, _ = load_predictor_run(source)
    if getattr(model, "name", None) != "symponet":
        raise NHError(f"{args.run} is not a SympONet (it has no prior alone)")
    model = model.to(getattr(torch, args.dtype)).cpu().eval().variant(steps=args.steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cases = load_physics_cases(args.physics_dir, physics_names(args.potentials), progress=False)
        rows = {}
        for case in cases:
            E0 = float(np.interp(case.q_ref[0], SENSORS, case.V)) + 0.5 * float(case.p_ref[0]) ** 2
            ics = initial_conditions(case.V, E0, args.energies)
            parts = (model, model.prior_alone())
            rows[case.name] = compare(*[chained_errors(model_predictor(m), case, ics, args.t_long) for m in parts])
            one = np.array([[case.q_ref[0], case.p_ref[0]]])  # `nh eval`'s case orbit
            case_errs = [chained_errors(model_predictor(m), case, one, args.t_long) for m in parts]
            rows[case.name] |= {f"case_{k}": v for k, v in compare(*case_errs).items() if k != "orbits"}
            if args.shifts:
                moved = np.array([[case.q_ref[0] + d, case.p_ref[0]] for d in args.shifts])
                (m_end, _), (p_end, _) = [chained_errors(model_predictor(m), case, moved, args.t_long) for m in parts]
                rows[case.name]["shifted"] = [
                    {"shift": d, "model_end": float(a), "prior_end": float(b), "ratio_end": float(a / b)}
                    for d, a, b in zip(args.shifts, m_end, p_end, strict=True)
                ]
    finally:
        torch.set_num_threads(threads)
    return {"run": args.run, "steps": int(model.config.steps), "energies": args.energies, "t_long": args.t_long,
            "dtype": args.dtype, "shifts": args.shifts, "rows": rows}  # fmt: skip


def report(res: dict) -> str:
    lines = [
        f"{res['run']} ({res['steps']} steps, {res['dtype']}): {res['energies']} orbits per potential, "
        f"chained to t = {res['t_long']:g}; error |(q, p) - reference|, mean over the orbits; then "
        "the case orbit of `nh eval` (model / prior alone at the end and at the largest)",
        "",
        f"{'potential':<10} {'model end':>10} {'prior end':>10} {'ratio':>7} {'model max':>10} "
        f"{'prior max':>10} {'ratio':>7}  orbits above 2x   case: end, largest",
    ]
    for name, r in res["rows"].items():
        lines.append(
            f"{name:<10} {r['model_end']:>10.3g} {r['prior_end']:>10.3g} {r['ratio_end']:>7.2f} "
            f"{r['model_max']:>10.3g} {r['prior_max']:>10.3g} {r['ratio_max']:>7.2f}  "
            f"{r['above_2x']:.2f} ({r['above_2x_se']:.2f})        "
            f"{r['case_model_end']:.3g} / {r['case_prior_end']:.3g}, {r['case_model_max']:.3g} / {r['case_prior_max']:.3g}"
        )
    if res["shifts"]:
        lines += ["", "the case orbit started at rest at q0 + d, end of the chain: model / prior alone (ratio)",
                  f"{'potential':<10} " + " ".join(f"{'d = ' + format(d, 'g'):>24}" for d in res["shifts"])]  # fmt: skip
        for name, r in res["rows"].items():
            cells = (f"{x['model_end']:.3g} / {x['prior_end']:.3g} ({x['ratio_end']:.2f})" for x in r["shifted"])
            lines.append(f"{name:<10} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        res = run(args)
    except NHError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print(report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
