"""nh_data: the standalone, Numba-accelerated data engine of Neural Hamilton.

Never imports torch. The Parquet-facing parts (`build_dataset`, `info`,
`validate`, `SCHEMA`, `read_manifest`) load lazily, so importing the
integrators alone stays light.
"""

from .adaptive import DOP853, integrate_adaptive
from .errors import NHError
from .ground_truth import INTEGRATORS, certified_orbits
from .integrators import METHODS, get_method, integrate, integrate_batch
from .random_potentials import sample_potentials
from .spline import V_batch, V_pp, dV_pp, pack_params, spline_dV, spline_V

_LAZY = {
    "build_dataset": ("build", "build_dataset"),
    "info": ("validate", "info"),
    "validate": ("validate", "validate"),
    "read_shard": ("validate", "read_shard"),
    "SCHEMA": ("schema", "SCHEMA"),
    "read_manifest": ("schema", "read_manifest"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'nh_data' has no attribute {name!r}")


__all__ = [
    "NHError",
    "METHODS",
    "get_method",
    "integrate",
    "integrate_batch",
    "DOP853",
    "integrate_adaptive",
    "INTEGRATORS",
    "certified_orbits",
    "sample_potentials",
    "spline_V",
    "spline_dV",
    "pack_params",
    "V_pp",
    "dV_pp",
    "V_batch",
    *_LAZY,
]
