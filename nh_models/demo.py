"""`nh demo`: the whole path on a small default, in one call, on the CPU.

    pretrained operators first, before any training (`nh predict --model NAME ... --plot`):
      a physics potential and a formula -> pretrained/*.csv and *.png
    data (nh_data.build.build_dataset: wall starts on a uniform grid, as in the paper)
      -> train deeponet_small and traonet_small (configs/*_small.yaml), each for a time budget
      -> physics potentials (nh_data.physics)
      -> nh eval of both runs: report.md, metrics.json and plots

Everything lands under `out_dir` (default runs/demo): `data/`, `physics/`,
`runs/<model>/` and the evaluation files themselves. Re-running replaces the
demo's earlier runs (and reuses its dataset and physics files).
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nh_data.errors import NHError
from nh_data.fileio import write_text_atomic

DEMO_MODELS = ("deeponet", "traonet")
# what the demo predicts first, with operators shipped in the package (`nh models`):
# (entry, potential, initial condition, output name)
PRETRAINED_PREDICTIONS = (
    ("symponet-strata", "morse", (0.3, 0.0), "morse"),
    ("deeponet-strata", "8*(q-0.5)**2", (0.5, 1.0), "formula"),
)


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: dataset, training length, evaluation sizes."""

    n_potentials: int  # --n of the build (wall: train + val 80/20, and a test split of 0.4 n)
    epochs: dict[str, int]  # per model; a model not named trains for its configs/<model>_small.yaml epochs
    time_limit: dict[str, float] = field(default_factory=dict)  # minutes per model (planned epochs)
    ic: str = "wall"
    times: str = "uniform"
    physics: str = "all"
    n_sub: int = 1000
    n_detj: int = 100
    repeats: int = 3
    dts: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


SIZES: dict[str, DemoSize] = {
    # the paper's wall-start data (8,000 / 2,000 / 4,000 potentials) and a time budget per model:
    # DeepONet learns the operator well in 45 s (docs/results.md), TraONet gets 30 s
    "small": DemoSize(n_potentials=10_000, epochs={}, time_limit={"deeponet": 0.75, "traonet": 0.5}),
    # for tests: seconds, not minutes (the shape of every output, not its quality)
    "tiny": DemoSize(
        n_potentials=16,
        epochs={"deeponet": 1, "traonet": 1},
        ic="strata",
        times="random",
        physics="sho,mff",
        n_sub=16,
        n_detj=4,
        repeats=1,
        dts=(0.1, 0.05, 0.02),
        model_overrides={
            "deeponet": {"nodes": 16, "layers": 2, "branches": 4},
            "traonet": {"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 32},
        },
    ),
}


class _Stages:
    """Numbered stage headers with elapsed time, on stderr."""

    def __init__(self, total: int, progress: bool):
        self.total, self.k, self.progress, self.t0 = total, 0, progress, time.perf_counter()

    def __call__(self, msg: str) -> None:
        self.k += 1
        if self.progress:
            print(
                f"[{self.k}/{self.total}] {msg}  (t = {time.perf_counter() - self.t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _build_data(data_dir: Path, size: DemoSize, seed: int, progress: bool) -> None:
    """Build (or resume, or keep when already complete) the demo's dataset."""
    from nh_data.build import build_dataset

    build_dataset(data_dir, size.n_potentials, seed=seed, workers=2, ic=size.ic, times=size.times, overwrite=True,
                  progress=progress)  # fmt: skip


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process, its threads and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _is_demo_run(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "config.yaml").read_text().startswith("# nh train")


def _pretrained_predictions(folder: Path, device: str, progress: bool) -> list[dict[str, Any]]:
    """PRETRAINED_PREDICTIONS with their bands and plots into `folder`; one line each on stderr."""
    from .inference.predict_command import predict_command
    from .zoo import Pretrained

    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for name, spec, ic, label in PRETRAINED_PREDICTIONS:
        r = predict_command(Pretrained(name), spec, ic, out=folder / f"{label}.csv", plot=True, device=device)
        b = r["bands"]
        band = f"band at {b.level:g} q +-{b.half_q:.2g}" if b is not None else "no band"
        line = f"{name} on {r['potential']} from {ic}: {band}, max |H - H0| = {r['H'][1]:.2g} -> {r['plot']}"
        if progress:
            print(f"    {line}", file=sys.stderr, flush=True)
        done.append({"model": name, "potential": r["potential"], "csv": str(r["out"]), "plot": str(r["plot"])})
    return done


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    size: str = "small",
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Build data, train the two small models, evaluate; returns {"report", "metrics", "seconds", ...}."""
    from .devices import resolve_device
    from .evaluation.eval_command import EvalSettings, evaluate_runs
    from .training.config import CONFIG_DIR, load_config
    from .training.trainer import train

    if size not in SIZES:
        raise NHError(f"unknown demo size {size!r}; valid: {', '.join(SIZES)}")
    spec = SIZES[size]
    device = resolve_device(device)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NHError(f"{str(out)!r} exists and is not a folder")
    data_dir, physics_dir, runs_dir = out / "data", out / "physics", out / "runs"
    stage = _Stages(3 + len(DEMO_MODELS), progress)
    cpu0 = _cpu_seconds()

    configs = {}
    for name in DEMO_MODELS:  # check everything before writing anything
        overrides: dict[str, Any] = {"model": spec.model_overrides.get(name, {}), "train": {}}
        if name in spec.epochs:
            overrides["train"]["epochs"] = spec.epochs[name]
        if name in spec.time_limit:
            overrides["train"]["time_limit"] = spec.time_limit[name]
        configs[name] = load_config(name, CONFIG_DIR / f"{name}_small.yaml", overrides)
        run = runs_dir / name
        if run.exists() and not _is_demo_run(run):
            raise NHError(
                f"{run} exists and is not a run of an earlier demo; remove it or choose another --out"
            )

    stage(f"pretrained operators, before any training (nh predict --model ...) -> {out / 'pretrained'}")
    pretrained = _pretrained_predictions(out / "pretrained", device, progress)

    stage(f"dataset: {spec.n_potentials} potentials ({spec.ic} starts, {spec.times} times) -> {data_dir}")
    _build_data(data_dir, spec, seed, progress)

    run_dirs = []
    for name, config in configs.items():
        run = runs_dir / name
        if run.exists():  # an earlier demo's run (checked above): replace it
            shutil.rmtree(run)
        length = (f"{config['train']['time_limit']:g} min" if config["train"]["time_limit"] > 0
                  else f"{config['train']['epochs']} epochs")  # fmt: skip
        stage(f"training {name}_small ({length}, device {device}) -> {run}")
        train(name, config, data_dir, run, device=device, progress=progress)
        run_dirs.append(run)

    stage(f"evaluating {', '.join(DEMO_MODELS)} (test set, physics potentials, work-precision) -> {out}")
    settings = EvalSettings(
        n_sub=spec.n_sub, n_detj=spec.n_detj, repeats=spec.repeats, dts=spec.dts, seed=seed
    )
    metrics, report = evaluate_runs(
        [str(r) for r in run_dirs], data_dir, spec.physics, physics_dir, device, out, settings, progress
    )
    seconds = stage.elapsed
    summary = {
        "report": str(report),
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu0,
        "size": size,
        "runs": [str(r) for r in run_dirs],
        "pretrained": pretrained,
    }
    write_text_atomic(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    return {**summary, "metrics": metrics}
