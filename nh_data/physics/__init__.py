"""The paper's physical test potentials (SPEC section 7), exact references, integrator comparisons.

Every potential lives on q in [0, 1] with walls V(0) = V(1) = V0 = 2. Each one carries
``@njit`` kernels ``V(q, params)`` and ``dV(q, params)`` (the interface of
`nh_data.integrators`) and a *branch* force ``dV_branch(q, params, piece)``: on a
piecewise potential, piece j is the interval between kinks j-1 and j, and
``dV_branch`` is that piece's smooth formula continued beyond its ends, so a
high-order step whose sub-steps overshoot a kink still sees one smooth force. The
reference kernels pick a potential by its integer ``kernel_id`` rather than taking a
function argument, so Numba's on-disk cache serves them across processes.

References (``reference``), accurate to 1e-10 in q and p:

- sho: closed form for any initial condition.
- mff, atw (piecewise linear): exact. Between kinks the force is constant and the
  orbit a parabola; the kernel jumps from kink crossing to kink crossing (each the
  root of a quadratic) and evaluates the parabola at every output time.
- quartic, morse, smff, pendulum, unbounded: Kahan-Li 8 (17-stage composition of
  leapfrog) at dt = 1e-3 on the analytic force. On unbounded (V''' jumps at q = 0.5)
  a step that crosses the kink is redone as two: the crossing time is the root of
  q(tau) - 0.5 (safeguarded Newton on the step map), so no step straddles it.

Limits. A crossing located from a position is timed to ~ulp(q) / |p|, so the numeric
kernel loses accuracy on orbits that cross a kink very slowly and very often; it raises
NHError when crossings outrun it (~1000 per step). Only unbounded uses it with a kink,
where that needs E within ~1e-10 of V(0.5). The exact kernel has no such limit: about a
V-minimum kink it skips whole periods, so even E0 - V(kink) = 1e-300 costs nothing.

Comparisons (``compare``) run rk4, leapfrog, yoshida4 and yoshida8 through
`nh_data.integrators.integrate` on the analytic dV, output on the same times.
``build_physics`` writes ``NAME.parquet`` / ``NAME.json`` (and ``NAME.png``).

One module a concern, every public name importable from here:

- `analytic_potentials`: the eight analytic potentials, their njit kernels, dispatch by id, input checks
- `orbits`: the reference orbits (closed form, exact parabolas, kink-aware Kahan-Li 8)
- `comparison`: the integrators on their native grid, Hermite resampling, timing
- `files`: writing and reading DIR/NAME.parquet + .json, the table
- `plot`: the figure of one case (matplotlib, loaded lazily)
"""

from __future__ import annotations

from ..problem import N_SENSORS, V0
from .analytic_potentials import (
    E_TOL,
    MAX_STEPS,
    MAX_T,
    POTENTIALS,
    PhysicalPotential,
    check_ic,
    get_potential,
    parse_float,
    parse_ic,
)
from .comparison import COMPARE_METHODS, N_OUT, compare, effective_step, hermite_resample, native_grid
from .files import DEFAULT_OUT, PhysicsData, build_all, build_physics, format_table, load_physics
from .orbits import REF_DT, REF_WEIGHTS, analytic_sho, reference, reference_numeric

__all__ = [
    "COMPARE_METHODS",
    "DEFAULT_OUT",
    "E_TOL",
    "MAX_STEPS",
    "MAX_T",
    "N_OUT",
    "N_SENSORS",
    "POTENTIALS",
    "REF_DT",
    "REF_WEIGHTS",
    "V0",
    "PhysicalPotential",
    "PhysicsData",
    "analytic_sho",
    "build_all",
    "build_physics",
    "check_ic",
    "compare",
    "effective_step",
    "format_table",
    "get_potential",
    "hermite_resample",
    "load_physics",
    "native_grid",
    "parse_float",
    "parse_ic",
    "reference",
    "reference_numeric",
]
