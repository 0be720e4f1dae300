"""Per-window coverage of chained-window bands (issue 22, part 4): calibrate each run for K chained
windows on fresh long orbits, then score each window's own band on every data folder's test
split chained to t = 2K.

    PYTHONPATH=. python bench/window_coverage.py RUN [RUN ...] --data parquet_data/normal parquet_data/normal-s7
    PYTHONPATH=. python bench/window_coverage.py RUN ... --data D1 D2 --fresh 5000 --windows 10 --workers 2 \\
        --out window_coverage.json --png docs/calibration_window_width.png

1. Calibration (in memory, or written into each RUN with --save, byte for byte what `nh calibrate
   RUN --windows K --fresh N --data D1` writes): the long certified orbits (to t = 2K) of --fresh
   new potentials drawn like the first --data folder's from the engine's calibration stream
   (never a training or test orbit), generated once and shared by every run; each run predicts
   them by chaining windows exactly as `nh predict` does; one split-conformal band per window
   and energy stratum (score --score, margin 0.1: a 0.9 band aims at 0.91).
2. Test orbits: each data folder's test split (all of it, or --n-test seeded orbits); their
   potentials and initial conditions are integrated again by the certified engine to t = 2K
   (new random times per window, seed --seed). Orbits the engine cannot certify that far
   (err_est > 1e-8; about 2 % at t = 20) are left out, and counted.
3. Per window k and run and test split: coverage at --level (the whole window inside window
   k's band), its standard error sqrt(c (1 - c) / n), the mean full widths 2 Q sigma of the q
   and p bands; the target (issue 22): coverage >= level - 2 SE in every window. Also the
   coverage counting the uncertified orbits (their 1e-14 integration as the truth), to show
   that leaving them out does not flatter the bands.

Prints Markdown tables ready for docs/calibration.md; --out writes everything as JSON and --png
the band widths against k. CPU: the engine certifies about 1,000 orbits/s to t = 20 on one core
(--workers N processes in parallel), the networks chain 10 windows; --fresh and --n-test set
the cost.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from nh_data.fileio import atomic_write, write_text_atomic
from nh_data.ground_truth import R_NOT_CERTIFIED
from nh_data.problem import T_END
from nh_data.schema import read_manifest
from nh_data.stream import long_orbits, read_build_config
from nh_models.calibration import (
    MARGIN,
    SCORE_KINDS,
    calibrate_predictor,
    from_dict,
    long_orbit_errors,
    window_errors,
    write_calibration,
)
from nh_models.evaluation.coverage import window_coverage
from nh_models.evaluation.predictors import model_predictor
from nh_models.training.checkpoint import build_model, checkpoint_path, load_checkpoint

CHUNK = 1000  # test orbits integrated per task
TEST_STREAM = 6  # SeedSequence spawn-key code of the test orbits' long times (builds use 0-5)
COLUMNS = ["V", "q0", "p0", "E0", "u", "knots", "coeffs"]


def read_test(data_dir: str, n_test: int | None, seed: int) -> dict:
    """The test split's columns needed to integrate its orbits again (all rows, or n_test seeded)."""
    files = [s["file"] for s in read_manifest(data_dir)["shards"] if s["split"] == "test"]
    table = pa.concat_tables([pq.read_table(Path(data_dir) / f, columns=COLUMNS) for f in files])
    if n_test is not None and n_test < table.num_rows:
        rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=n_test, replace=False))
        table = table.take(pa.array(rows))
    cols = {
        "V": np.asarray(table["V"].combine_chunks().flatten()).reshape(-1, 100),
        "knots": [np.asarray(k) for k in table["knots"].to_pylist()],
        "coeffs": [np.asarray(c) for c in table["coeffs"].to_pylist()],
    }
    for k in ("q0", "p0", "E0", "u"):
        cols[k] = table[k].to_numpy()
    return cols


