"""Resolved run configurations: defaults <- YAML file <- overrides.

A config is plain data, `{"model": {...}, "train": {...}}`:

- `model`: the keys of the model's config dataclass (nh_models.models), paper defaults;
- `train`: epochs, batch_size, lr, infimum_lr, weight_decay, grad_clip, seed, bf16,
  compile, num_workers, dtype (SPEC section 8 values by default), and the levers beyond
  the paper: schedule, warmup, loss, time_limit, max_steps, fresh, fresh_reuse.

Config files ship in the package: `nh_models/configs/<model>.yaml` is the recommended
recipe (what `nh train MODEL` uses), `nh_models/configs/paper/<model>.yaml` the paper's
configuration unchanged; `configs/` at the repository root links to the same folder.

    cfg = load_config("deeponet")                                   # configs/deeponet.yaml if present
    cfg = load_config("deeponet", "configs/deeponet_small.yaml", {"epochs": 5})
    cfg = load_config("deeponet", "paper/deeponet")                 # the packaged copy, from any folder

YAML is read with `yaml.safe_load`. Unknown sections or keys raise NHError naming the
key and listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from nh_data.errors import NHError

from .tracking import LOGGERS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PAPER_CONFIG_DIR = CONFIG_DIR / "paper"
SECTIONS = ("model", "train")

# SPEC section 8: tuned learning rates of the paper (FNO: the later reference versions)
PAPER_LR = {"deeponet": 7.3e-3, "traonet": 1.5e-3, "varonet": 8.7e-4, "mambonet": 1e-3, "fno": 1e-3}

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 250,
    "batch_size": 100,
    "lr": 1e-3,  # replaced by PAPER_LR[model]
    "infimum_lr": 1e-5,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "seed": 89,
    "bf16": False,
    "compile": False,
    "num_workers": 0,
    "dtype": "float32",
    # beyond the paper (defaults keep the paper's trainer); see nh_models/training/trainer.py
    "schedule": "exp_hyperbolic",  # per epoch (the paper) | cosine: per step, after `warmup`
    "warmup": 0.0,  # fraction of the steps with a linear warm-up (cosine schedule)
    "loss": "mse",  # training objective: mse (the paper's) | logcosh (v1.33) | logmse; val/test are MSE
    "time_limit": 0.0,  # minutes of training; > 0 plans epochs/max_steps to fill them
    "max_steps": 0,  # optimizer steps in all (0: epochs x steps per epoch)
    "fresh": 0,  # > 0: every epoch trains on this many fresh potentials drawn like the data's
    "fresh_reuse": 1,  # passes over each fresh set
    "log": "none",  # training logs: none | tensorboard (RUN/tensorboard) | wandb (offline unless logged in)
}
TRAIN_KEYS = tuple(TRAIN_DEFAULTS)
DTYPES = ("float32", "float64")
SCHEDULES = ("exp_hyperbolic", "cosine")
LOSSES = ("mse", "logcosh", "logmse")


def default_config_path(model_name: str) -> Path | None:
    """The recommended recipe `nh_models/configs/<model>.yaml` (shipped in the package), if it
    exists; the paper's configurations are in `nh_models/configs/paper/`. A plug-in model's:
    the YAML file it registered, if any (`plugin_default_config` for one registered as data)."""
    from nh_models.models import registered_plugin

    plugin = registered_plugin(model_name)
    if plugin is not None:
        return plugin.default_config if isinstance(plugin.default_config, Path) else None
    path = CONFIG_DIR / f"{model_name}.yaml"
    return path if path.is_file() else None


def find_config(path: str | os.PathLike, what: str = "config file") -> Path:
    """A config (or search space) file: `path` itself when it exists; else, for a relative path,
    the packaged copy in CONFIG_DIR, so that `configs/paper/deeponet.yaml`, `paper/deeponet.yaml`
    and `paper/deeponet` work from any folder. NHError when neither exists."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    rel = Path(*given.parts[1:]) if given.parts[0] == "configs" and len(given.parts) > 1 else given
    for candidate in (CONFIG_DIR / rel, CONFIG_DIR / rel.with_name(rel.name + ".yaml")):
        if candidate.is_file():
            return candidate
    raise NHError(f"{what} {str(given)!r} does not exist, here or among the packaged configs in {CONFIG_DIR}")


