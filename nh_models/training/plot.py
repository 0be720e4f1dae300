"""The loss-curve PNG of a run folder (train and validation loss per epoch, log scale)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nh_data.fileio import atomic_write


def plot_loss_curve(history: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Write train/val loss against epoch to `path` (PNG, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    try:
        ax.plot(epochs, [row["train_loss"] for row in history], "o-", ms=3, label="train")
        ax.plot(epochs, [row["val_loss"] for row in history], "s-", ms=3, label="validation")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(r"loss $\frac{1}{2}(\mathrm{MSE}_q + \mathrm{MSE}_p)$")
        if title:
            ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