def _extend(config: dict, rows: dict, seed: int, index: int, windows: int) -> dict:
    """Task: chunk `index` of the test rows integrated again to t = windows T (its own generator)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(TEST_STREAM, index))))
    out = long_orbits(config, rows, rng, windows)
    return {"t": out["t"], "q": out["q"], "p": out["p"], "code": out["code"]}


def split_errors(predictors: list, data_dir: str, windows: int, n_test, seed: int, workers: int) -> dict:
    """`window_errors` of each predictor on the test split integrated again to t = 2K, chunk by chunk."""
    config = read_build_config(data_dir)
    rows = read_test(data_dir, n_test, seed)
    n = len(rows["q0"])
    tasks = []
    for i, s in enumerate(range(0, n, CHUNK)):
        part = {k: v[s : s + CHUNK] for k, v in rows.items()}
        tasks.append((config, part, seed, i, windows))
    errors: list[list] = [[None] * len(tasks) for _ in predictors]
    codes: list = [None] * len(tasks)

    def done(i: int, out: dict) -> None:
        part = tasks[i][1]
        ic = np.stack([part["q0"], part["p0"]], axis=1)
        codes[i] = out["code"]
        for j, predict in enumerate(predictors):
            errors[j][i] = window_errors(predict, part["V"], ic, out["t"], out["q"], out["p"], windows)
        print(f"  {data_dir}: test orbits {min((i + 1) * CHUNK, n):,} of {n:,}", flush=True)

    if workers > 1 and len(tasks) > 1:
        from nh_data.pool import run_tasks

        run_tasks(_extend, tasks, workers, done)
    else:
        for i, args in enumerate(tasks):
            done(i, _extend(*args))
    return {"errors": [np.concatenate(e) for e in errors], "code": np.concatenate(codes), "u": rows["u"]}


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", nargs="+", required=True, help="data folders whose test splits are scored; the first "
                    "also fixes the scaled score's sigmas and how the calibration potentials are drawn")  # fmt: skip
    ap.add_argument("--windows", type=int, default=10, help="chained windows K (to t = 2K) [10]")
    ap.add_argument("--fresh", type=int, default=5000, help="new potentials of the calibration (4 orbits each) [5000]")
    ap.add_argument("--n-test", type=int, default=None, help="seeded test orbits per data folder [default: all]")
    ap.add_argument("--level", type=float, default=0.9)
    ap.add_argument("--score", choices=SCORE_KINDS, default="scaled")
    ap.add_argument("--margin", type=float, default=MARGIN)
    ap.add_argument("--seed", type=int, default=0, help="seed of the test orbits' subset and long times")
    ap.add_argument("--workers", type=int, default=1, help="processes that integrate orbits")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--save", action="store_true", help="write each RUN/calibration.json (as `nh calibrate` would)")
    ap.add_argument("--out", default=None, help="JSON of every figure")
    ap.add_argument("--png", default=None, help="band width against k")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    K, level = args.windows, args.level
    cal_data = args.data[0]

    t0 = time.time()
    ckpts = [load_checkpoint(checkpoint_path(r, "best"), "cpu") for r in args.runs]
    preds = [model_predictor(build_model(c, "cpu")) for c in ckpts]
    labels = [f"{c['model_name']} {Path(r).name}" for c, r in zip(ckpts, args.runs, strict=True)]
    print(f"calibration: {args.fresh:,} new potentials drawn like {cal_data}, {K} windows", flush=True)
    errs, u = long_orbit_errors(preds, cal_data, args.fresh, K, workers=args.workers, progress=True)
    cals = []
    for run, ckpt, pred, err in zip(args.runs, ckpts, preds, errs, strict=True):
        cal = calibrate_predictor(pred, cal_data, kind=args.score, fresh=args.fresh, margin=args.margin,
                                  windows=K, errors=(err, u))  # fmt: skip
        if args.save:
            print(f"  written: {write_calibration(run, ckpt, cal_data, cal)}")
        cals.append(from_dict(cal))
    n_cal, rejected = cals[0].meta["n"], cals[0].meta["fresh"]["rejected"]
    print(f"calibrated on {n_cal:,} orbits ({rejected} not certified to t = {K * T_END:g}) in "
          f"{time.time() - t0:.0f} s", flush=True)  # fmt: skip

    results: dict = {"settings": vars(args) | {"calibration_orbits": n_cal, "calibration_rejected": rejected},
                     "runs": {lb: {} for lb in labels}}  # fmt: skip
    for data_dir in args.data:
        t1 = time.time()
        res = split_errors(preds, data_dir, K, args.n_test, args.seed, args.workers)
        kept = res["code"] == 0
        loose = res["code"] == R_NOT_CERTIFIED
        print(f"{data_dir}: {kept.sum():,} of {len(kept):,} test orbits certified to t = {K * T_END:g} "
              f"({loose.sum()} not certified, {(~kept & ~loose).sum()} rejected otherwise) in "
              f"{time.time() - t1:.0f} s", flush=True)  # fmt: skip
        for lb, cal, err in zip(labels, cals, res["errors"], strict=True):
            rows = window_coverage(cal, err[kept], res["u"][kept], level)
            with_loose = window_coverage(cal, err[kept | loose], res["u"][kept | loose], level)
            for r, r2 in zip(rows, with_loose, strict=True):
                r["coverage_with_uncertified"] = r2["coverage"]
                r["n_with_uncertified"] = r2["n"]
            results["runs"][lb][data_dir] = {"windows": rows, "n_test": int(len(kept)), "not_certified":
                                             int(loose.sum()), "rejected": int((~kept & ~loose).sum())}  # fmt: skip
    report = render(results, args.data, K, level)
    print("\n" + report)
    if args.out:
        write_text_atomic(args.out, json.dumps(results, indent=1, default=float) + "\n")
    if args.png:
        plot_widths(results, args.data[0], K, level, args.png)
        print(f"written: {args.png}")


def render(results: dict, data_dirs: list[str], K: int, level: float) -> str:
    """Markdown: coverage +- SE per window, widths per window, and the target per run and split."""
    cols = [f"k={k} (t<={2 * k})" for k in range(1, K + 1)]
    lines = [f"Coverage at {level:g} of window k's own band over window k (± SE = sqrt(c (1 - c) / n); "
             f"**bold**: under {level:g} - 2 SE):", "",
             "| run | test split | n | " + " | ".join(cols) + " |", "|" + "---|" * (K + 3)]  # fmt: skip
    verdict = []
    for lb, per in results["runs"].items():
        for d in data_dirs:
            ws = per[d]["windows"]
            cells = []
            for w in ws:
                cell = f"{w['coverage']:.3f} ± {w['se']:.3f}"
                cells.append(f"**{cell}**" if w["coverage"] < level - 2 * w["se"] else cell)
            lines.append(f"| {lb} | {Path(d).name} | {ws[0]['n']:,} | " + " | ".join(cells) + " |")
            worst = min((w["coverage"] - (level - 2 * w["se"])) / w["se"] for w in ws)
            miss = [w["window"] for w in ws if w["coverage"] < level - 2 * w["se"]]
            verdict.append(f"| {lb} | {Path(d).name} | {min(w['coverage'] for w in ws):.3f} | "
                           f"{worst:+.1f} | {'met' if not miss else 'missed in windows ' + str(miss)} |")  # fmt: skip
    lines += ["", f"Target: every window covers at least {level:g} - 2 SE:", "",
              "| run | test split | lowest coverage | margin to the line, in SE (lowest) | target |",
              "|---|---|---|---|---|", *verdict]  # fmt: skip
    lines += ["", "Coverage counting the orbits the engine could not certify to the end (their 1e-14 "
              "integration as truth):", "", "| run | test split | n | " + " | ".join(cols) + " |",
              "|" + "---|" * (K + 3)]  # fmt: skip
    for lb, per in results["runs"].items():
        for d in data_dirs:
            ws = per[d]["windows"]
            lines.append(f"| {lb} | {Path(d).name} | {ws[0]['n_with_uncertified']:,} | "
                         + " | ".join(f"{w['coverage_with_uncertified']:.3f}" for w in ws) + " |")  # fmt: skip
    for what in ("q", "p"):
        lines += ["", f"Mean full width of the {what} band at {level:g} per window (test split {Path(data_dirs[0]).name}):",
                  "", "| run | " + " | ".join(cols) + " |", "|" + "---|" * (K + 1)]  # fmt: skip
        for lb, per in results["runs"].items():
            ws = per[data_dirs[0]]["windows"]
            lines.append(f"| {lb} | " + " | ".join(_fmt(w[f"width_{what}"]) for w in ws) + " |")
    return "\n".join(lines)


def plot_widths(results: dict, data_dir: str, K: int, level: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    k = np.arange(1, K + 1)
    for lb, per in results["runs"].items():
        ws = per[data_dir]["windows"]
        for ax, what in zip(axes, ("q", "p"), strict=True):
            ax.plot(k, [w[f"width_{what}"] for w in ws], "o-", ms=3, label=lb)
    for ax, what in zip(axes, ("q", "p"), strict=True):
        ax.set(yscale="log", xlabel="chained window k (t in (2(k-1), 2k])", ylabel=f"mean full width of the {what} band",
               title=f"{what} band at {level:g}, per window")  # fmt: skip
        ax.set_xticks(k)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
