"""How much of the processed leapfrog's error at the grid points can more local generators remove?
(issue 21: the directions the recipe's dictionary lacks.)

    python bench/extra_generators.py --data parquet_data/normal --steps 160

The structure of `configs/symponet_fast.yaml` with the textbook correction (Takahashi-Imada:
leapfrog on V - (h^2/24) V'^2, processor displacement A' = -(h^2/12) V'), read only at the grid
points t = k h (chi of each stored state: no read-out between them), against RK4 with
`--ref-steps` steps on the same quintic sensor spline. Then the same with more terms, their
coefficients fitted (L-BFGS on the mean log loss, float64; `--objective mean`: on the mean loss,
which a few hard orbits set) on `--fit-orbits` orbits of the validation split and scored on
`--test-orbits` of the test split:

- `textbook, A' pointwise`: the textbook, with A' read from V's own quintic table (times
  -h^2/12) instead of the local cubic through its sensor values: what that re-interpolation
  costs;
- `dictionary`: every feature of the recipe's dictionary in dV and in a (`models.correction`);
- `+ V'V'' in a`: the generator p V' V'', one of the two local brackets of order h^4;
- `+ C P^3`: a processor with a cubic momentum term, the other one (p^3 V'''): the type-2
  generating function S(q, P) = q P + A'(q) P + C(q) P^3, so p = P (1 + A''(q)) + C'(q) P^3 and
  Q = q + A'(q) + 3 C(q) P^2 (exactly symplectic; P by Newton's iteration), C = h^4 sum of
  features (V''', V' V'').

Each added coefficient multiplies its feature divided by the feature's typical size, times h^2
(dV, a) or h^4 (C). A, C are read through local C1 cubics (`sensor_spline.local_table`), V + dV
through the quintic spline. Loss per orbit 0.5 (MSE_q + MSE_p) over the grid points; mean and
median over the test orbits, the share of the mean carried by the worst 1 % of them, and the
mean over the fit orbits (what the fit lowered). Needs the package installed (`pip install -e .`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from nh_data.errors import NHError

CUBIC = {"V' V''": 600.0}  # the typical size of the feature the recipe's dictionary lacks
KEYS = ("dV", "a", "c")  # the rows' fitted terms
NEWTON = 6  # iterations of chi^-1 (in q) and chi (in P)
ROWS = {
    "textbook": {},
    "textbook, A' pointwise": {"pointwise": True},
    "dictionary": {
        "dV": ["V'^2", "V'^2 V''", "V''^2", "V' V'''", "V'^4"],
        "a": ["V'", "V'''", "V'^2 V''", "V''^2", "V' V'''"],
    },
    "+ V'V'' in a": {
        "dV": ["V'^2", "V'^2 V''", "V''^2", "V' V'''", "V'^4"],
        "a": ["V'", "V'''", "V'^2 V''", "V''^2", "V' V'''", "V' V''"],
    },
    "+ V'V'' in a, + C P^3": {
        "dV": ["V'^2", "V'^2 V''", "V''^2", "V' V'''", "V'^4"],
        "a": ["V'", "V'''", "V'^2 V''", "V''^2", "V' V'''", "V' V''"],
        "c": ["V'''", "V' V''"],
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="parquet_data/normal", help="dataset folder with val and test splits")
    ap.add_argument("--steps", type=int, default=160, help="kernel steps over the 2-second window")
    ap.add_argument(
        "--fit-orbits", type=int, default=1000, help="validation orbits the coefficients are fitted on"
    )
    ap.add_argument("--test-orbits", type=int, default=4000, help="test orbits scored (0: the whole split)")
    ap.add_argument("--ref-steps", type=int, default=3200, help="RK4 steps of the reference")
    ap.add_argument(
        "--objective", choices=("log", "mean"), default="log",
        help="what the added coefficients minimise on the fit orbits: the mean log loss or the mean loss",
    )  # fmt: skip
    ap.add_argument("--json", default="", help="write the rows to this JSON file")
    return ap.parse_args(argv)


def features(V: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({name: (B, 100)}, V'): the recipe's dictionary at the sensors (`correction.features`, each
    divided by its typical size) and V' V'' likewise; V' itself for the textbook terms."""
    from nh_models.models import sensor_spline as ss
    from nh_models.models.correction import FEATURES
    from nh_models.models.correction import features as dictionary

    f = dict(zip(FEATURES, dictionary(V).unbind(1), strict=True))
    v1, v2 = ss.nodal_derivatives(V).unbind(1)[:2]
    f["V' V''"] = v1 * v2 / CUBIC["V' V''"]
    return f, v1


