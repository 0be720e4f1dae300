"""`nh tune`: Optuna (TPE) hyperparameter search with pruning, resumable.

The objective only builds a config (the base config <- one sample of the
search space), runs the trainer and returns the best validation loss; the
trainer's `epoch_callback` reports each epoch's validation loss to Optuna,
whose `MedianPruner` may stop the trial. A trial that raises, or whose loss is
not finite, is recorded as failed and the study goes on.

Search space files (`configs/<model>_tune.yaml`), one entry per parameter,
grouped like a config:

    model:
      nodes: {type: int, low: 64, high: 512, step: 64}
      branches: {type: categorical, choices: [10, 20, 32]}
    train:
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}

Each trial trains for the base config's budget unless told otherwise: `time_limit` minutes
(default DEFAULT_TRIAL_MINUTES when the base config has a time limit, as the recommended
recipes do, so that a small study takes minutes, not hours of 10-minute trials), `epochs`,
or both (at most `epochs` within the time limit). Off a terminal it prints one line per
trial: its result, the trials done, the best value so far and an ETA.

The study lives in an Optuna storage (default `sqlite:///runs/tune.db`): the
same command with the same storage and study name continues it, adding N
trials. The best configuration is written to `<out>/best.yaml`, which
`nh train MODEL --config <out>/best.yaml` accepts.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nh_data.errors import NHError
from nh_data.fileio import write_text_atomic

from ..devices import resolve_device
from .command import DEFAULT_STORAGE
from .config import check_keys, check_sections, load_yaml, parse_number

PARAM_TYPES = ("int", "float", "categorical")
_ENTRY_KEYS = {
    "int": {"type", "low", "high", "step", "log"},
    "float": {"type", "low", "high", "step", "log"},
    "categorical": {"type", "choices"},
}


#: minutes per trial when the base config has a time limit and neither --time-limit nor --epochs is given
DEFAULT_TRIAL_MINUTES = 1.0


class NonFiniteLoss(RuntimeError):
    """A trial's validation loss became NaN or infinite."""


def default_space_path(model_name: str) -> Path:
    from ..models import registered_plugin
    from .config import CONFIG_DIR

    plugin = registered_plugin(model_name)
    if plugin is not None:
        if plugin.tune_space is None:
            raise NHError(f"plug-in model {model_name!r} registered no search space (tune_space); pass --space FILE")
        return plugin.tune_space
    return CONFIG_DIR / f"{model_name}_tune.yaml"


def read_space(path: str | os.PathLike) -> dict[str, dict[str, dict[str, Any]]]:
    """Read and check a search space file; returns {"model": {key: entry}, "train": {key: entry}}.

    A relative path that does not exist names a packaged one (`configs/deeponet_tune.yaml`,
    `deeponet_tune`)."""
    from .config import find_config

    path = find_config(path, "search space file")
    data = load_yaml(path, "search space file")
    if not isinstance(data, dict) or not data:
        raise NHError(f"search space file {str(path)!r} must map sections model/train to parameters")
    check_sections(data, path, "search space file")
    space: dict[str, dict[str, dict[str, Any]]] = {"model": {}, "train": {}}
    for section, params in data.items():
        if params is None:
            continue
        if not isinstance(params, dict):
            raise NHError(f"search space {path.name}: section {section!r} must be a mapping")
        for key, entry in params.items():
            where = f"search space {path.name}: {section}.{key}"
            if not isinstance(entry, dict) or entry.get("type") not in PARAM_TYPES:
                raise NHError(f"{where} needs a mapping with type one of {', '.join(PARAM_TYPES)}")
            kind = entry["type"]
            extra = sorted(set(entry) - _ENTRY_KEYS[kind])
            if extra:
                raise NHError(
                    f"{where}: unknown field {extra[0]!r}; valid: {', '.join(sorted(_ENTRY_KEYS[kind]))}"
                )
            entry = dict(entry)
            if kind == "categorical":
                if not isinstance(entry.get("choices"), list) or not entry["choices"]:
                    raise NHError(f"{where}: choices must be a non-empty list")
            else:
                if "low" not in entry or "high" not in entry:
                    raise NHError(f"{where}: needs low and high")
                cast = int if kind == "int" else float
                for f in ("low", "high", "step"):
                    if f in entry:
                        entry[f] = cast(parse_number(entry[f], f"{where}.{f}"))
                if not entry["low"] <= entry["high"]:
                    raise NHError(f"{where}: low must be <= high")
                if entry.get("log") and entry["low"] <= 0:
                    raise NHError(f"{where}: a log scale needs low > 0")
            space[section][str(key)] = entry
    if not space["model"] and not space["train"]:
        raise NHError(f"search space file {str(path)!r} defines no parameters")
    return space


