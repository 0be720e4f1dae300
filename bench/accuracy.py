"""Accuracy benchmark: model recipes trained under one wall-clock budget, scored on the test split.

    python bench/accuracy.py --data parquet_data/normal --budget 30 \
        --models deeponet,traonet,varonet,mambonet,fno --recipes recommended,paper \
        --seeds 89,231 --out runs/accuracy --results docs/results.md

For every (model, recipe, seed) the script trains `nh_models.training.trainer.train` with the train
key `time_limit` = --budget minutes (the trainer plans its schedule to span the budget
and stops cleanly at it) into OUT/<dataset>/<model>-<recipe>-s<seed>/; a run whose
metrics.json says completed or time_limit is kept, so an interrupted benchmark resumes
(an unfinished run folder is trained again from scratch). Recipes: `recommended` is
nh_models/configs/<model>.yaml, `paper` nh_models/configs/paper/<model>.yaml, `files` the
recommended one trained on the folder's train split alone (train.fresh = 0).

All runs of the data folder are then scored in one `nh_models.evaluation.evaluate_runs`
call (its metrics.json, report.md and plots go to OUT/<dataset>/eval/): test loss
overall and per energy stratum, physics potentials, inference time per orbit, RK4 at
dt = 0.02 and RK4 at equal cost. Beside them the script computes, on the same test
orbits: RK4 at dt = 0.02 (per stratum too), the mean predictor (the train split's mean
orbit per time index when every orbit shares one uniform time grid, else the constant
train mean of q and of p) and, on uniform-grid data only, the rank-K floor (train mean +
the top K principal components of the train split's q and p matrices, each orbit of the
test split projected onto that basis).

It writes one block of --results (docs/results.md), between the markers
`<!-- accuracy:<dataset> start -->` and `<!-- accuracy:<dataset> end -->` (other text
and other data folders' blocks are kept), and the plot results_<dataset>.png beside it;
the block, its tables and claims and the plot are made by bench/accuracy_report.py.
Timings depend on the machine and what else runs on it: compare numbers of one run only.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nh_data.errors import NHError


def _load_report():
    """bench/accuracy_report.py (the block, its tables and claims, the plot), loaded by its path:
    bench/ is a folder of scripts, not a package, and this file is also loaded by path (tests)."""
    if "accuracy_report" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "accuracy_report", Path(__file__).with_name("accuracy_report.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # before running it: its dataclass looks its module up
        spec.loader.exec_module(module)
    return sys.modules["accuracy_report"]


report = _load_report()
DONE_STATUSES = report.DONE_STATUSES  # a run whose metrics.json says one of these is kept
RK4_DT = report.RK4_DT  # the fixed-step RK4 baseline of the table (evaluate's physics_dt)
Entry, fmt, mean_of = report.Entry, report.fmt, report.mean_of

# files: the recommended recipe trained on the folder's train split alone (fresh: 0), which
# isolates what the fresh orbits bring; fast: CONFIG_DIR/<model>_fast.yaml (SympONet's coarse
# prior with a learned correction, issue 21)
RECIPES = ("recommended", "paper", "files", "fast")
PRIOR_ALONE = " (prior alone)"  # evaluate_runs' label suffix of a SympONet's prior-alone row
RANKS = (10, 20, 32, 64)  # rank-K floors always reported (plus each recipe's DeepONet branch count)
CHUNK = 16384  # orbits per chunk when streaming a split


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(
        prog="bench/accuracy.py",
        description="Train model recipes under one wall-clock budget, score them on the test split "
        "beside RK4 and data baselines, and write a block of docs/results.md.",
    )
    ap.add_argument("--data", required=True, help="dataset folder of `nh data build` (needs train/val/test)")
    ap.add_argument("--budget", type=float, required=True, help="training wall-clock budget per run, minutes")
    ap.add_argument(
        "--models", default="deeponet,traonet,varonet,mambonet,fno,symponet", help="comma-separated models"
    )
    ap.add_argument(
        "--recipes",
        default="recommended,paper",
        help="comma-separated: recommended, paper, files; NAME:S1+S2 gives a recipe its own seeds",
    )
    ap.add_argument("--seeds", default="89,231", help="comma-separated training seeds")
    ap.add_argument("--out", default="runs/accuracy", help="run folders go to OUT/<dataset>/")
    ap.add_argument("--results", default="docs/results.md", help="markdown file holding the results blocks")
    ap.add_argument("--physics", default="all", help="physics potentials: all, none or name,name")
    ap.add_argument(
        "--physics-dir", default="parquet_data/physics", help="where they are (built when missing)"
    )
    ap.add_argument(
        "--max-test", type=int, default=None, help="score a seeded random subset of N test orbits"
    )
    ap.add_argument("--n-sub", type=int, default=1000, help="test orbits for timing and RK4 at equal cost")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (training and evaluation)")
    ap.add_argument("--quiet", action="store_true", help="no evaluation progress on stderr")
    ap.add_argument(
        "--name",
        default=None,
        help="name of the results block and of the run subfolder [default: the data folder's name]",
    )
    ap.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (a module name or a .py file) first: it registers a model of your own "
        "(docs/extending.md); repeatable",
    )
    ap.add_argument(
        "--train-only",
        action="store_true",
        help="train the runs and stop (several such runs side by side, each pinned to its own cores, "
        "then one run without it evaluates them all)",
    )
    return ap.parse_args(argv)


def parse_names(text: str, valid: tuple[str, ...] | list[str], what: str) -> list[str]:
    """A comma-separated list of names, each one of `valid`, duplicates dropped; NHError otherwise."""
    names = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not names:
        raise NHError(f"no {what} given; valid: {', '.join(valid)}")
    bad = [n for n in names if n not in valid]
    if bad:
        raise NHError(f"unknown {what} {bad[0]!r}; valid: {', '.join(valid)}")
    return names


def parse_seeds(text: str) -> list[int]:
    """A comma-separated list of non-negative integer seeds, duplicates dropped."""
    try:
        seeds = list(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
    except ValueError:
        raise NHError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise NHError(f"--seeds must be non-negative integers, got {text!r}")
    return seeds


def recipe_path(model: str, recipe: str) -> Path | None:
    """The config file of a recipe: CONFIG_DIR/<model>.yaml or PAPER_CONFIG_DIR/<model>.yaml; a plug-in
    model's recommended recipe is the default config it registered (None: registered as data)."""
    from nh_models.models import registered_plugin
    from nh_models.training.config import CONFIG_DIR, PAPER_CONFIG_DIR, default_config_path

    if recipe in ("recommended", "files") and registered_plugin(model) is not None:
        return default_config_path(model)
    name = f"{model}_fast.yaml" if recipe == "fast" else f"{model}.yaml"
    path = (PAPER_CONFIG_DIR if recipe == "paper" else CONFIG_DIR) / name
    if not path.is_file():
        raise NHError(f"recipe {recipe!r} of {model} has no config file {str(path)!r}")
    return path


