"""The bench scripts as modules for the tests: bench/NAME.py are scripts, not a package, so each
test loads the file by its path (a fresh module per call, so that a test may patch it). Test
scaffolding, like synthetic.py and naive.py.

    from benches import TINY_PROCESSED, load_bench  # with tests/ on sys.path, as pytest puts it
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent

# a processed SympONet trained for one epoch from the textbook correction: what the issue-21
# benches need, in seconds
TINY_PROCESSED = {
    "model": {"grid": "processed", "steps": 16, "shears": 0, "local_layers": 0, "init": "classical"},
    "train": {"epochs": 1, "batch_size": 32, "lr": 1e-3},
}


def load_bench(name: str) -> ModuleType:
    """bench/NAME.py as the module nh_bench_NAME (registered in sys.modules: its dataclasses
    look their module up)."""
    spec = importlib.util.spec_from_file_location(f"nh_bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
