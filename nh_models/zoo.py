"""Pretrained operators shipped with the package: `nh models`, `--model NAME`, `load_pretrained`.

An entry is two files in `nh_models/pretrained/` and one shared test sample:

    NAME.safetensors   the weights (safetensors: tensors only, no pickle, no code)
    NAME.json.gz       the card, plain data (JSON, gzip-compressed: its calibration holds every
                       sorted score of every window, megabytes as text): the network and its resolved config, the recipe
                       (config file, training seed, time limit), the training data (preset, ic,
                       times, seed), metrics (test loss on the whole test split of that data, and
                       on the shipped sample), the calibration (the run's calibration.json, as
                       is), the weights' sha256 and size
    samples/DATA.npz   a seeded sample of that data's test split (V, t, ic, q, p): the card's
                       `sample_loss` is reproduced on it (tests/test_zoo.py)

Loading checks the weights' size and sha256 against the card before safetensors reads a byte
of them: a tampered or truncated file is an NHError naming it. The recipes (what `nh models
build NAME` trains to make an entry again) are data too: `pretrained/recipes.json`.

    model, calibration, meta = load_pretrained("deeponet-strata")
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nh_data.build import DEFAULT_SEED as DEFAULT_DATA_SEED
from nh_data.errors import NHError
from nh_data.fileio import atomic_write, sha256_file

ZOO_DIR = Path(__file__).parent / "pretrained"
RECIPES = "recipes.json"
CARD = ".json.gz"  # a card's file: NAME + CARD
FORMAT = "nh-pretrained"
VERSION = 1
SAMPLE_ORBITS = 256  # test orbits per shipped sample
SAMPLE_SEED = 0
MAX_ZOO_BYTES = 25 * 2**20  # the whole zoo (weights, cards, samples) stays under this
DATA_ROOT = "parquet_data"  # where `nh models build` keeps the recipes' data folders


PREFIX = "zoo:"  # a shipped entry written where a run folder is expected: zoo:NAME


@dataclass(frozen=True)
class Pretrained:
    """A shipped entry where a run folder is expected (`nh predict --model NAME`, `nh eval --model NAME`)."""

    name: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}"


def source(run: str) -> str | Pretrained:
    """A run argument as `inference.predict.load_predictor_run` takes it: `zoo:NAME` the shipped
    entry NAME (the inverse of `str(Pretrained)`), anything else a run folder."""
    return Pretrained(run[len(PREFIX):]) if run.startswith(PREFIX) else run


@dataclass(frozen=True)
class Recipe:
    """How an entry is trained: network, config file, training seed and time limit, data."""

    name: str
    model: str
    config: str  # a packaged config (nh_models/configs/...), as `nh train --config` takes it
    seed: int
    time_limit: float  # minutes
    data: dict[str, Any]  # {"preset", "ic", "times", "seed"}: `nh data build` arguments

    @property
    def data_name(self) -> str:
        return data_name(self.data)


def data_name(data: dict[str, Any]) -> str:
    """The folder name under parquet_data/ of `nh data build` arguments: normal, normal-wall, normal-s7."""
    name = data["preset"] + ("-wall" if data["ic"] == "wall" else "")
    return name + (f"-s{data['seed']}" if data["seed"] != DEFAULT_DATA_SEED else "")


def _zoo(zoo_dir: str | os.PathLike | None) -> Path:
    return Path(zoo_dir) if zoo_dir is not None else ZOO_DIR


def recipes(zoo_dir: str | os.PathLike | None = None) -> dict[str, Recipe]:
    """{name: Recipe} of every entry the zoo knows how to build."""
    path = _zoo(zoo_dir) / RECIPES
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NHError(f"{path} is not readable ({exc})") from None
    return {name: Recipe(name=name, **r) for name, r in raw.items()}


def recipe(name: str, zoo_dir: str | os.PathLike | None = None) -> Recipe:
    known = recipes(zoo_dir)
    if name not in known:
        raise NHError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(known))} (`nh models`)")
    return known[name]


def names(zoo_dir: str | os.PathLike | None = None) -> list[str]:
    """The entries shipped (a card and its weights), sorted."""
    zoo = _zoo(zoo_dir)
    found = (p.name[: -len(CARD)] for p in zoo.glob(f"*{CARD}"))
    return sorted(n for n in found if (zoo / f"{n}.safetensors").is_file())


def card(name: str, zoo_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The plain-data card of entry `name` (NHError when there is none or it is not one)."""
    zoo = _zoo(zoo_dir)
    path = zoo / f"{name}{CARD}"
    if not path.is_file():
        known = names(zoo_dir)
        raise NHError(f"no pretrained model {name!r}; shipped: {', '.join(known) or 'none'} (`nh models`)")
    try:
        obj = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError) as exc:
        raise NHError(f"{path} is not a gzip-compressed JSON card ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("version") != VERSION:
        raise NHError(f"{path} is not a pretrained-model card ({FORMAT} v{VERSION})")
    return obj


def verify(name: str, zoo_dir: str | os.PathLike | None = None, c: dict[str, Any] | None = None) -> Path:
    """The weights file of `name` after checking its size and sha256 against the card (`c`: the
    card already read, else read here)."""
    c = card(name, zoo_dir) if c is None else c
    path = _zoo(zoo_dir) / c["weights"]["file"]
    if not path.is_file():
        raise NHError(f"the weights of pretrained model {name!r} are missing: {path}")
    size = path.stat().st_size
    if size != c["weights"]["bytes"]:
        raise NHError(f"{path} is truncated or replaced: {size} bytes, its card says {c['weights']['bytes']}")
    if sha256_file(path) != c["weights"]["sha256"]:
        raise NHError(f"{path} was modified or damaged (sha256 differs from its card)")
    return path


def load_pretrained(name: str, device: str = "cpu", zoo_dir: str | os.PathLike | None = None):
    """(model in eval mode, Calibration or None, meta) of a shipped entry, like a run folder's
    `inference.predict.load_predictor_run`; meta holds `model_name`, `data_dir` (None) and the card."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .calibration import from_dict
    from .models import get_model

    c = card(name, zoo_dir)
    path = verify(name, zoo_dir, c)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise NHError(f"{path} is not a readable safetensors file ({exc})") from None
    model = get_model(c["model_name"], c["config"]["model"])
    dtype = torch.float64 if c["config"].get("train", {}).get("dtype") == "float64" else torch.float32
    model = model.to(dtype=dtype)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise NHError(f"{path} does not fit a {c['model_name']} model ({str(exc).splitlines()[0]})") from None
    model = model.to(device).eval()
    cal = from_dict(c["calibration"], f"{name}{CARD} (calibration)") if c.get("calibration") else None
    # its training data where `nh models build` puts it (the test split nh eval defaults to), if there
    local = Path(DATA_ROOT) / data_name(c["data"])
    meta = {"model_name": c["model_name"], "data_dir": str(local) if local.is_dir() else None, "card": c}
    return model, cal, meta


def summary(name: str, zoo_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """One row of `nh models`: name, network, recipe, data, test loss, calibration levels, size."""
    c = card(name, zoo_dir)
    zoo = _zoo(zoo_dir)
    d = c["data"]
    cal = c.get("calibration") or {}
    levels = sorted(float(k) for k in cal.get("strata", {}).get("all", {}).get("quantiles", {}))
    return {
        "name": name,
        "network": c["model_name"],
        "recipe": c["recipe"]["config"],
        "data": f"{d['preset']} ic={d['ic']} seed={d['seed']}",
        "test_loss": c["metrics"]["test_loss"],
        "test_orbits": c["metrics"]["test_orbits"],
        "calibration": (", ".join(f"{v:g}" for v in levels) + f"; {cal.get('windows', 1)} window(s)") if levels else "none",
        "bytes": (zoo / c["weights"]["file"]).stat().st_size + (zoo / f"{name}{CARD}").stat().st_size,
    }


def zoo_bytes(zoo_dir: str | os.PathLike | None = None) -> int:
    """Bytes of everything in the zoo folder (weights, cards, recipes, samples)."""
    return sum(p.stat().st_size for p in _zoo(zoo_dir).rglob("*") if p.is_file() and "__pycache__" not in p.parts)


# ------------------------------------------------------------------ making an entry


def sample_path(data_name: str, zoo_dir: str | os.PathLike | None = None) -> Path:
    return _zoo(zoo_dir) / "samples" / f"{data_name}.npz"


def write_sample(data_dir: str | os.PathLike, data_name: str, zoo_dir: str | os.PathLike | None = None) -> Path:
    """The shipped test sample of a data folder: SAMPLE_ORBITS seeded test orbits, float64."""
    from .evaluation.cases import load_test

    path = sample_path(data_name, zoo_dir)
    if path.is_file():
        return path
    test = load_test(data_dir, SAMPLE_ORBITS, SAMPLE_SEED)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
            np.savez_compressed(f, V=test.V, t=test.t, ic=test.ic, q=test.q, p=test.p)

    atomic_write(path, write)
    return path


def load_sample(data_name: str, zoo_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    path = sample_path(data_name, zoo_dir)
    if not path.is_file():
        raise NHError(f"no shipped test sample {path}")
    with np.load(path) as z:
        return {k: z[k] for k in ("V", "t", "ic", "q", "p")}


def mean_loss(model, data: dict[str, np.ndarray] | Any, device: str = "cpu", batch_size: int = 2048) -> float:
    """The mean over orbits of the training loss (nh eval's test loss) of `model` on arrays or a TestData."""
    from .evaluation.metrics import orbit_errors
    from .evaluation.predictors import model_predictor

    get = data.__getitem__ if isinstance(data, dict) else lambda k: getattr(data, k)
    q_hat, p_hat = model_predictor(model, device, batch_size)(get("V"), get("t"), get("ic"))
    return float(np.mean(orbit_errors(q_hat, p_hat, get("q"), get("p"))["loss"]))


def export_run(
    run_dir: str | os.PathLike,
    rec: Recipe,
    data_dir: str | os.PathLike,
    zoo_dir: str | os.PathLike | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Write entry `rec.name` from a trained run folder: weights, card, the data's test sample.

    The card's test loss is measured here on the whole test split of `data_dir`, its sample
    loss on the shipped sample."""
    from safetensors.torch import save_file

    from .evaluation.cases import load_test
    from .training.checkpoint import build_model, checkpoint_path, load_checkpoint

    zoo = _zoo(zoo_dir)
    zoo.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(checkpoint_path(run_dir, "best"), "cpu")
    model = build_model(ckpt, "cpu")
    cal_path = Path(run_dir) / "calibration.json"
    calibration = json.loads(cal_path.read_text()) if cal_path.is_file() else None
    if calibration is not None:  # machine paths are not part of an entry
        calibration.pop("data_dir", None)
        calibration.get("run", {}).pop("path", None)
    test = load_test(data_dir)
    write_sample(data_dir, rec.data_name, zoo)
    metrics = {
        "test_loss": mean_loss(model, test, device),
        "test_orbits": int(len(test.u)),
        "sample_loss": mean_loss(model, load_sample(rec.data_name, zoo), "cpu"),
        "sample_orbits": SAMPLE_ORBITS,
        "best_epoch": int(ckpt.get("best_epoch", -1)),
        "best_val_loss": float(ckpt.get("best_val_loss", float("nan"))),
    }
    weights = zoo / f"{rec.name}.safetensors"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT, "name": rec.name}))
    entry = {
        "format": FORMAT,
        "version": VERSION,
        "name": rec.name,
        "model_name": ckpt["model_name"],
        "config": ckpt["config"],
        "recipe": {"config": rec.config, "seed": rec.seed, "time_limit": rec.time_limit,
                   "build": f"nh models build {rec.name}"},  # fmt: skip
        "data": dict(rec.data),
        "metrics": metrics,
        "calibration": calibration,
        "checkpoint_digest": ckpt["digest"],
        "weights": {"file": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
    }
    card_path = zoo / f"{rec.name}{CARD}"
    text = json.dumps(entry, indent=1, sort_keys=True) + "\n"
    atomic_write(card_path, lambda tmp: Path(tmp).write_bytes(gzip.compress(text.encode(), 9, mtime=0)))
    for f in (weights, card_path, sample_path(rec.data_name, zoo)):
        f.chmod(0o644)  # package data: readable by every user of an installation
    return entry
