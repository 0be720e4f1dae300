"""The arrays the compiled kernels read, checked: the kernels index them without bounds checks,
so a wrong shape must stop here (one-line NHError), not read past an array."""

from __future__ import annotations

import numpy as np

from nh_data.errors import NHError
from nh_data.problem import N_SENSORS


def batch(V, t, ic) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V (B, 100), t (B, W), ic (B, 2) as C-contiguous float64 arrays; NHError on other shapes."""
    V, t, ic = (np.ascontiguousarray(x, dtype=np.float64) for x in (V, t, ic))
    if V.ndim != 2 or V.shape[1] != N_SENSORS or t.ndim != 2 or ic.shape != (len(V), 2) or len(t) != len(V):
        raise NHError(
            f"expected V (B, {N_SENSORS}), t (B, W), ic (B, 2); got {V.shape}, {t.shape}, {ic.shape}"
        )
    return V, t, ic
