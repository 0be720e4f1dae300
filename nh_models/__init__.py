"""nh_models: PyTorch neural operators trained on nh_data shards.

The public API, loaded on first use (so `import nh_models` stays light and never
pulls optuna or matplotlib in before they are needed):

    from nh_models import get_model, load_config, load_run, ShardDataset
    from nh_models.train import train        # (the submodules `train` and `tune` keep their names)
    model = get_model("deeponet")                       # paper configuration
    cfg = load_config("deeponet", "configs/deeponet_small.yaml", {"train": {"epochs": 5}})
    metrics = train("deeponet", cfg, "parquet_data/1000", "runs")
"""

from __future__ import annotations

import importlib

_API = {
    # models
    "MODEL_NAMES": "models",
    "OperatorModel": "models",
    "get_model": "models",
    "model_config": "models",
    # data
    "ShardDataset": "data",
    "EpochBatchSampler": "data",
    "iterate_batches": "data",
    "FreshOrbits": "fresh",
    "iterate_chunks": "fresh",
    "write_synthetic_dataset": "synthetic",
    # training and loading runs
    "load_config": "config",
    "load_run": "checkpoint",
    "load_checkpoint": "checkpoint",
    # evaluation, search, demo
    "evaluate_runs": "evaluate",
    "OracleModel": "oracle",
    "run_demo": "demo",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'nh_models' has no attribute {name!r}")
