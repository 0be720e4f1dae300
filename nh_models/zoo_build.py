"""`nh models build NAME`: make a pretrained entry again from its recipe (`zoo.recipes`).

The steps: the recipe's data folder (built with `nh data build` arguments when it is missing,
or checked against them when it is there), a training run with the recipe's config, seed and
time limit (`training.trainer.train`, which calibrates at its end), then `zoo.export_run` into
an output zoo folder, and the rebuilt test loss beside the shipped card's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nh_data.errors import NHError

from . import zoo


def data_folder(rec: zoo.Recipe, data_root: str | os.PathLike, progress: bool = True) -> Path:
    """The recipe's data folder under `data_root`: `build_dataset` builds or completes it, and
    refuses (NHError) a folder built with other arguments."""
    from nh_data.build import build_dataset

    path = Path(data_root) / rec.data_name
    d = rec.data
    build_dataset(path, preset=d["preset"], seed=d["seed"], ic=d["ic"], times=d["times"],
                  workers=max(1, min(4, os.cpu_count() or 1)), progress=progress)  # fmt: skip
    return path


def build_entry(
    name: str,
    data_root: str | os.PathLike = "parquet_data",
    out: str | os.PathLike = "runs/zoo",
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train entry `name` from its recipe and export it into the zoo folder `out`.

    Returns {"entry": the new card, "run": the run folder, "shipped": the shipped card's test loss
    or None, "ratio": rebuilt / shipped}."""
    from .training.command import default_run_dir
    from .training.config import load_config
    from .training.trainer import train

    rec = zoo.recipe(name)
    data_dir = data_folder(rec, data_root, progress)
    config = load_config(rec.model, rec.config, {"seed": rec.seed, "time_limit": rec.time_limit})
    run_dir = default_run_dir(Path(out) / "runs", rec.model, rec.seed)
    train(rec.model, config, str(data_dir), run_dir, device=device, progress=progress)
    entry = zoo.export_run(run_dir, rec, data_dir, out, device)
    try:
        shipped = zoo.card(name)["metrics"]["test_loss"]
    except NHError:
        shipped = None
    ratio = entry["metrics"]["test_loss"] / shipped if shipped else None
    return {"entry": entry, "run": str(run_dir), "shipped": shipped, "ratio": ratio}
