"""Coverage of calibrated error bands (issue 12): the scores of `nh_models.calibration` on each
run, coverage per stratum on held-out test orbits, and the decay along chained windows.

    PYTHONPATH=. python bench/coverage.py --data parquet_data/normal runs/deeponet-... runs/traonet-...
    PYTHONPATH=. python bench/coverage.py --data parquet_data/normal --fresh 20000 --scores scaled RUN ...

Calibrates every run in memory (the runs' calibration.json is left as it is) with each score of
--scores on the val split of --data, or with --fresh N on the orbits of N new potentials drawn
like it from the calibration stream (generated once, shared by every run), at --margin (the
share of the nominal miscoverage a band holds back; 0 = plain split conformal); predicts
--n-test seeded test orbits (default: the whole test split) once per run; prints coverage at
0.5 / 0.9 / 0.99 and mean full widths per stratum, and the 0.9 coverage in each of 5 chained
windows on the first 200 of them; --out writes everything as JSON. The figures of
docs/calibration.md come from it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nh_models.calibration import MARGIN, SCORE_KINDS, calibrate_predictor, fresh_arrays, from_dict
from nh_models.evaluation.cases import load_test
from nh_models.evaluation.coverage import chained_coverage, coverage_summary
from nh_models.evaluation.predictors import model_predictor
from nh_models.training.checkpoint import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--n-test", type=int, default=None, help="seeded test orbits [default: all]")
    ap.add_argument("--fresh", type=int, default=0, help="calibrate on N new potentials [default: the val split]")
    ap.add_argument("--margin", type=float, default=MARGIN)
    ap.add_argument("--scores", default=",".join(SCORE_KINDS), help="comma-separated score kinds")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kinds = [k for k in args.scores.split(",") if k]
    test = load_test(args.data, max_orbits=args.n_test, seed=0)
    orbits = None
    if args.fresh:
        t0 = time.time()
        orbits = fresh_arrays(args.data, args.fresh, progress=True)
        print(f"calibration orbits: {orbits[2]:,} of {args.fresh:,} new potentials ({time.time() - t0:.0f} s); "
              f"test orbits: {len(test.u):,}; margin {args.margin:g}", flush=True)  # fmt: skip
    out = {}
    for run in args.runs:
        t0 = time.time()
        model, _ = load_run(run)
        pred = model_predictor(model)
        q_hat, p_hat = pred(test.V, test.t, test.ic)
        res = {}
        for kind in kinds:
            cal = from_dict(calibrate_predictor(pred, args.data, kind=kind, fresh=args.fresh, margin=args.margin,
                                                orbits=orbits))  # fmt: skip
            res[kind] = coverage_summary(cal, cal.scores_of(q_hat, p_hat, test.q, test.p), test.u)
            if kind == kinds[-1]:
                few = slice(0, 200)
                res["chained"] = chained_coverage(cal, pred, test.V[few], test.ic[few], test.u[few], 5, 2.0)
        out[run] = res
        print(f"{model.name} ({run}): {time.time() - t0:.0f} s", flush=True)
        for kind in kinds:
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
