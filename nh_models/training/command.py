"""What `nh train` decides below its command line (cli.py only parses and prints): the
conflict of --resume with overrides, the default dataset, the run folder's name, which
process prints, and the message of an interrupted run. No torch at import: `cli` imports
the defaults from here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from nh_data.errors import Interrupted, NHError

DEFAULT_DATA = "parquet_data/normal"  # what `nh data build --preset normal` writes
DEFAULT_STORAGE = "sqlite:///runs/tune.db"  # `nh tune`'s Optuna storage


def plan_train(model: str, config_file: str | None, data_dir: str | None, overrides: dict[str, Any],
               out_dir: str, resume: str | None) -> tuple[dict[str, Any] | None, str | None, str | Path]:  # fmt: skip
    """(config, data folder, run folder) for `trainer.train` from the command's values.

    With `resume` no override and no --config may be given (the run keeps its saved config);
    otherwise the data folder defaults to DEFAULT_DATA (which must hold a dataset), the config
    is loaded with the overrides and the run folder is named by `default_run_dir`."""
    if resume is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
        if config_file is not None:
            given.append("--config")
        if given:
            raise NHError(f"--resume continues a run with its saved config; drop {', '.join(given)}")
        return None, data_dir, resume
    from .config import load_config

    if data_dir is None:
        if not (Path(DEFAULT_DATA) / "manifest.json").is_file():
            raise NHError(
                f"no dataset at {DEFAULT_DATA} (the default --data); build it with "
                "`nh data build --preset normal`, or pass --data DIR"
            )
        data_dir = DEFAULT_DATA
    config = load_config(model, config_file, overrides)
    return config, data_dir, default_run_dir(out_dir, model, config["train"]["seed"])


def default_run_dir(out_dir: str | os.PathLike, model_name: str, seed: int) -> Path:
    """`<out_dir>/<model>-<YYYYmmdd-HHMMSS>-s<seed>`; under torchrun the timestamp is replaced by
    the rendezvous id, which every rank shares."""
    from . import distributed as D

    env = D.detect()
    if env.distributed:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
        tag = f"ddp{env.world_size}" + (f"-{run_id[:12]}" if run_id and run_id != "none" else "")
    else:
        tag = time.strftime("%Y%m%d-%H%M%S")
    return Path(out_dir) / f"{model_name}-{tag}-s{seed}"


def is_main_process() -> bool:
    """Whether this process prints: rank 0 under torchrun (RANK), or a single process."""
    return os.environ.get("RANK", "0") == "0"


def interrupted(model: str, run_dir: str | os.PathLike) -> Interrupted:
    """The one line for Ctrl-C: how to resume, or that nothing is left to resume."""
    if (Path(run_dir) / "checkpoint_last.pt").is_file():
        return Interrupted(f"interrupted; continue with: nh train {model} --resume {run_dir}")
    gone = "" if Path(run_dir).exists() else f"; {run_dir} removed"
    return Interrupted(f"interrupted before the first epoch ended: nothing to resume{gone}")
