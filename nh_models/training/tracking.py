"""Training logs where people look for them: TensorBoard event files in the run folder, or a
Weights & Biases run (offline unless the user has logged in), chosen by `train.log`
(`nh train --log tensorboard|wandb|none`).

Logged: the run config (once), the train loss of every optimizer step whose loss is read
(every step on CPU, every 16th on CUDA, where reading it synchronises), and per epoch the
validation and mean train loss, the learning rate and the throughput. Only rank 0 logs.
The packages are the optional extra `[track]` (`pip install -e ".[track]"`); asking for
one that is not installed is an NHError.

    RUN/tensorboard/events.out.tfevents...   tags train/loss_step, train/loss, val/loss, lr,
                                             samples_per_s; the config as text "config"
    RUN/wandb/offline-run-.../               (W&B; `wandb sync` uploads it later)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nh_data.errors import NHError

LOGGERS = ("none", "tensorboard", "wandb")


class NullTracker:
    """Logs nothing (`log: none`)."""

    def log_step(self, step: int, loss: float) -> None:
        pass

    def log_epoch(self, step: int, row: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(NullTracker):
    def __init__(self, run_dir: Path, config: dict[str, Any], model_name: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise NHError(
                '--log tensorboard needs the tensorboard package: pip install -e ".[track]" (or tensorboard)'
            ) from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        text = json.dumps({"model_name": model_name, **config}, indent=2)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def log_step(self, step: int, loss: float) -> None:
        self.writer.add_scalar("train/loss_step", loss, step)

    def log_epoch(self, step: int, row: dict[str, float]) -> None:
        self.writer.add_scalar("train/loss", row["train_loss"], step)
        self.writer.add_scalar("val/loss", row["val_loss"], step)
        self.writer.add_scalar("lr", row["lr"], step)
        self.writer.add_scalar("samples_per_s", row["samples_per_s"], step)
        self.writer.add_scalar("epoch", row["epoch"], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker(NullTracker):
    def __init__(self, run_dir: Path, config: dict[str, Any], model_name: str):
        try:
            import wandb
        except ImportError:
            raise NHError(
                '--log wandb needs the wandb package: pip install -e ".[track]" (or wandb)'
            ) from None
        logged_in = bool(os.environ.get("WANDB_API_KEY")) or _has_netrc_key()
        mode = os.environ.get("WANDB_MODE") or ("online" if logged_in else "offline")
        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "neural-hamilton"),
            name=run_dir.name,
            dir=str(run_dir),
            config={"model_name": model_name, **config},
            mode=mode,
            reinit="finish_previous",
        )

    def log_step(self, step: int, loss: float) -> None:
        self.run.log({"train/loss_step": loss}, step=step)

    def log_epoch(self, step: int, row: dict[str, float]) -> None:
        self.run.log({"train/loss": row["train_loss"], "val/loss": row["val_loss"], "lr": row["lr"],
                      "samples_per_s": row["samples_per_s"], "epoch": row["epoch"]}, step=step)  # fmt: skip

    def close(self) -> None:
        self.run.finish()


def _has_netrc_key() -> bool:
    """Whether `wandb login` stored a key for api.wandb.ai in ~/.netrc."""
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def open_tracker(
    kind: str, run_dir: str | os.PathLike, config: dict[str, Any], model_name: str
) -> NullTracker:
    """The tracker of `train.log` (NHError for an unknown one or a missing package)."""
    if kind not in LOGGERS:
        raise NHError(f"train.log must be one of {', '.join(LOGGERS)}, got {kind!r}")
    if kind == "none":
        return NullTracker()
    cls = TensorBoardTracker if kind == "tensorboard" else WandbTracker
    return cls(Path(run_dir), config, model_name)


def check_available(kind: str) -> None:
    """NHError now (before a run folder is made) when `kind` needs a package that is not installed."""
    import importlib.util

    if kind not in LOGGERS:
        raise NHError(f"train.log must be one of {', '.join(LOGGERS)}, got {kind!r}")
    pkg = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(kind)
    if pkg and importlib.util.find_spec(pkg) is None:
        raise NHError(f'--log {kind} needs the {pkg} package: pip install -e ".[track]" (or {pkg})')
