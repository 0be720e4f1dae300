"""nh_models: PyTorch neural operators trained on nh_data shards.

The public API, loaded on first use (so `import nh_models` stays light and never
pulls optuna or matplotlib in before they are needed):

    from nh_models import get_model, load_config, load_run, ShardDataset
    from nh_models.training.trainer import train
    model = get_model("deeponet")                       # paper configuration
    cfg = load_config("deeponet", "configs/deeponet_small.yaml", {"train": {"epochs": 5}})
    metrics = train("deeponet", cfg, "parquet_data/1000", "runs")

What each module does: the module map, docs/architecture.md ("Layout").

Test data in the real schema (harmonic orbits) is written by tests/synthetic.py.
"""

from __future__ import annotations

import importlib

_API = {
    # models
    "MODEL_NAMES": "models",
    "OperatorModel": "models",
    "get_model": "models",
    "model_config": "models",
    "model_names": "models",
    "register_model": "models",  # a model of your own (docs/extending.md)
    "load_plugin": "models",
    # data
    "ShardDataset": "data",
    "EpochBatchSampler": "data",
    "iterate_batches": "data",
    "FreshOrbits": "fresh",
    "iterate_chunks": "fresh",
    # training and loading runs
    "load_config": "training.config",
    "load_run": "training.checkpoint",
    "load_checkpoint": "training.checkpoint",
    # pretrained operators shipped with the package (`nh models`)
    "load_pretrained": "zoo",
    # using a trained operator (nh predict, nh calibrate)
    "predict": "inference.predict",
    "resolve_potential": "inference.potential_input",
    "calibrate": "calibration",
    "load_calibration": "calibration",
    # evaluation, search, demo
    "evaluate_runs": "evaluation.eval_command",
    "OracleModel": "evaluation.oracle",
    "run_demo": "demo",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'nh_models' has no attribute {name!r}")
