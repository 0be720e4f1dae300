"""The run folder's own records, beside the checkpoints (`trainer.train` writes them):
metrics.json at the end of a run (or when it stops or diverges, with history.csv), and the
checks of a run folder given to `--resume`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nh_data.errors import NHError
from nh_data.fileio import write_text_atomic

from ..models.base import count_parameters
from . import distributed as D
from .checkpoint import checkpoint_path, load_checkpoint, write_history
from .config import resolve_config
from .guard import Diverged


def check_resume(model_name: str, config: dict | None, resume: Path) -> dict[str, Any]:
    """The last checkpoint of run folder `resume`; NHError when it trained another model, when
    `config` differs from its saved one, or when it has nothing left to do."""
    ckpt = load_checkpoint(checkpoint_path(resume, "last"))
    if ckpt["model_name"] != model_name:
        raise NHError(f"run {str(resume)!r} trained {ckpt['model_name']!r}, not {model_name!r}")
    if config is not None:
        given = resolve_config(model_name, config)
        diff = [
            f"{s}.{k}"
            for s in ("model", "train")
            for k in given[s]
            if given[s][k] != ckpt["config"][s].get(k)
        ]
        if diff:
            raise NHError(f"--resume keeps the run's saved config; these values differ: {', '.join(diff)}")
    done, total = ckpt["epoch"], ckpt["config"]["train"]["epochs"]
    if done >= total:
        raise NHError(f"run {str(resume)!r} already completed {done}/{total} epochs; nothing to resume")
    try:
        finished = json.loads((resume / "metrics.json").read_text()).get("status") == "completed"
    except (OSError, ValueError):
        finished = False
    if finished:
        raise NHError(
            f"run {str(resume)!r} already completed its {ckpt.get('step', 0)} steps; nothing to resume"
        )
    return ckpt


def write_metrics(
    run_dir: Path,
    state: Any,
    model_name: str,
    train_cfg: dict[str, Any],
    test_loss: float | None,
    device: torch.device,
    env: D.DistEnv,
    status: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """metrics.json (and loss.png) of the run in its `status` (completed, time_limit, stopped,
    diverged with its `reason`), written by rank 0; returns the metrics."""
    rows = state.history
    metrics = {
        "model": model_name,
        "status": status,
        **({"reason": reason} if reason is not None else {}),
        "epochs": train_cfg["epochs"],
        "epochs_done": state.epoch,
        "steps_done": state.step,
        "max_steps": train_cfg["max_steps"],
        "time_limit_min": train_cfg["time_limit"],
        "final_val_loss": rows[-1]["val_loss"] if rows else None,
        "best_val_loss": state.best_val_loss if rows else None,
        "best_epoch": state.best_epoch if rows else None,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "test_loss": test_loss,
        "num_parameters": count_parameters(state.model),
        "samples_per_s": sum(r["samples_per_s"] for r in rows) / len(rows) if rows else None,
        "train_seconds": sum(r["seconds"] for r in rows),
        "device": str(device),
        "world_size": env.world_size,
        "torch_threads": torch.get_num_threads(),
    }
    if env.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if rows:
            from .plot import plot_loss_curve

            plot_loss_curve(rows, run_dir / "loss.png", title=f"{model_name} ({run_dir.name})")
    return metrics


def diverged_run(exc: Diverged, run_dir: Path, state: Any, model_name: str, tc: dict[str, Any],
                  device: torch.device, env: D.DistEnv) -> Diverged:  # fmt: skip
    """Keep what explains a divergence in the run folder: history.csv (the finished epochs) and
    metrics.json (status diverged, the reason); the checkpoints hold the last good epoch.
    Returns the error to raise, naming the folder and what it keeps."""
    if env.is_main:
        write_history(state.history, run_dir / "history.csv")
    write_metrics(run_dir, state, model_name, tc, None, device, env, status="diverged", reason=str(exc))
    kept = "config.yaml, history.csv, metrics.json (the reason)"
    if state.epoch:
        kept += f", checkpoint_last.pt (epoch {state.epoch}, the last good one)"
    return Diverged(f"{exc}; kept in {run_dir}: {kept}")
