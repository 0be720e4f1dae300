"""Old path of `nh_models.training.tune.tune` (`from nh_models.tune import tune`)."""

from .training.tune import tune

__all__ = ["tune"]