def sample(trial, space: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One draw of the search space as nested overrides {"model": {...}, "train": {...}}."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for section, params in space.items():
        for key, e in params.items():
            name = f"{section}.{key}"
            if e["type"] == "categorical":
                out[section][key] = trial.suggest_categorical(name, e["choices"])
            elif e["type"] == "int":
                out[section][key] = trial.suggest_int(
                    name, e["low"], e["high"], step=e.get("step", 1), log=bool(e.get("log", False))
                )
            else:
                out[section][key] = trial.suggest_float(
                    name, e["low"], e["high"], step=e.get("step"), log=bool(e.get("log", False))
                )
    return out


def _storage_url(storage: str) -> str:
    """Create the folder of a sqlite storage; reject what Optuna cannot open."""
    if storage.startswith("sqlite:///"):
        path = Path(storage[len("sqlite:///") :])
        if not path.name:
            raise NHError(f"storage {storage!r} names no database file")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.is_dir():
            raise NHError(f"storage {storage!r} is a directory, not a database file")
        return storage
    if "://" not in storage:
        raise NHError(f"storage must be a database URL such as sqlite:///runs/tune.db, got {storage!r}")
    return storage


def _trials_csv(study) -> str:
    buf = io.StringIO()
    names = sorted({k for t in study.trials for k in t.params})
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", "value", "last_epoch", "seconds", *names, "error"])
    for t in study.trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else ""
        last = max(t.intermediate_values) if t.intermediate_values else ""
        w.writerow(
            [
                t.number,
                t.state.name,
                "" if t.value is None else repr(t.value),
                last,
                seconds,
                *[t.params.get(n, "") for n in names],
                t.user_attrs.get("error", ""),
            ]
        )
    return buf.getvalue()


def trial_budget(base_train: dict[str, Any], epochs: int | None, time_limit: float | None
                 ) -> tuple[dict[str, Any], int | None, str]:  # fmt: skip
    """What bounds every trial: (train overrides, max_epochs for the trainer, a description).

    Given values win over the base config: time_limit and epochs together mean at most
    `epochs` within the time limit; epochs alone turn the base config's time limit off;
    neither: DEFAULT_TRIAL_MINUTES if the base config has a time limit, else its epochs."""
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or not math.isfinite(time_limit) or time_limit <= 0):  # fmt: skip
        raise NHError(f"--time-limit must be a number of minutes > 0, got {time_limit!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise NHError(f"--epochs must be an integer >= 1, got {epochs!r}")
    if time_limit is None and epochs is None:
        if base_train["time_limit"] <= 0:
            return {}, None, f"{base_train['epochs']} epochs each (the base config's)"
        time_limit = DEFAULT_TRIAL_MINUTES
    if time_limit is None:
        return {"epochs": epochs, "time_limit": 0.0}, None, f"{epochs} epochs each"
    fixed: dict[str, Any] = {"time_limit": float(time_limit)}
    if epochs is None:
        return fixed, None, f"{time_limit:g} min each"
    return {**fixed, "epochs": epochs}, epochs, f"at most {epochs} epochs in {time_limit:g} min each"


class TrialLog:
    """The progress of `nh tune` (an Optuna callback): a bar on a terminal, and one line per
    finished trial: its state, value and parameters, the trials done, the best value so far
    (and its trial) and an ETA from this call's mean time per trial."""

    def __init__(self, n_trials: int, study_name: str, enabled: bool) -> None:
        from nh_data.progress import bar

        self.n, self.done, self.enabled = n_trials, 0, enabled
        self.bar = bar(n_trials, desc=f"tune {study_name}", unit="trial", enabled=enabled, final=False)
        self.start = time.perf_counter()

    def __call__(self, study, trial) -> None:
        from nh_data.progress import format_seconds, write

        self.done += 1
        self.bar.update()
        if not self.enabled:
            return
        value = "" if trial.value is None else f" val {trial.value:.4e}"
        err = trial.user_attrs.get("error", "")
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        best = min(complete, key=lambda t: t.value) if complete else None
        best_text = f"best {best.value:.4e} (trial {best.number})" if best else "no trial completed yet"
        left = (time.perf_counter() - self.start) / self.done * (self.n - self.done)
        eta = f", ETA {format_seconds(left)}" if self.done < self.n else ""
        write(f"trial {trial.number}: {trial.state.name}{value} ({params}){' ' + err if err else ''} | "
              f"{self.done}/{self.n} done, {best_text}{eta}")  # fmt: skip
        if best:
            self.bar.set_postfix(best=f"{best.value:.3e}")

    def close(self) -> None:
        self.bar.close()


def tune(
    model_name: str,
    n_trials: int,
    data_dir: str | os.PathLike,
    *,
    storage: str = DEFAULT_STORAGE,
    study_name: str | None = None,
    out_dir: str | os.PathLike | None = None,
    epochs: int | None = None,
    time_limit: float | None = None,
    base_config: str | os.PathLike | None = None,
    space_path: str | os.PathLike | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or continue) an Optuna study of `n_trials` more trials; write best.yaml and trials.csv.

    base_config: YAML the samples are laid over (default: configs/<model>.yaml);
    space_path: search space (default: configs/<model>_tune.yaml); time_limit (minutes)
    and epochs: what bounds each trial (`trial_budget`). Returns a summary dict.

    The phases: `_plan_study` (every input checked), `_open_study` (created or resumed),
    `_run_trials` (each trial trains a run, `_objective`), `_write_results`.
    """
    plan = _plan_study(model_name, n_trials, data_dir, study_name, out_dir, epochs, time_limit, base_config,
                       space_path, device, seed)  # fmt: skip
    plan.storage = _storage_url(storage)
    study = _open_study(plan)
    _run_trials(plan, study, progress)
    return _write_results(plan, study)


@dataclass
class _Study:
    """The checked inputs of one `tune` call."""

    model_name: str
    n_trials: int
    data_dir: str | os.PathLike
    study_name: str
    out: Path
    space: dict[str, dict[str, dict[str, Any]]]
    base_config: str | os.PathLike | None
    fixed: dict[str, Any]  # train keys every trial gets (its budget)
    max_epochs: int | None
    budget: str  # the budget in words
    device: str
    seed: int
    storage: str = ""

    def build(self, sampled: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The config of a trial: the base config <- the sampled values <- the budget."""
        from .config import load_config

        overrides = {"model": dict(sampled["model"]), "train": {**sampled["train"], **self.fixed}}
        return load_config(self.model_name, self.base_config, overrides)


def _plan_study(model_name, n_trials, data_dir, study_name, out_dir, epochs, time_limit, base_config, space_path,
                device, seed) -> _Study:  # fmt: skip
    """Fail fast on user errors: the model, a bad base config or budget, space keys the config
    does not have, missing data, an unusable device."""
    from ..data import ShardDataset
    from ..models import is_known_model, model_config, model_names
    from .config import TRAIN_KEYS, load_config

    if not is_known_model(model_name):
        raise NHError(f"unknown model {model_name!r}; valid: {', '.join(model_names())}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise NHError(f"--trials must be an integer >= 1, got {n_trials!r}")
    study_name = study_name or model_name
    out = Path(out_dir) if out_dir is not None else Path("runs") / "tune" / study_name
    space = read_space(space_path if space_path is not None else default_space_path(model_name))
    fixed, max_epochs, budget = trial_budget(load_config(model_name, base_config)["train"], epochs, time_limit)
    load_config(model_name, base_config, {"train": fixed})
    model_keys = {f.name for f in dataclasses.fields(type(model_config(model_name, None)))}
    for section, valid in (("model", model_keys), ("train", set(TRAIN_KEYS))):
        check_keys(space[section], tuple(sorted(valid)), f"{section} key", prefix="search space: ")
    for split in ("train", "val"):
        ShardDataset(data_dir, split)
    resolve_device(device)  # cuda without CUDA: one error now, not a failed study
    return _Study(model_name, n_trials, data_dir, study_name, out, space, base_config, fixed, max_epochs, budget,
                  device, seed)  # fmt: skip


def _open_study(plan: _Study):
    """The Optuna study `plan.study_name` in `plan.storage`, created or continued (for the same
    model only), with a fresh TPE sampler seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    try:
        # heartbeats: a trial whose process was killed is marked failed when the study next runs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(plan.storage, heartbeat_interval=30, grace_period=90)
        study = optuna.create_study(
            study_name=plan.study_name, storage=rdb, direction="minimize", load_if_exists=True, pruner=pruner
        )
    except Exception as exc:  # bad URL, unreadable database, ...
        raise NHError(f"cannot open Optuna storage {plan.storage!r}: {' '.join(str(exc).split())[:200]}") from None
    owner = study.user_attrs.get("model")
    if owner is None:
        study.set_user_attr("model", plan.model_name)
    elif owner != plan.model_name:
        raise NHError(
            f"study {plan.study_name!r} in {plan.storage} tunes {owner!r}, not {plan.model_name!r}; "
            "choose another --study"
        )
    # a fresh sampler seed per call, so that a resumed study does not redraw its first trials
    study.sampler = optuna.samplers.TPESampler(seed=plan.seed + len(study.trials), n_startup_trials=5)
    return study


def _objective(plan: _Study, trial) -> float:
    """One trial: sample a config, train it in its own run folder (each epoch's validation loss
    reported for pruning), return its best validation loss."""
    import optuna

    from .trainer import train

    config = plan.build(sample(trial, plan.space))
    trial.set_user_attr("config", config)
    trials_dir = plan.out / "trials"
    run_dir = trials_dir / f"trial_{trial.number:04d}"
    k = 1
    while run_dir.exists():  # a leftover of an earlier study with this output folder
        run_dir = trials_dir / f"trial_{trial.number:04d}_{k}"
        k += 1
    trial.set_user_attr("run_dir", str(run_dir))

    def report(epoch: int, val_loss: float) -> None:
        if not math.isfinite(val_loss):
            raise NonFiniteLoss(f"validation loss {val_loss} at epoch {epoch}")
        trial.report(val_loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (val loss {val_loss:.3e})")

    metrics = train(plan.model_name, config, plan.data_dir, run_dir, device=plan.device, epoch_callback=report,
                    progress=False, max_epochs=plan.max_epochs)  # fmt: skip
    best = metrics.get("best_val_loss")
    if best is None or not math.isfinite(best):
        raise NonFiniteLoss(f"best validation loss is {best}")
    return float(best)


def _run_trials(plan: _Study, study, progress: bool) -> None:
    """`plan.n_trials` more trials; a trial that raises is recorded (its error as a user
    attribute) and the study goes on."""
    import optuna

    def wrapped(trial) -> float:
        try:
            return _objective(plan, trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            raise

    if progress:
        minutes = plan.fixed.get("time_limit", 0.0)
        about = f", about {plan.n_trials * minutes:g} min of training" if minutes else ""
        print(f"study {plan.study_name!r} in {plan.storage}: {len(study.trials)} trials so far, running "
              f"{plan.n_trials} more, {plan.budget}{about}", file=sys.stderr, flush=True)  # fmt: skip
    log = TrialLog(plan.n_trials, plan.study_name, progress)
    try:
        study.optimize(wrapped, n_trials=plan.n_trials, catch=(Exception,), callbacks=[log], gc_after_trial=True)
    finally:
        log.close()


def _write_results(plan: _Study, study) -> dict[str, Any]:
    """trials.csv, best.yaml (when a trial completed) and summary.json in `plan.out`; the summary."""
    from .config import dump_config

    out = plan.out
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "trials.csv", _trials_csv(study))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    summary: dict[str, Any] = {
        "study": plan.study_name,
        "storage": plan.storage,
        "model": plan.model_name,
        "n_trials": len(study.trials),
        "states": states,
        "best_yaml": None,
    }
    if complete:
        best = study.best_trial
        header = (
            f"# nh tune {plan.model_name}: best of {len(study.trials)} trials in study {plan.study_name!r} "
            f"(trial {best.number}, best val loss {best.value:.6e})\n"
        )
        write_text_atomic(out / "best.yaml", header + dump_config(best.user_attrs["config"]))
        summary.update(
            best_value=best.value,
            best_trial=best.number,
            best_params=best.params,
            best_yaml=str(out / "best.yaml"),
            best_run=best.user_attrs.get("run_dir"),
        )
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    if not complete:
        raise NHError(f"no trial of study {plan.study_name!r} completed ({states}); see {out / 'trials.csv'}")
    return summary