def tables(V: torch.Tensor, h: float, spec: dict, theta: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(kernel table of V + dV (B, 99, 5), processor tables A', A'', C, C' (B, 99, 4, 5))."""
    from nh_models.models import sensor_spline as ss

    f, v1 = features(V)

    def extra(key: str, order: int) -> torch.Tensor:
        out = torch.zeros_like(V)
        for name, th in zip(spec.get(key, []), theta.get(key, []), strict=True):
            out = out + th * f[name]
        return h**order * out

    dV = -(h**2 / 24) * v1**2 + extra("dV", 2)
    if spec.get("pointwise"):  # A' = -(h^2/12) V' read from V's own spline table: no re-interpolation
        A1 = -(h**2 / 12) * ss.force_table(V) + ss.local_table(extra("a", 2))
    else:
        A1 = ss.local_table(-(h**2 / 12) * v1 + extra("a", 2))
    C0 = ss.local_table(extra("c", 4))
    proc = torch.stack([A1, ss.derivative_table(A1), C0, ss.derivative_table(C0)], dim=2)
    return ss.force_table(V + dV), proc


def chi(q, p, proc):
    """(Q, P) = chi(q, p): P solves p = P (1 + A''(q)) + C'(q) P^3, Q = q + A'(q) + 3 C(q) P^2."""
    from nh_models.models import sensor_spline as ss

    a1, a2, c0, c1 = ss.lookup(proc, q).unbind(-1)
    P = p / (1 + a2)
    for _ in range(NEWTON):
        P = P - (P * (1 + a2) + c1 * P**3 - p) / (1 + a2 + 3 * c1 * P**2)
    return q + a1 + 3 * c0 * P**2, P


def chi_inverse(Q, P, proc):
    """(q, p) = chi^-1(Q, P): q solves Q = q + A'(q) + 3 C(q) P^2 (Newton), p explicit."""
    from nh_models.models import sensor_spline as ss

    q = Q
    for _ in range(NEWTON):
        a1, a2, c0, c1 = ss.lookup(proc, q).unbind(-1)
        q = q - (q + a1 + 3 * c0 * P**2 - Q) / (1 + a2 + 3 * c1 * P**2)
    a1, a2, c0, c1 = ss.lookup(proc, q).unbind(-1)
    return q, P * (1 + a2) + c1 * P**3


def grid_states(V, ic, steps: int, spec: dict, theta: dict):
    """chi of the kernel's states at t = k h, k = 0..steps: (B, steps + 1) each."""
    from nh_models.models import sensor_spline as ss

    h = 2.0 / steps
    ktab, proc = tables(V, h, spec, theta)
    q, p = chi_inverse(ic[:, :1], ic[:, 1:], proc)
    F = ss.sensor_force(ktab, q)
    qs, ps = [q], [p]
    for _ in range(steps):
        p = p - 0.5 * h * F
        q = q + h * p
        F = ss.sensor_force(ktab, q)
        p = p - 0.5 * h * F
        qs.append(q)
        ps.append(p)
    return chi(torch.cat(qs, 1), torch.cat(ps, 1), proc)


def load(data_dir: str, split: str, n: int, steps: int, ref_steps: int):
    """(V, ic, reference q, reference p at the grid points) of n orbits of a split, float64 tensors."""
    from nh_models.compiled.integrators import integrate
    from nh_models.evaluation.cases import load_test

    d = load_test(data_dir, n or None, 0, split=split)
    tg = np.tile(np.arange(steps + 1) * (2.0 / steps), (len(d.V), 1))
    rq, rp = integrate(d.V, tg, d.ic, "rk4", ref_steps, parallel=True)
    return [torch.from_numpy(np.ascontiguousarray(x)) for x in (d.V, d.ic, rq, rp)]


def losses(batch, steps: int, spec: dict, theta: dict) -> torch.Tensor:
    V, ic, rq, rp = batch
    q, p = grid_states(V, ic, steps, spec, theta)
    return 0.5 * (((q - rq) ** 2).mean(1) + ((p - rp) ** 2).mean(1))


def fit(batch, steps: int, spec: dict, objective: str = "log") -> dict:
    """The added coefficients minimising the mean log loss (or with `objective` "mean" the mean
    loss) on `batch` (L-BFGS from zero)."""
    theta = {
        k: torch.zeros(len(v), dtype=torch.float64, requires_grad=True) for k, v in spec.items() if k in KEYS
    }
    if not theta:
        return theta
    with torch.no_grad():  # the mean loss in units of its value at zero: L-BFGS's tolerances are absolute
        scale = losses(batch, steps, spec, theta).mean() if objective == "mean" else 1.0
    opt = torch.optim.LBFGS(list(theta.values()), lr=1, max_iter=60, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        err = losses(batch, steps, spec, theta)
        loss = torch.log(err + 1e-30).mean() if objective == "log" else err.mean() / scale
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return {k: v.detach() for k, v in theta.items()}


def rows(args: argparse.Namespace) -> dict:
    if args.steps < 1 or args.ref_steps < 1 or args.fit_orbits < 1:
        raise NHError("--steps, --ref-steps and --fit-orbits must be at least 1")
    fit_set = load(args.data, "val", args.fit_orbits, args.steps, args.ref_steps)
    test_set = load(args.data, "test", args.test_orbits, args.steps, args.ref_steps)
    out = {}
    for name, spec in ROWS.items():
        theta = fit(fit_set, args.steps, spec, args.objective)
        with torch.no_grad():
            err = losses(test_set, args.steps, spec, theta).numpy()
            fitted = float(losses(fit_set, args.steps, spec, theta).mean())
        out[name] = {
            "fit mean": fitted,
            "mean": float(err.mean()),
            "median": float(np.median(err)),
            "worst 1 % share": float(np.sort(err)[::-1][: max(1, len(err) // 100)].sum() / err.sum()),
            "coefficients": {k: dict(zip(spec[k], map(float, v), strict=True)) for k, v in theta.items()},
        }
    n = int(len(test_set[0]))
    return {"data": args.data, "steps": args.steps, "objective": args.objective, "test_orbits": n, "rows": out}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    try:
        res = rows(args)
    except NHError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"{res['data']}: {res['test_orbits']} test orbits, {res['steps']} steps, loss at the grid points; "
          f"added terms fitted on the {res['objective']} loss")  # fmt: skip
    for name, r in res["rows"].items():
        print(f"{name:<24} mean {r['mean']:.3e}  median {r['median']:.3e}  worst 1 % share "
              f"{r['worst 1 % share']:.2f}  (fit orbits' mean {r['fit mean']:.3e})")  # fmt: skip
        for k, c in r["coefficients"].items():
            print(f"    {k}: " + ", ".join(f"{n} {v:+.2e}" for n, v in c.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
