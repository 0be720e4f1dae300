"""The operator networks of Neural Hamilton (the paper's five and SympONet) and their registry.

    model = get_model("mambonet")                 # paper configuration (SPEC section 8)
    model = get_model("traonet", {"d_model": 32})  # paper defaults <- given keys
    q, p = model(V, t, ic)                         # (B, 100), (B, W), (B, 2) -> (B, W), (B, W)
    get_model(model.name, dataclasses.asdict(model.config))  # the same architecture again

An unknown model name or config key raises `NHError` listing the valid ones. A model of the
user's own joins them with `register_model` (`plugins.py`, docs/extending.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any

from nh_data.errors import NHError

from . import plugins
from .base import N_SENSORS, OperatorModel
from .plugins import ENTRY_POINT_GROUP, Plugin, load_plugin

MODEL_NAMES = ("deeponet", "varonet", "traonet", "mambonet", "fno", "symponet")
# the models of the paper: those with a configuration in configs/paper/
PAPER_MODEL_NAMES = MODEL_NAMES[:5]

# name -> (module, config dataclass, model class); modules are imported on first use
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "deeponet": ("deeponet", "DeepONetConfig", "DeepONet"),
    "varonet": ("varonet", "VaRONetConfig", "VaRONet"),
    "traonet": ("traonet", "TraONetConfig", "TraONet"),
    "mambonet": ("mambonet", "MambONetConfig", "MambONet"),
    "fno": ("fno", "FNOConfig", "FNO"),
    "symponet": ("symponet", "SympONetConfig", "SympONet"),
}


def model_names() -> tuple[str, ...]:
    """Every model name: the built-in MODEL_NAMES, then the plug-ins (registered or installed)."""
    return MODEL_NAMES + tuple(n for n in plugins.names() if n not in _REGISTRY)


def registered_plugin(name: str) -> Plugin | None:
    """The plug-in registered as `name` (an installed entry point of that name is loaded); None for
    a built-in or unknown name."""
    return None if name in _REGISTRY else plugins.get(name)


def is_known_model(name: str) -> bool:
    """Whether `name` is a built-in model or a plug-in that is registered or installed."""
    return name in _REGISTRY or plugins.get(name) is not None


def register_model(
    name: str,
    model_class: type[OperatorModel],
    config_class: type,
    *,
    default_config: dict | str | os.PathLike | None = None,
    tune_space: str | os.PathLike | None = None,
) -> Plugin:
    """Register a model of your own under `name`, to be trained, evaluated and benchmarked like a
    built-in one. model_class: an OperatorModel subclass taking a `config_class` instance;
    config_class: a dataclass whose every field has a default (the defaults of `get_model(name)`).
    default_config: what `nh train NAME` uses without --config: {"model": {...}, "train": {...}}
    or a YAML file (None: the dataclass defaults and the trainer's). tune_space: the YAML search
    space of `nh tune NAME` (None: --space is needed). Registering the same class again is a no-op;
    a built-in name or one taken by another class is an NHError."""
    if name in _REGISTRY:
        raise NHError(f"register_model: {name!r} is a built-in model; register yours under another name")
    return plugins.add(name, model_class, config_class, default_config, tune_space)


def _check_name(name: str) -> None:
    if not is_known_model(name):
        raise NHError(
            f"unknown model {name!r}; valid models: {', '.join(model_names())} "
            "(a model of your own: --plugin MODULE, docs/extending.md)"
        )


def model_classes(name: str) -> tuple[type, type[OperatorModel]]:
    """(config dataclass, model class) registered under `name`."""
    _check_name(name)
    if name not in _REGISTRY:
        plugin = plugins.get(name)
        return plugin.config_class, plugin.model_class
    module_name, config_name, model_name = _REGISTRY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, config_name), getattr(module, model_name)


def model_config(name: str, config: dict[str, Any] | None = None) -> Any:
    """The typed config of model `name`: paper defaults overridden by the keys of `config`.

    Raises NHError for an unknown model name, an unknown key (listing the valid keys) or
    an invalid value.
    """
    config_cls, _ = model_classes(name)
    if config is not None and not isinstance(config, dict):
        raise NHError(f"the {name} config must be a mapping of keys to values, got {type(config).__name__}")
    config = dict(config or {})
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise NHError(
            f"unknown {name} config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(valid)}"
        )
    return config_cls(**config)


def get_model(name: str, config: dict[str, Any] | None = None) -> OperatorModel:
    """Build model `name` from `config` (None: the paper configuration)."""
    _, model_cls = model_classes(name)
    model = model_cls(model_config(name, config))
    if not model.name:  # a plug-in's class may leave its name to the registry
        model.name = name
    return model


__all__ = [
    "ENTRY_POINT_GROUP",
    "MODEL_NAMES",
    "PAPER_MODEL_NAMES",
    "N_SENSORS",
    "OperatorModel",
    "Plugin",
    "get_model",
    "is_known_model",
    "load_plugin",
    "model_classes",
    "model_config",
    "model_names",
    "register_model",
    "registered_plugin",
]
