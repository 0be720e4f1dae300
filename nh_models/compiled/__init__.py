"""Numba kernels of SympONet's processed grid and of its equal-cost baselines (issue 21): the same
arithmetic as the torch code, float64, one orbit at a time, so that the model and the integrators
are timed in the same language (`bench/compiled_cost.py`).

- `spline`: the quintic sensor spline (banded LU solve, derivative tables, lookup).
- `processed`: the forward map of `grid: processed` from `export(model)`'s parameters.
- `export`: the parameters of a SympONet that compiles, or an NHError saying why not.
- `inputs`: the batch arrays, checked (the kernels read them without bounds checks).
- `stepping`: the fixed-step compositions, the order of the query times (`schedule`) and the
  cubic Hermite read-out both use.
- `lanes`: several orbits' fixed-step chains side by side on one thread.
- `integrators`: leapfrog, Yoshida-4, RK4 and the classical processed leapfrog of
  `evaluation.sensor_integrators`, cubic Hermite read-out.

Every read-out is fused into its stepping loop: each query time is read out as soon as the
states it needs exist, so that its work fills the cycles the stepping's chain of dependent
lookups leaves idle. With `lanes` K > 1 (`forward(..., lanes=K)`, `integrate(..., lanes=K)`)
K orbits' chains are stepped side by side instead, and each orbit is read out after them
(`lanes`): the same bytes, the time of a batch's throughput rather than one orbit's latency.

The serial kernels are cached on disk (`nh_data.jit_options.JIT`). Numba keys a cache entry on the
file of the function it compiled, not on the files of the kernels it inlined: after editing
`spline.py` or `stepping.py`, delete nh_models/compiled/__pycache__/*.nb[ic] (a stale entry
would keep the old code).
"""

from .export import export, why_not
from .processed import forward

__all__ = ["export", "forward", "why_not"]