def recipe_path_exists(model: str, recipe: str) -> bool:
    try:
        recipe_path(model, recipe)
    except NHError:
        return False
    return True


# ---------------------------------------------------------------- runs


@dataclass
class RunSpec:
    """One training run of the benchmark and, once known, its resolved config and metrics."""

    model: str
    recipe: str
    seed: int
    config_path: Path | None  # None: a plug-in's default config registered as data
    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the trainer's NHError, when the run failed

    @property
    def entry(self) -> str:
        """The table entry the run belongs to: model and recipe."""
        return f"{self.model}-{self.recipe}"

    @property
    def label(self) -> str:
        """The run's label in evaluate_runs' metrics (its folder name)."""
        return self.run_dir.name


def parse_recipes(text: str, seeds: list[int]) -> dict[str, list[int]]:
    """`--recipes`: comma-separated recipes, each optionally with its own seeds after a colon
    (`files:89+231`); a recipe without them takes `seeds`."""
    out: dict[str, list[int]] = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, _, own = item.partition(":")
        parse_names(name, RECIPES, "recipe")
        out[name] = parse_seeds(own.replace("+", ",")) if own else list(seeds)
    if not out:
        raise NHError(f"no recipe given; valid: {', '.join(RECIPES)}")
    return out


def plan_runs(models: list[str], recipes: dict[str, list[int]], budget: float, out: Path) -> list[RunSpec]:
    """Every (model, recipe, seed) with its resolved config (time_limit = budget); configs checked now."""
    from nh_models.models import PAPER_MODEL_NAMES
    from nh_models.training.config import load_config

    specs = []
    for model in models:
        for recipe, seeds in recipes.items():
            if recipe == "paper" and model not in PAPER_MODEL_NAMES:
                print(f"{model}: not a network of the paper, no paper recipe to train", flush=True)
                continue
            if recipe == "fast" and not recipe_path_exists(model, recipe):
                print(f"{model}: no fast recipe to train", flush=True)
                continue
            path = recipe_path(model, recipe)
            for seed in seeds:
                overrides = {
                    "seed": seed,
                    "time_limit": budget,
                    **({"fresh": 0} if recipe == "files" else {}),
                }
                cfg = load_config(model, path, overrides)
                spec = RunSpec(model, recipe, seed, path, out / f"{model}-{recipe}-s{seed}", cfg)
                specs.append(spec)
    return specs


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file as a dict, or None when it is missing or unreadable."""
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check_same_config(spec: RunSpec) -> None:
    """NHError when a finished run folder was trained with another budget, seed or model config."""
    import yaml

    try:
        saved = yaml.safe_load((spec.run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # nothing to compare with: keep the finished run
    diff = [f"model.{k}" for k, v in spec.config["model"].items() if saved.get("model", {}).get(k) != v]
    for key in ("time_limit", "seed", "lr", "batch_size", "fresh"):
        if saved.get("train", {}).get(key) != spec.config["train"].get(key):
            diff.append(f"train.{key}")
    if diff:
        raise NHError(
            f"run folder {str(spec.run_dir)!r} was trained with another config ({', '.join(diff)} differ); "
            "delete it or choose another --out"
        )


def train_runs(specs: list[RunSpec], data_dir: Path, device: str) -> list[RunSpec]:
    """Train every run not finished yet, one progress line per run; fills `spec.train_metrics`.

    A run the trainer stops with an NHError (e.g. a diverging loss) is reported and left
    out; returns the runs that finished (a later call trains the failed ones again).
    """
    from nh_models.training.trainer import train

    done = []
    for i, spec in enumerate(specs, 1):
        head = f"[{i}/{len(specs)}] {spec.label}"
        metrics = read_json(spec.run_dir / "metrics.json")
        if metrics is not None and metrics.get("status") in DONE_STATUSES:
            check_same_config(spec)
            print(f"{head}: done before ({metrics['status']}), kept", flush=True)
        else:
            if spec.run_dir.exists():
                status = metrics.get("status") if metrics else "unfinished"
                print(f"{head}: {status} run folder, training again from scratch", flush=True)
                shutil.rmtree(spec.run_dir)
            t0 = time.perf_counter()
            try:
                # the test split is scored below by evaluate_runs (--max-test); bands: `nh calibrate RUN`
                metrics = train(
                    spec.model,
                    spec.config,
                    data_dir,
                    spec.run_dir,
                    device=device,
                    progress=False,
                    test=False,
                    calibrate=False,
                )
            except NHError as exc:
                spec.error = str(exc)
                print(f"{head}: failed: {exc}", flush=True)
                continue
            print(
                f"{head}: {metrics.get('status')} after {(time.perf_counter() - t0) / 60:.2f} min, "
                f"{metrics.get('epochs_done')} epochs, best val {fmt(metrics.get('best_val_loss'))}",
                flush=True,
            )
        spec.train_metrics = metrics
        done.append(spec)
    return done


# ---------------------------------------------------------------- data baselines


def shared_uniform_grid(t: np.ndarray, grid: np.ndarray | None, atol: float) -> np.ndarray | None:
    """`grid` (or the first row of t when grid is None) if every row of t equals it and it is uniform."""
    ref = t[0] if grid is None else grid
    steps = np.diff(ref)
    if steps.size == 0 or not np.allclose(steps, steps[0], rtol=0, atol=atol):
        return None
    if not np.allclose(t, ref[None, :], rtol=0, atol=atol):
        return None
    return np.asarray(ref, dtype=np.float64)


def train_chunks(ds):
    """Yield the train split's (t, q, p) as float64 arrays, CHUNK orbits at a time, in order."""
    for s in range(0, len(ds), CHUNK):
        batch = ds.get_batch(np.arange(s, min(s + CHUNK, len(ds))))
        yield tuple(batch[k].double().numpy() for k in ("t", "q", "p"))