def plugin_default_config(model_name: str) -> dict | None:
    """The default config a plug-in model registered as data (a copy), or None."""
    from nh_models.models import registered_plugin

    plugin = registered_plugin(model_name)
    if plugin is None or not isinstance(plugin.default_config, dict):
        return None
    return {s: dict(plugin.default_config[s]) for s in SECTIONS}


def load_yaml(path: Path, what: str) -> Any:
    """The YAML file `path` through the safe loader; a missing or malformed file is one
    NHError naming it as `what` ("config file", "search space file")."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NHError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, yaml.YAMLError) as exc:
        raise NHError(f"{what} {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from None


def check_keys(given: Iterable, valid: tuple[str, ...], noun: str, plural: str = "keys", prefix: str = "") -> None:
    """NHError "<prefix>unknown <noun> 'k'; valid <plural>: ..." for the first (sorted) key of
    `given` outside `valid`; the one unknown-key check of the configs."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise NHError(f"{prefix}unknown {noun} {unknown[0]!r}; valid {plural}: {', '.join(valid)}")


def check_sections(data: dict, path: Path, what: str) -> None:
    """NHError for a top-level key of `data` other than the SECTIONS (model, train)."""
    check_keys(map(str, data), SECTIONS, "section", "sections", prefix=f"{what} {str(path)!r}: ")


def read_yaml(path: str | os.PathLike) -> dict:
    """A config file as a dict with only the sections `model` and `train` (both optional)."""
    path = Path(path)
    data = load_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NHError(f"config file {str(path)!r} must hold a mapping with sections: {', '.join(SECTIONS)}")
    check_sections(data, path, "config file")
    for section in SECTIONS:
        if data.get(section) is None:
            data[section] = {}
        elif not isinstance(data[section], dict):
            raise NHError(f"config file {str(path)!r}: section {section!r} must be a mapping")
    return data


# ----------------------------------------------------------------- validation of `train`


