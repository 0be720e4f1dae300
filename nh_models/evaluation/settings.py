"""The sizes and knobs of one evaluation (`EvalSettings`; defaults: the `nh eval` command)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from nh_data.errors import NHError
from nh_data.problem import PHYSICS_DT, T_END

from .oracle import BASELINES


@dataclass
class EvalSettings:
    """Sizes and knobs of one evaluation (defaults: the `nh eval` command)."""

    max_test: int | None = None  # cap on test orbits for the accuracy table (None: all)
    n_sub: int = 1000  # test orbits for work-precision and energy
    n_detj: int = 200  # test orbits for |det J - 1|
    dts: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
    methods: tuple[str, ...] = BASELINES
    physics_dt: float = PHYSICS_DT  # step of the baselines on the physics potentials
    eps: float = 1e-6  # finite-difference step for det J (fourth-order stencils, float64 evaluation)
    window: float = T_END  # length of a chained window
    t_long: float = 20.0  # chain windows up to this time
    window_potentials: int = 125  # new potentials (4 orbits each) for per-window band coverage (0: none)
    batch_size: int = 2048
    repeats: int = 3  # timing: best of this many after a warm-up
    compiled: bool = False  # SympONet's equal-cost table: time compiled kernels of both sides (nh_models.compiled)
    lanes: int = 1  # with compiled: orbits stepped side by side on the thread (nh_models.compiled.lanes)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_sub < 2 or self.n_detj < 1:
            raise NHError("n_sub must be >= 2 and n_detj >= 1")
        if not self.dts or min(self.dts) <= 0:
            raise NHError("dts must be positive")
        if not self.window > 0 or self.t_long < self.window:
            raise NHError("need window > 0 and t_long >= window")
        from ..compiled.lanes import check_lanes

        check_lanes(self.lanes)
        if self.lanes != 1 and not self.compiled:
            raise NHError(f"lanes {self.lanes} time compiled code: pass --compiled as well")


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
