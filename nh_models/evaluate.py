"""Old path of `nh_models.evaluation.evaluate_runs` (`from nh_models.evaluate import evaluate_runs`)."""

from .evaluation.run import EvalSettings, evaluate_runs

__all__ = ["EvalSettings", "evaluate_runs"]