def _as_int(key: str, value: Any, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != int(value)
        or value < minimum
    ):
        raise NHError(f"train.{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def parse_number(value: Any, where: str) -> int | float:
    """A finite number from a YAML value (`where` names it in the error); a numeric
    string is converted, since PyYAML reads 1e-3 (no dot) as a string."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise NHError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NHError(f"{where} must be a finite number, got {value!r}")
    return value


def _as_float(key: str, value: Any, *, positive: bool) -> float:
    value = parse_number(value, f"train.{key}")
    if value < 0 or (positive and value == 0):
        raise NHError(f"train.{key} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _as_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise NHError(f"train.{key} must be true or false, got {value!r}")
    return value


def validate_train(train: dict[str, Any]) -> dict[str, Any]:
    """Checked and normalised copy of a complete `train` section."""
    check_keys(train, TRAIN_KEYS, "train config key")
    out = {
        "epochs": _as_int("epochs", train["epochs"], 1),
        "batch_size": _as_int("batch_size", train["batch_size"], 1),
        "lr": _as_float("lr", train["lr"], positive=True),
        "infimum_lr": _as_float("infimum_lr", train["infimum_lr"], positive=True),
        "weight_decay": _as_float("weight_decay", train["weight_decay"], positive=False),
        "grad_clip": _as_float("grad_clip", train["grad_clip"], positive=False),
        "seed": _as_int("seed", train["seed"], 0),
        "bf16": _as_bool("bf16", train["bf16"]),
        "compile": _as_bool("compile", train["compile"]),
        "num_workers": _as_int("num_workers", train["num_workers"], 0),
        "dtype": train["dtype"],
        "schedule": train["schedule"],
        "warmup": _as_float("warmup", train["warmup"], positive=False),
        "loss": train["loss"],
        "time_limit": _as_float("time_limit", train["time_limit"], positive=False),
        "max_steps": _as_int("max_steps", train["max_steps"], 0),
        "fresh": _as_int("fresh", train["fresh"], 0),
        "fresh_reuse": _as_int("fresh_reuse", train["fresh_reuse"], 1),
        "log": train["log"],
    }
    for key, valid in (("schedule", SCHEDULES), ("loss", LOSSES), ("log", LOGGERS)):
        if out[key] not in valid:
            raise NHError(f"train.{key} must be one of {', '.join(valid)}, got {out[key]!r}")
    if out["warmup"] >= 1:
        raise NHError(f"train.warmup is a fraction of the steps and must be < 1, got {out['warmup']!r}")
    if out["dtype"] not in DTYPES:
        raise NHError(f"train.dtype must be one of {', '.join(DTYPES)}, got {out['dtype']!r}")
    if out["infimum_lr"] >= out["lr"]:
        raise NHError(f"train.infimum_lr ({out['infimum_lr']}) must be smaller than train.lr ({out['lr']})")
    return out


def _split_overrides(model_keys: list[str], overrides: dict[str, Any]) -> tuple[dict, dict]:
    """Overrides as (model, train) dicts: nested sections, or flat keys of either section.

    Keys whose value is None (an option the user did not give) are ignored.
    """
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, dict):
            target = model if key == "model" else train
            target.update({k: v for k, v in value.items() if v is not None})
        elif value is None:
            continue
        elif key in TRAIN_KEYS:
            train[key] = value
        elif key in model_keys:
            model[key] = value
        else:
            raise NHError(
                f"unknown config key {key!r}; valid keys: {', '.join(TRAIN_KEYS)} (train), "
                f"{', '.join(model_keys)} (model)"
            )
    return model, train


def resolve_config(model_name: str, config: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Defaults <- `config` (nested `{"model": ..., "train": ...}`, either section optional), checked.

    No config file is read. Used to complete and validate a config handed to the trainer.
    """
    config = dict(config or {})
    check_keys(map(str, config), SECTIONS, "config section", "sections")
    for section in SECTIONS:
        if not isinstance(config.get(section) or {}, dict):
            raise NHError(f"config section {section!r} must be a mapping")
    return _resolve(model_name, [config.get("model") or {}], [config.get("train") or {}])


def _resolve(model_name: str, models: list[dict], trains: list[dict]) -> dict[str, dict[str, Any]]:
    """Paper defaults <- each dict of `models` / `trains` in turn, validated."""
    from nh_models.models import model_config  # validates the model name and keys

    defaults_model = dataclasses.asdict(model_config(model_name, None))
    model: dict[str, Any] = {}
    train = dict(TRAIN_DEFAULTS, lr=PAPER_LR.get(model_name, TRAIN_DEFAULTS["lr"]))
    for layer in models:
        model.update(layer)
    for layer in trains:
        check_keys(layer, TRAIN_KEYS, "train config key")
        train.update(layer)
    for key, value in model.items():  # PyYAML reads 1e-3 (no dot) as a string
        if isinstance(defaults_model.get(key), float) and isinstance(value, str):
            try:
                model[key] = float(value)
            except ValueError:
                pass  # the model's own check names the bad value
    model_cfg = _plain(dataclasses.asdict(model_config(model_name, model)))
    return {"model": model_cfg, "train": validate_train(train)}


def load_config(
    model_name: str,
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The fully resolved `{"model": {...}, "train": {...}}` of a run.

    Layers, each overriding the one before: the model's paper defaults and TRAIN_DEFAULTS
    (with the model's tuned learning rate); the YAML file `path` (default
    `configs/<model>.yaml` when it exists; a plug-in's: the default config it registered);
    `overrides`, either nested `{"model": {...}, "train": {...}}` or flat keys of either
    section (None values are skipped, so CLI options that were not given can be passed as None).
    A relative `path` that does not exist names a packaged config (`configs/paper/deeponet.yaml`,
    `paper/deeponet`: `find_config`).
    """
    from nh_models.models import model_config  # validates the model name and keys

    model_keys = [f.name for f in dataclasses.fields(type(model_config(model_name, None)))]
    models: list[dict] = []
    trains: list[dict] = []
    file = find_config(path) if path is not None else default_config_path(model_name)
    data = read_yaml(file) if file is not None else plugin_default_config(model_name)
    if data is not None:
        where = f"config file {str(file)!r}" if file is not None else f"default config of {model_name}"
        check_keys(data["train"], TRAIN_KEYS, "train key", prefix=f"{where}: ")
        models.append(data["model"])
        trains.append(data["train"])
    if overrides:
        o_model, o_train = _split_overrides(model_keys, overrides)
        models.append(o_model)
        trains.append(o_train)
    return _resolve(model_name, models, trains)


def _plain(obj: Any) -> Any:
    """Tuples -> lists, recursively (YAML- and checkpoint-friendly plain data)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def dump_config(config: dict[str, Any]) -> str:
    """YAML text of a resolved config (readable back with `load_config(name, path)`)."""
    return yaml.safe_dump({s: _plain(config[s]) for s in SECTIONS}, sort_keys=False, default_flow_style=False)
