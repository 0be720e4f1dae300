"""Coverage of calibrated error bands (issue 12): both scores of `nh_models.calibration` on each
run, coverage per stratum on held-out test orbits, and the decay along chained windows.

    PYTHONPATH=. python bench/coverage.py --data parquet_data/normal runs/deeponet-... runs/traonet-...

Calibrates every run on the val split of --data with the scores `max` and `scaled` (in memory:
the runs' calibration.json is left as it is), predicts --n-test seeded test orbits once, prints
coverage at 0.5 / 0.9 / 0.99 and mean full widths per stratum, and the 0.9 coverage in each of
5 chained windows on the first 200 of them; --out writes everything as JSON. The figures of
docs/calibration.md come from it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nh_models.calibration import calibrate_predictor, from_dict
from nh_models.evaluation.cases import load_test
from nh_models.evaluation.coverage import chained_coverage, coverage_summary
from nh_models.evaluation.predictors import model_predictor
from nh_models.training.checkpoint import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n-test", type=int, default=4000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = load_test(args.data, max_orbits=args.n_test, seed=0)
    out = {}
    for run in args.runs:
        t0 = time.time()
        model, _ = load_run(run)
        pred = model_predictor(model)
        q_hat, p_hat = pred(test.V, test.t, test.ic)
        res = {}
        for kind in ("max", "scaled"):
            cal = from_dict(calibrate_predictor(pred, args.data, kind=kind))
            res[kind] = coverage_summary(cal, cal.scores_of(q_hat, p_hat, test.q, test.p), test.u)
            if kind == "scaled":
                few = slice(0, 200)
                res["chained"] = chained_coverage(cal, pred, test.V[few], test.ic[few], test.u[few], 5, 2.0)
        out[run] = res
        print(f"{model.name} ({run}): {time.time() - t0:.0f} s", flush=True)
        for kind in ("max", "scaled"):
            for name, r in res[kind]["strata"].items():
                cov = " ".join(f"{lv}:{c:.4f}" for lv, c in r["coverage"].items())
                print(f"  {kind:6s} {name:12s} n={r['n']:5d} coverage {cov}  "
                      f"width q {r['width_q']['0.9']:.3g}  p {r['width_p']['0.9']:.3g}")  # fmt: skip
        print("  chained 0.9:", [round(c["coverage"], 3) for c in res["chained"]], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
