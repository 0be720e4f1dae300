"""Old path of `nh_models.training.trainer.train` (`from nh_models.train import train`)."""

from .training.trainer import default_run_dir, train

__all__ = ["default_run_dir", "train"]
