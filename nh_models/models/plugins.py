"""Models of the user's own (plug-ins): the registry behind `register_model`, entry points, --plugin.

A plug-in model is an `OperatorModel` subclass with a config dataclass, registered under a
name; from then on `get_model`, `load_config`, `nh train/eval/tune/predict/calibrate` and
`bench/accuracy.py` treat it like a built-in model (docs/extending.md):

    from nh_models import OperatorModel, register_model
    register_model("my_mlp", MyMLP, MyMLPConfig, default_config={"model": {...}, "train": {...}})

Three ways to run that registration:

- call it (a notebook, a script);
- `--plugin MODULE` on the command line: a module name or a `.py` file, imported first;
- an installed package's entry point of group `neural_hamilton.models`, named like the model
  and pointing to the module that registers it (or to a function that does, called with no
  arguments). It is loaded the first time the name is asked for, never before.

A checkpoint keeps only the model's name, so loading one of a plug-in model needs the plug-in
loaded. Code is imported only where the user names it (the command line) or installed it (an
entry point); a config file never imports anything.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from nh_data.errors import NHError

from .base import OperatorModel

ENTRY_POINT_GROUP = "neural_hamilton.models"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_SECTIONS = ("model", "train")


@dataclass(frozen=True)
class Plugin:
    """One registered model of the user's own."""

    name: str
    model_class: type[OperatorModel]
    config_class: type
    default_config: dict[str, dict[str, Any]] | Path | None  # data, or a YAML file
    tune_space: Path | None  # a search space file of `nh tune`


_PLUGINS: dict[str, Plugin] = {}


def _file(value: str | os.PathLike, what: str, name: str) -> Path:
    path = Path(value).resolve()
    if not path.is_file():
        raise NHError(f"register_model({name!r}): {what} {str(value)!r} does not exist")
    return path


def _default_config(value: Any, name: str) -> dict[str, dict[str, Any]] | Path | None:
    """A registered default config: None, a YAML file, or data {"model": {...}, "train": {...}}."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return None if value is None else _file(value, "default_config file", name)
    if not isinstance(value, dict) or set(map(str, value)) - set(_SECTIONS):
        raise NHError(
            f"register_model({name!r}): default_config must be a YAML file or a mapping with sections model, train"
        )
    if any(not isinstance(value.get(s) or {}, dict) for s in _SECTIONS):
        raise NHError(f"register_model({name!r}): default_config sections model and train must be mappings")
    return {s: copy.deepcopy(dict(value.get(s) or {})) for s in _SECTIONS}


def _same_class(a: type, b: type) -> bool:
    """The same class, or the same class imported again (a module loaded twice)."""
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def add(
    name: str,
    model_class: type,
    config_class: type,
    default_config: dict | str | os.PathLike | None = None,
    tune_space: str | os.PathLike | None = None,
) -> Plugin:
    """Check and register a plug-in (see `nh_models.models.register_model`); NHError on bad input."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise NHError(f"register_model: a model name is a letter then letters, digits, _ or -, got {name!r}")
    if not (isinstance(model_class, type) and issubclass(model_class, OperatorModel)):
        raise NHError(f"register_model({name!r}): model_class must be a subclass of nh_models.OperatorModel")
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise NHError(f"register_model({name!r}): config_class must be a dataclass")
    try:
        config_class()
    except Exception as exc:
        raise NHError(
            f"register_model({name!r}): {config_class.__name__}() must build with no arguments "
            f"(a default for every field): {type(exc).__name__}: {exc}"
        ) from None
    if model_class.name not in ("", name):
        raise NHError(f"register_model({name!r}): {model_class.__name__}.name is {model_class.name!r}")
    old = _PLUGINS.get(name)
    if old is not None and not _same_class(old.model_class, model_class):
        raise NHError(
            f"register_model({name!r}): the name is taken by {old.model_class.__module__}."
            f"{old.model_class.__qualname__}"
        )
    space = None if tune_space is None else _file(tune_space, "tune_space file", name)
    plugin = Plugin(name, model_class, config_class, _default_config(default_config, name), space)
    _PLUGINS[name] = plugin
    return plugin


# ----------------------------------------------------------------- entry points


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _where(exc: BaseException) -> str:
    """' (file:line)' of the innermost frame of the user's code in an exception, for a one-line message."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<") and "importlib" not in f.filename and f.filename != __file__
    ]
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _load_entry_point(ep: metadata.EntryPoint) -> None:
    what = f"plug-in model {ep.name!r} (entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP})"
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, type):
            obj()
    except NHError as exc:
        raise NHError(f"{what}: {exc}") from None
    except Exception as exc:
        raise NHError(f"{what} failed to load: {type(exc).__name__}: {exc}{_where(exc)}") from None
    if ep.name not in _PLUGINS:
        raise NHError(f"{what} was loaded but registered no model named {ep.name!r}")


def get(name: str) -> Plugin | None:
    """The plug-in registered as `name`, loading an installed entry point of that name first; None if none."""
    if name in _PLUGINS:
        return _PLUGINS[name]
    found = [ep for ep in _entry_points() if ep.name == name]
    if len(found) > 1:
        raise NHError(
            f"plug-in model {name!r} has {len(found)} entry points in group {ENTRY_POINT_GROUP}: "
            f"{', '.join(ep.value for ep in found)}; uninstall all but one"
        )
    if not found:
        return None
    _load_entry_point(found[0])
    return _PLUGINS[name]


def names() -> list[str]:
    """The registered plug-ins and those installed as entry points (not loaded), sorted."""
    return sorted(set(_PLUGINS) | {ep.name for ep in _entry_points()})


# ----------------------------------------------------------------- --plugin MODULE


def _import_file(path: Path) -> ModuleType:
    """Import the Python file `path` as the module named like its stem (kept in sys.modules)."""
    name = path.stem
    old = sys.modules.get(name)
    if old is not None and getattr(old, "__file__", None) and Path(old.__file__).resolve() == path:
        return old  # imported before: registering again would be a no-op
    if not name.isidentifier():
        raise NHError(f"--plugin {str(path)!r}: the file name must be a Python module name")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if old is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = old
        raise
    return module


def load_plugin(spec: str) -> ModuleType:
    """Import the user's module `spec` (`--plugin`): a `.py` file or a dotted module name (looked for
    on sys.path, then in the current folder). Its import registers its models. NHError, one line,
    when it cannot be imported or raises."""
    spec = str(spec).strip()
    path = Path(spec)
    try:
        if spec.endswith(".py") or os.sep in spec or path.is_file():
            if not path.is_file():
                raise NHError(f"--plugin {spec!r}: no such file")
            return _import_file(path.resolve())
        try:
            return importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            top = spec.split(".")[0]
            if exc.name != top or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())  # `nh` (a console script) does not look in the current folder
            return importlib.import_module(spec)
    except NHError as exc:
        raise NHError(str(exc) if str(exc).startswith("--plugin") else f"--plugin {spec!r}: {exc}") from None
    except Exception as exc:
        raise NHError(
            f"--plugin {spec!r} failed to import: {type(exc).__name__}: {exc}{_where(exc)}"
        ) from None
