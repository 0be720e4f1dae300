"""The operator networks of Neural Hamilton (the paper's five and SympONet) and their registry.

    model = get_model("mambonet")                 # paper configuration (SPEC section 8)
    model = get_model("traonet", {"d_model": 32})  # paper defaults <- given keys
    q, p = model(V, t, ic)                         # (B, 100), (B, W), (B, 2) -> (B, W), (B, W)
    get_model(model.name, dataclasses.asdict(model.config))  # the same architecture again

An unknown model name or config key raises `NHError` listing the valid ones. A built-in model
registers itself where it is defined (its class statement, `base.OperatorModel`): adding one is
adding a file here, found on first use. A model of the user's own joins them with
`register_model` (`plugins.py`, docs/extending.md).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import os
from pathlib import Path
from typing import Any

from nh_data.errors import NHError

from . import plugins
from .base import BUILT_IN, N_SENSORS, BuiltIn, OperatorModel
from .plugins import ENTRY_POINT_GROUP, Plugin, load_plugin


def _defines_a_model(path: Path) -> bool:
    """Whether the module's source holds a class statement that registers a model (`config=`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return any(
        isinstance(node, ast.ClassDef) and any(k.arg == "config" for k in node.keywords) for node in tree.body
    )


@functools.cache
def _built_in() -> dict[str, BuiltIn]:
    """The built-in models in MODEL_NAMES order: the modules of this package that define one are
    imported on first use (each model class registers itself in `base.BUILT_IN`)."""
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem not in ("__init__", "base", "plugins") and _defines_a_model(path):
            importlib.import_module(f"{__name__}.{path.stem}")
    return dict(sorted(BUILT_IN.items(), key=lambda item: (item[1].order, item[0])))


def __getattr__(name: str) -> tuple[str, ...]:
    # MODEL_NAMES: the built-in models; PAPER_MODEL_NAMES: those of the paper (a configuration in
    # configs/paper/). Computed on first use, which imports the model modules.
    if name == "MODEL_NAMES":
        return tuple(_built_in())
    if name == "PAPER_MODEL_NAMES":
        return tuple(n for n, b in _built_in().items() if b.paper)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_names() -> tuple[str, ...]:
    """Every model name: the built-in MODEL_NAMES, then the plug-ins (registered or installed)."""
    built_in = _built_in()
    return tuple(built_in) + tuple(n for n in plugins.names() if n not in built_in)


def registered_plugin(name: str) -> Plugin | None:
    """The plug-in registered as `name` (an installed entry point of that name is loaded); None for
    a built-in or unknown name."""
    return None if name in _built_in() else plugins.get(name)


def is_known_model(name: str) -> bool:
    """Whether `name` is a built-in model or a plug-in that is registered or installed."""
    return name in _built_in() or plugins.get(name) is not None


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
    if name in _built_in():
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
    built_in = _built_in().get(name)
    if built_in is None:
        plugin = plugins.get(name)
        return plugin.config_class, plugin.model_class
    return built_in.config_class, built_in.model_class


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