def train_statistics(data_dir: Path) -> dict[str, Any]:
    """Mean orbit, constant means and (on a shared uniform grid) the principal axes of train q and p.

    Two streaming passes over the memory-mapped train split (float32 cache, float64 sums):
    the means, then the scatter matrices of the centred q and p, whose eigenvectors
    (largest first) are the SVD basis of the centred (N, W) matrices.
    """
    import torch

    from nh_models.data import ShardDataset

    ds = ShardDataset(data_dir, "train", torch.float32)
    n, grid, uniform = 0, None, True
    sums = {"q": 0.0, "p": 0.0}
    for t, q, p in train_chunks(ds):
        if uniform:
            grid = shared_uniform_grid(t, grid, atol=1e-6)
            uniform = grid is not None
        for key, x in (("q", q), ("p", p)):
            sums[key] = sums[key] + x.sum(axis=0)
        n += len(q)
    out: dict[str, Any] = {"n": n, "W": ds.W, "grid": grid if uniform else None}
    out["const"] = {k: float(np.sum(v)) / (n * ds.W) for k, v in sums.items()}
    out["mean"] = {k: np.asarray(v) / n for k, v in sums.items()} if uniform else None
    if uniform:
        scatter = {k: np.zeros((ds.W, ds.W)) for k in ("q", "p")}
        for _, q, p in train_chunks(ds):
            for key, x in (("q", q), ("p", p)):
                xc = x - out["mean"][key]
                scatter[key] += xc.T @ xc
        out["basis"] = {}
        for key, s in scatter.items():
            _, vecs = np.linalg.eigh(s)  # ascending eigenvalues
            out["basis"][key] = vecs[:, ::-1].copy()  # (W, W), columns by decreasing variance
    return out


