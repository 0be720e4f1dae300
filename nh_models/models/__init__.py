"""The operator networks of Neural Hamilton (the paper's five and SympONet) and their registry.

    model = get_model("mambonet")                 # paper configuration (SPEC section 8)
    model = get_model("traonet", {"d_model": 32})  # paper defaults <- given keys
    q, p = model(V, t, ic)                         # (B, 100), (B, W), (B, 2) -> (B, W), (B, W)
    get_model(model.name, dataclasses.asdict(model.config))  # the same architecture again

An unknown model name or config key raises `NHError` listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from nh_data.errors import NHError

from .base import N_SENSORS, OperatorModel

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


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise NHError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")


def model_classes(name: str) -> tuple[type, type[OperatorModel]]:
    """(config dataclass, model class) registered under `name`."""
    _check_name(name)
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
    return model_cls(model_config(name, config))


__all__ = [
    "MODEL_NAMES",
    "PAPER_MODEL_NAMES",
    "N_SENSORS",
    "OperatorModel",
    "get_model",
    "model_classes",
    "model_config",
]
