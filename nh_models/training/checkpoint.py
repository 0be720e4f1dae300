"""Checkpoints: plain data only, written atomically, verified on load.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(path, weights_only=True)` (a checkpoint is data, never code):

    format, version        "nh-checkpoint", 1
    model_name, config     registry name and the resolved {"model": ..., "train": ...}
    model                  the model's state_dict
    optimizer, scheduler   their state_dicts
    epoch                  number of completed epochs
    rng                    torch (and CUDA), numpy and python RNG states as tensors/numbers
    best_val_loss, best_epoch, history, data_dir, world_size
    digest                 sha256 over everything above (canonical walk)

The digest catches edits that keep the zip container valid; a truncated or foreign
file fails earlier. Every such failure is an NHError naming the file.

    model, config = load_run("runs/deeponet-20250101-120000-s89")   # best checkpoint
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nh_data.errors import NHError
from nh_data.fileio import atomic_write, write_text_atomic

FORMAT = "nh-checkpoint"
VERSION = 1
REQUIRED = ("model_name", "config", "model", "epoch")
CHECKPOINT_NAMES = {"best": "checkpoint_best.pt", "last": "checkpoint_last.pt"}
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "samples_per_s", "seconds")


# ----------------------------------------------------------------- RNG states as plain data


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), NumPy (global) and Python `random` states as tensors and numbers."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss if gauss is None else float(gauss),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by `rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["key"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------- digest


def _feed(h: Any, obj: Any) -> None:
    """Feed a canonical encoding of plain data into the hash `h`."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, bool) or obj is None:
        h.update(f"B{obj}".encode())
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif isinstance(obj, str):
        data = obj.encode()
        h.update(f"S{len(data)}:".encode() + data)
    else:
        raise TypeError(f"checkpoint holds a non-plain value of type {type(obj).__name__}")


def digest(payload: dict[str, Any]) -> str:
    """sha256 of the payload's plain data, the key 'digest' left out."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


# ----------------------------------------------------------------- save / load


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write `payload` (plain data) with format, version and digest, atomically (temp + os.replace)."""
    path = Path(path)
    obj = {"format": FORMAT, "version": VERSION, **payload}
    obj["digest"] = digest(obj)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint with `weights_only=True`; any defect is an NHError."""
    path = Path(path)
    if not path.is_file():
        raise NHError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, refused global, ...
        raise NHError(f"checkpoint {str(path)!r} is corrupt or truncated ({_first_line(exc)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise NHError(f"{str(path)!r} is not a Neural Hamilton checkpoint")
    if obj.get("version") != VERSION:
        raise NHError(f"checkpoint {str(path)!r} has version {obj.get('version')!r}, expected {VERSION}")
    missing = [k for k in (*REQUIRED, "digest") if k not in obj]
    if missing:
        raise NHError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    try:
        ok = digest(obj) == obj["digest"]
    except TypeError as exc:
        raise NHError(f"checkpoint {str(path)!r} is corrupt ({exc})") from None
    if not ok:
        raise NHError(f"checkpoint {str(path)!r} was modified or damaged (digest mismatch)")
    return obj


def build_model(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of a loaded checkpoint, weights restored, in eval mode."""
    from nh_models.models import get_model, is_known_model

    if not is_known_model(ckpt["model_name"]):
        raise NHError(
            f"the checkpoint holds a model {ckpt['model_name']!r} that is neither built in nor registered: "
            "pass --plugin MODULE (the module that registers it) or install the package that provides it"
        )
    config = ckpt["config"]
    model = get_model(ckpt["model_name"], config["model"])
    dtype = torch.float64 if config.get("train", {}).get("dtype") == "float64" else torch.float32
    model = model.to(device=device, dtype=dtype)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise NHError(
            f"checkpoint weights do not fit a {ckpt['model_name']} model ({_first_line(exc)})"
        ) from None
    return model.eval()


def checkpoint_path(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """Path of the 'best' or 'last' checkpoint of a run folder (NHError if the folder is missing)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise NHError(f"run folder {str(run)!r} does not exist")
    if which not in CHECKPOINT_NAMES:
        raise NHError(f"which must be one of {', '.join(CHECKPOINT_NAMES)}, got {which!r}")
    path = run / CHECKPOINT_NAMES[which]
    if not path.is_file():
        raise NHError(f"run folder {str(run)!r} has no {CHECKPOINT_NAMES[which]}")
    return path


def load_run(
    run_dir: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, resolved config) from a run folder's 'best' or 'last' checkpoint."""
    ckpt = load_checkpoint(checkpoint_path(run_dir, which), device)
    return build_model(ckpt, device), ckpt["config"]


def write_history(history: list[dict[str, float]], path: Path) -> None:
    """history.csv of a run: one row per epoch, HISTORY_FIELDS, floats at full precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(path, buf.getvalue())