def baseline_scores(
    data_dir: Path, stats: dict[str, Any], ranks: list[int], max_test: int | None, seed: int
) -> dict[str, Any]:
    """Mean predictor, rank-K floors and RK4 at RK4_DT on the evaluated test orbits, overall and per stratum.

    The test orbits are those of evaluate_runs (`TestSplit(data_dir, max_test, seed)`).
    Returns {"n_test", "uniform", "mean": summary, "rank": {K: summary}, "rk4": summary},
    each summary as `nh_models.evaluation.summarize` makes it; "rank" is empty off a
    shared uniform grid (shared by the train and test splits).
    """
    from nh_models.evaluation import TestSplit, orbit_errors, summarize
    from nh_models.evaluation.oracle import integrator_native

    test = TestSplit(data_dir, max_test, seed)
    uniform = stats["grid"] is not None and all(
        shared_uniform_grid(b.t, stats["grid"], atol=1e-6) is not None for b in test.batches(CHUNK)
    )  # False when the test orbits have other times than the train split's: no per-index mean
    errs: dict[str, list[dict[str, np.ndarray]]] = {"mean": [], "rk4": []}
    errs.update({f"rank{k}": [] for k in ranks})
    for b in test.batches(CHUNK):
        if uniform:
            q_hat = np.broadcast_to(stats["mean"]["q"], b.q.shape)
            p_hat = np.broadcast_to(stats["mean"]["p"], b.p.shape)
        else:
            q_hat = np.full_like(b.q, stats["const"]["q"])
            p_hat = np.full_like(b.p, stats["const"]["p"])
        errs["mean"].append(orbit_errors(q_hat, p_hat, b.q, b.p))
        errs["rk4"].append(orbit_errors(*integrator_native(b.V, b.t, b.ic, "rk4", RK4_DT), b.q, b.p))
        if uniform:
            for k in ranks:
                resid = {}
                for key, x in (("q", b.q), ("p", b.p)):
                    U = stats["basis"][key][:, :k]  # (W, k)
                    xc = x - stats["mean"][key]
                    resid[key] = xc - (xc @ U) @ U.T  # beyond the first k components
                zero = np.zeros_like(b.q)
                errs[f"rank{k}"].append(orbit_errors(resid["q"], resid["p"], zero, zero))

    def summary(parts: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        return summarize({key: np.concatenate([e[key] for e in parts]) for key in parts[0]}, test.u)

    return {
        "n_test": len(test.u),
        "uniform": uniform,
        "mean": summary(errs["mean"]),
        "rk4": summary(errs["rk4"]),
        "rank": {k: summary(errs[f"rank{k}"]) for k in ranks} if uniform else {},
    }


# ---------------------------------------------------------------- evaluation and aggregation


def evaluate_all(specs: list[RunSpec], data_dir: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One evaluate_runs call over every run (metrics.json, report.md and plots into OUT/<dataset>/eval)."""
    from nh_models.evaluation import EvalSettings, evaluate_runs

    settings = EvalSettings(max_test=args.max_test, n_sub=args.n_sub, physics_dt=RK4_DT)
    metrics, _ = evaluate_runs(
        [s.run_dir for s in specs],
        data_dir,
        args.physics,
        args.physics_dir,
        args.device,
        out / "eval",
        settings,
        progress=not args.quiet,
    )
    return metrics


def rk4_at_cost(rk4_rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """RK4 at the cost `seconds` per orbit: `nh_models.evaluation.equal_cost`, plus `cheaper`.

    cheaper: the cost is below every measured RK4 point; then `dt` and `loss` are those of
    RK4's cheapest measured point (None when it diverged), not an extrapolation past it.
    """
    # not `from nh_models.evaluation import equal_cost`: once evaluate_runs has imported the submodule
    # nh_models/evaluation/equal_cost.py, that package attribute is the module, not the function
    from nh_models.evaluation.work_precision import equal_cost

    cheapest = min(rk4_rows, key=lambda r: r["time_per_traj_s"])
    if seconds < cheapest["time_per_traj_s"]:
        return {"dt": cheapest["dt"], "loss": cheapest["loss"], "extrapolated": False, "cheaper": True}
    with np.errstate(invalid="ignore"):  # a diverged point makes a slope inf - inf
        out = equal_cost(rk4_rows, seconds)
    return out | {"cheaper": False, "loss": out["loss"] if math.isfinite(out["loss"]) else None}


def aggregate(specs: list[RunSpec], metrics: dict[str, Any]) -> list[Entry]:
    """Group the runs by (model, recipe) and average what evaluate_runs and the trainer measured."""
    rk4_rows = metrics.get("integrators", {}).get("work_precision", {}).get("rk4")
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.model, spec.recipe), []).append(spec)
    entries = []
    for (model, recipe), runs in groups.items():
        entries.append(_entry(model, recipe, runs, [metrics["runs"][s.label] for s in runs], rk4_rows))
        prior = [metrics["runs"].get(s.label + PRIOR_ALONE) for s in runs]
        if all(prior):  # a SympONet: what its prior alone scores, beside it in every table
            entries.append(_entry(model, recipe + PRIOR_ALONE, runs, prior, rk4_rows))
    return entries


def _entry(model: str, recipe: str, runs: list[RunSpec], ev: list[dict[str, Any]], rk4_rows) -> Entry:
    """One table entry from the runs of (model, recipe) and their evaluate_runs metrics `ev`."""
    strata_names = list(dict.fromkeys(k for e in ev for k in e.get("test", {}).get("strata", {})))
    potentials = list(dict.fromkeys(k for e in ev for k in e.get("physics", {})))
    times = [e.get("work_precision", {}).get("time_per_traj_s") for e in ev]
    us = min((t for t in times if t), default=None)  # one architecture: other jobs only add time
    tm = [s.train_metrics for s in runs]
    fresh = runs[0].config["train"].get("fresh", 0) or 0
    return Entry(
        model=model,
        recipe=recipe,
        data="fresh" if fresh > 0 else "files",
        params=tm[0].get("num_parameters"),
        seeds=[s.seed for s in runs],
        epochs=[int(m.get("epochs_done") or 0) for m in tm],
        statuses=[str(m.get("status")) for m in tm],
        samples_per_s=mean_of([m.get("samples_per_s") for m in tm]),
        train_minutes=(mean_of([m.get("train_seconds") for m in tm]) or 0.0) / 60.0,
        test=[e.get("test", {}).get("overall", {}).get("loss") for e in ev],
        strata={k: mean_of([e["test"]["strata"].get(k, {}).get("loss") for e in ev]) for k in strata_names},
        physics={k: mean_of([e["physics"].get(k, {}).get("loss") for e in ev]) for k in potentials},
        us_per_orbit=None if us is None else us * 1e6,
        sub_loss=mean_of([e.get("work_precision", {}).get("loss") for e in ev]),
        equal_cost=rk4_at_cost(rk4_rows, us) if rk4_rows and us else None,
        branches=runs[0].config["model"].get("branches") if model == "deeponet" else None,
    )


def rk4_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """RK4 at RK4_DT from evaluate_runs: time per orbit (work-precision) and physics losses."""
    integ = metrics.get("integrators", {})
    row = next((r for r in integ.get("work_precision", {}).get("rk4", []) if r["dt"] == RK4_DT), None)
    return {
        "us_per_orbit": row["time_per_traj_s"] * 1e6 if row else None,
        "physics": {k: v.get("rk4", {}).get("loss") for k, v in integ.get("physics", {}).items()},
    }


# ---------------------------------------------------------------- main


def check_inputs(args: argparse.Namespace) -> tuple[Path, list[str], dict[str, list[int]], str, str]:
    """Load the plug-ins and check every option before any training: (data folder, models,
    recipes with their seeds, device, block name); NHError on bad input."""
    from nh_models.data import has_split
    from nh_models.evaluation import physics_names, resolve_device
    from nh_models.models import load_plugin, model_names

    for module in args.plugin:
        load_plugin(module)
    data_dir = Path(args.data)
    if not (data_dir / "manifest.json").is_file():
        raise NHError(f"data folder {args.data!r} does not exist or has no manifest.json")
    missing = [split for split in ("train", "val", "test") if not has_split(data_dir, split)]
    if missing:
        raise NHError(f"data folder {args.data!r} has no {missing[0]} split")
    if not args.budget > 0 or not math.isfinite(args.budget):
        raise NHError(f"--budget must be a positive number of minutes, got {args.budget}")
    if args.max_test is not None and args.max_test < 1:
        raise NHError(f"--max-test must be >= 1, got {args.max_test}")
    if args.n_sub < 2:
        raise NHError(f"--n-sub must be >= 2, got {args.n_sub}")
    models = parse_names(args.models, list(model_names()), "model")
    seeds = parse_seeds(args.seeds)
    recipes = parse_recipes(args.recipes, seeds)
    physics_names(args.physics)  # NHError for an unknown potential, before any training
    device = resolve_device(args.device)
    name = args.name or data_dir.resolve().name
    if not name or "/" in name or name.startswith("."):
        raise NHError(f"--name must be a plain folder name, got {name!r}")
    return data_dir, models, recipes, device, name


def run(args: argparse.Namespace, command: str) -> Path:
    """The whole benchmark (train, evaluate, baselines, the report); returns the results file."""
    data_dir, models, recipes, device, name = check_inputs(args)
    out = Path(args.out) / name
    results = Path(args.results)

    specs = plan_runs(models, recipes, args.budget, out)
    total = fmt(len(specs) * args.budget)
    print(f"{len(specs)} runs x {fmt(args.budget)} min ({total} min) on {device}, runs in {out}", flush=True)
    done = train_runs(specs, data_dir, device)
    failed = [s for s in specs if s.error is not None]
    specs = done
    if not specs:
        raise NHError("every training run failed (see above)")
    if args.train_only:
        print(f"trained {len(specs)} runs in {out} (--train-only: no evaluation)", flush=True)
        return out
    print("evaluating every run on the test split", flush=True)
    metrics = evaluate_all(specs, data_dir, args, out)
    print("data baselines: mean predictor, rank-K floor, RK4", flush=True)
    stats = train_statistics(data_dir)
    entries = aggregate(specs, metrics)
    ranks = sorted({*RANKS, *(e.branches for e in entries if e.branches)})
    ranks = [k for k in ranks if k < stats["W"]]
    base = baseline_scores(data_dir, stats, ranks, args.max_test, metrics["settings"]["seed"])
    rk4 = rk4_figures(metrics)

    plot = results.parent / f"{results.stem}_{name}.png"
    report.plot_curves(
        specs, metrics, base, f"{data_dir} — {fmt(args.budget)} min training budget per run", plot
    )
    threads = sorted({s.train_metrics["torch_threads"] for s in specs if "torch_threads" in s.train_metrics})
    block = report.render_block(
        name, command, data_dir, device, entries, base, rk4, metrics, args, plot.name, failed, threads
    )
    report.upsert_block(results, name, block)
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line `Error: ...` and exit status 2 for bad input."""
    args = parse_args(argv)
    command = "python bench/accuracy.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        results = run(args, command)
    except NHError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"results: {results}", flush=True)  # (the run folder with --train-only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
