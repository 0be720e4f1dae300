"""A near-identity symplectic processor chi of the phase plane, given by two grid potentials.

    chi = L_A o K_B:   K_B: p <- p - B'(q)             (a kick: a shear)
                       L_A: Q = q + A'(q), P = p / (1 + A''(q))   (the cotangent lift of the
                                                                  point map q -> q + A'(q))

A and B are functions on the sensor grid, read through the quintic sensor spline like V
(`sensor_spline`). Both factors have Jacobian determinant 1 exactly, for every A and B: the
kick's is [[1, 0], [-B'', 1]], the lift's [[1 + A'', 0], [*, 1 / (1 + A'')]]. Both read the
same point q, so chi costs one lookup of the stacked table (A', A'', B') at q.

The inverse runs once per orbit, on the initial condition: q solves q + A'(q) = Q by Newton's
iteration from q = Q (the learned A' is of order h^2 V': quadratic convergence from an error of
about 1e-4 reaches round-off in three iterations), then p = P (1 + A''(q)) + B'(q).
`INVERSE_ITERATIONS` lookups of (A', A''), one more of (A'', B') at the solution.

A processed integrator is chi o Phi_h^n o chi^-1: only chi and chi^-1 are extra work, the kernel
Phi_h runs n times (Blanes, Casas and Ros, "Symplectic integrators with processing", 1999;
Wisdom, Holman and Touma, "Symplectic correctors", 1996). The classical processor of
Strang splitting on V - (h^2 / 24) V'^2 (Takahashi and Imada 1984) is A' = -(h^2 / 12) V',
B' = 0 to first order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import sensor_spline

INVERSE_ITERATIONS = 4  # Newton iterations of chi^-1
A1, A2, B1 = 0, 1, 2  # the stacked table's polynomials: A', A'', B'


def tables(a: Tensor, b: Tensor) -> Tensor:
    """The processor's stacked table (A', A'', B') from the displacement a ~ A' and the kick
    b ~ B' on the sensor grid: (B, 100) x2 -> (B, 99, 3, 5).

    A and B are their integrals (`integral`, fourth order), read through the quintic sensor
    spline, so that A' is a smooth function through a (to O(dx^4)) and A'' is a first
    derivative of the grid values, not a second: no 1 / dx^2 amplification of the learned values.
    """
    a1 = sensor_spline.force_table(integral(a))
    return stack_tables(a1, sensor_spline.derivative_table(a1), sensor_spline.force_table(integral(b)))


def local_tables(a: Tensor, b: Tensor) -> Tensor:
    """The processor's stacked table (A', A'', B') with A' and B' the local C1 cubics through a and b
    (`sensor_spline.local_table`: no solve) and A'' the derivative of the A' cubic, so that the
    lift stays exactly area-preserving: (B, 100) x2 -> (B, 99, 3, 5)."""
    a1 = sensor_spline.local_table(a)
    return stack_tables(a1, sensor_spline.derivative_table(a1), sensor_spline.local_table(b))


def integral(f: Tensor) -> Tensor:
    """The integral from the first sensor of the cubic through each four neighbouring grid
    values (fourth order: the spline of the result has derivative f + O(dx^4)): (B, 100) -> (B, 100)."""
    w = sensor_spline.DX / 24.0
    inner = w * (-f[:, :-3] + 13.0 * f[:, 1:-2] + 13.0 * f[:, 2:-1] - f[:, 3:])  # [x_i, x_i+1], i = 1..n-3
    first = w * (9.0 * f[:, 0] + 19.0 * f[:, 1] - 5.0 * f[:, 2] + f[:, 3])
    last = w * (f[:, -4] - 5.0 * f[:, -3] + 19.0 * f[:, -2] + 9.0 * f[:, -1])
    steps = torch.cat([first[:, None], inner, last[:, None]], dim=1)  # (B, 99)
    return torch.cat([torch.zeros_like(f[:, :1]), torch.cumsum(steps, dim=1)], dim=1)


def stack_tables(*tables: Tensor) -> Tensor:
    """Tables (B, 99, 5) stacked for one lookup: (B, 99, K, 5)."""
    return torch.stack(tables, dim=2)


def slope(q: Tensor, a2: Tensor) -> Tensor:
    """d A'(q) / dq: A'' inside the box; outside it the lookup holds A' at its end value (q is
    clamped), so the slope is 0 there and the lift stays exactly area-preserving."""
    return torch.where((q >= 0.0) & (q <= 1.0), a2, torch.zeros_like(a2))


def apply(q: Tensor, p: Tensor, values: Tensor, c: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
    """chi(q, p) given the lookup of (A', A'', B') at q: values (..., 3) from `sensor_spline.lookup`;
    with c, chi_c: the processor of c A and c B (exactly area-preserving for every c)."""
    p = p - c * values[..., B1]  # (c = 1: the same bytes, 1.0 * x is x)
    return q + c * values[..., A1], p / (1.0 + c * slope(q, values[..., A2]))


def apply_generated(q: Tensor, p: Tensor, values: Tensor, force: Tensor, eps: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """chi with the read-out generator folded in (`readout: corrected`, `models.processed`): after
    the kick p <- p - B'(q), the map of the type-2 generating function

        S(q, P) = P (q + A'(q)) + eps (w0 P^2 V''(q) / 12 - w1 V'(q)^2 / 24),

    p = P (1 + A'') + dS/dq (a quadratic in P, solved in closed form), Q = q + A' + eps w0 P V'' / 6.
    Everything is read at q: `values` (..., 3) the lookup of (A', A'', B'), `force` (..., 3) that
    of the kernel's V', V'', V''' (the last two taken as 0 outside the box, where the lookup
    holds V' constant, so that dS/dq is S's derivative and the map exactly symplectic). eps
    (...): tau (h^2 - tau^2) of the partial step tau; w (2,): the generator's weights, (1, 1) the
    textbook's (the leapfrog error term of the partial step against the whole one's,
    `processed.flow`). The root taken is the one near c / b (written without cancellation), so
    that with eps w = 0 it is `apply` to round-off. (A negative discriminant, far outside the
    training range, is clamped to 0.)"""
    v2, v3 = slope(q, force[..., 1]), slope(q, force[..., 2])  # zero outside the box, like A''
    g0, g1 = eps * (w[0] / 12.0), eps * (w[1] / 12.0)
    a = g0 * v3
    b = 1.0 + slope(q, values[..., A2])
    c = p - values[..., B1] + g1 * force[..., 0] * v2
    P = (2.0 * c) / (b + torch.copysign(torch.sqrt((b * b + (4.0 * a) * c).clamp(min=0.0)), b))  # the root near c / b
    return q + values[..., A1] + (2.0 * g0) * P * v2, P


def invert(Q: Tensor, P: Tensor, table: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """chi^-1(Q, P): (q, p) and, if `extra` tables (B, 99, K, 5) are given, their lookup at q
    (the kernel's first force, read in the same lookup as A'' and B')."""
    a12 = table[:, :, A1 : A2 + 1]
    q = Q
    for _ in range(INVERSE_ITERATIONS):  # Newton on q + A'(q) = Q: quadratic convergence
        values = sensor_spline.lookup(a12, q)
        q = q - (q + values[..., 0] - Q) / (1.0 + slope(q, values[..., 1]))
    last = table[:, :, A2:]  # (A'', B')
    if extra is not None:
        last = torch.cat([last, extra], dim=2)
    values = sensor_spline.lookup(last, q)
    p = P * (1.0 + slope(q, values[..., 0])) + values[..., 1]
    return q, p, (values[..., 2:] if extra is not None else None)


def lookups_per_orbit(n_times: int) -> int:
    """Lookups chi^-1 and chi spend on one orbit with `n_times` query times."""
    return INVERSE_ITERATIONS + 1 + n_times
