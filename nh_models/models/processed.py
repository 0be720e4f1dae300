"""A processed fixed-step integrator on grid potentials: chi o Phi_h^n o chi^-1, read out at any
query time by a last partial step.

- The kernel Phi_h: `steps` fixed steps of h = T / steps (T the 2-second window) of a
  composition of Strang (kick-drift-kick) substeps (`subs`: (1,) for leapfrog, Yoshida's triple
  jump for yoshida4) on a potential given on the sensor grid (`kernel`: the table of its
  derivative, `sensor_spline.force_table`), one lookup per substep.
- The read-out: a query time t = k h + tau is the stored state after k steps and one more
  step of tau (floor(t / h) whole steps, like SympONet's fixed grid): a composition of shears,
  so the map stays exactly symplectic at every t, and the identity at t = 0.
- The processor chi (`processor`): applied at each query time, chi^-1 once on the initial
  condition. Its lookup at the read-out point is shared with the partial step's last force.

Cost per orbit with W query times in [0, T]: `lookups_per_orbit` (kernel steps x substeps, the
read-out's W x substeps, chi^-1's lookups).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nh_data.problem import T_END

from . import processor, sensor_spline

READOUTS = ("step", "hermite")


def flow(
    t: Tensor,
    ic: Tensor,
    kernel: Tensor,
    proc: Tensor | None,
    steps: int,
    subs: tuple[float, ...],
    readout: str = "step",
    force: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(q, p) at the query times t (B, W) from ic (B, 2); kernel (B, 99, 5); proc (B, 99, 3, 5) or
    None. `readout`: `step` (a last partial step, exactly symplectic) or `hermite` (cubic Hermite
    between the processed grid states, fourth order; `force`: the table of V' itself, for the
    derivatives there)."""
    if readout == "hermite":
        return _hermite_flow(t, ic, kernel, proc, steps, subs, force)
    h = T_END / steps
    ktab = kernel.unsqueeze(2)  # (B, 99, 1, 5)
    k = torch.floor(t.detach() / h).clamp(min=0, max=steps)  # whole steps before each query time
    n = int(k.max().item()) if k.numel() else 0
    qs, ps, fs = trajectory(*start(ic, ktab, proc), ktab, h, n, subs)
    idx = k.long()
    q, p, F = (x.gather(1, idx) for x in (qs, ps, fs))  # the states at k h
    last = torch.cat([ktab, proc], dim=2) if proc is not None else None
    q, p, _, values = step(q, p, F, t - k * h, ktab, subs, last)
    if proc is not None:
        q, p = processor.apply(q, p, values[..., 1:])
    return q, p


def start(ic: Tensor, ktab: Tensor, proc: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's first state and force, each (B, 1): chi^-1 of the initial condition (its last
    lookup also reads the force) or, without a processor, the initial condition itself."""
    if proc is not None:
        q, p, F = processor.invert(ic[:, :1], ic[:, 1:], proc, ktab)
        return q, p, F[..., 0]
    q, p = ic[:, :1], ic[:, 1:]
    return q, p, sensor_spline.lookup(ktab, q)[..., 0]


def step(q, p, F, dt, ktab: Tensor, subs: tuple[float, ...], last_tables: Tensor | None = None):
    """One step of dt of the composition of Strang substeps on the kernel table; the force at the
    end is the next step's start. `last_tables` (stacked with the kernel's first): the last lookup
    reads them all, returned as `values` (else None). Returns (q, p, F, values)."""
    values = None
    for j, a in enumerate(subs):
        p = p - (0.5 * a) * dt * F
        q = q + a * dt * p
        if last_tables is not None and j == len(subs) - 1:
            values = sensor_spline.lookup(last_tables, q)
            F = values[..., 0]
        else:
            F = sensor_spline.lookup(ktab, q)[..., 0]
        p = p - (0.5 * a) * dt * F
    return q, p, F, values


def trajectory(q, p, F, ktab: Tensor, h: float, n: int, subs: tuple[float, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """n fixed steps of h from the state (B, 1): q, p and the force at every grid point, (B, n + 1) each."""
    qs, ps, fs = [q[:, 0]], [p[:, 0]], [F[:, 0]]
    for _ in range(n):
        q, p, F, _ = step(q, p, F, h, ktab, subs)
        qs.append(q[:, 0])
        ps.append(p[:, 0])
        fs.append(F[:, 0])
    # stacked step-major ((n + 1, B): contiguous rows, a fast copy), read as (B, n + 1)
    return tuple(torch.stack(x).T for x in (qs, ps, fs))


def lookups_per_orbit(steps: int, n_substeps: int, n_times: int, processed: bool, readout: str = "step") -> int:
    """Lookups (force evaluations) of `flow` on one orbit whose last query time is T."""
    start = processor.INVERSE_ITERATIONS + 1 if processed else 1
    if readout == "hermite":  # the read-out is free; chi costs one lookup per grid state
        return start + steps * n_substeps + ((steps + 1) if processed else 0)
    return start + steps * n_substeps + n_times * n_substeps


def _hermite_flow(t, ic, kernel, proc, steps, subs, force):
    """The whole trajectory, chi at every grid state, cubic Hermite between them."""
    h = T_END / steps
    ktab = kernel.unsqueeze(2)
    qs, ps, fs = trajectory(*start(ic, ktab, proc), ktab, h, steps, subs)  # (B, steps + 1)
    if proc is not None:  # chi at every grid state, and V' there for the Hermite derivative
        d1 = sensor_spline.derivative_table(force)
        values = sensor_spline.lookup(torch.cat([proc, force.unsqueeze(2), d1.unsqueeze(2)], dim=2), qs)
        Qs, Ps = processor.apply(qs, ps, values[..., :3])
        fs = values[..., 3] + values[..., 4] * (Qs - qs)  # V'(Q) to O(|Q - q|^2) = O(h^4)
        qs, ps = Qs, Ps
    return hermite(qs, ps, fs, t, h)


def hermite(qs: Tensor, ps: Tensor, fs: Tensor, t: Tensor, h: float) -> tuple[Tensor, Tensor]:
    """Cubic Hermite interpolation of grid states (B, G) with forces fs = V'(q) at query times t (B, W)."""
    G = qs.shape[1]
    k = torch.floor(t / h).clamp(0, G - 2)
    s = t / h - k
    k = k.long()

    def at(x, j):
        return x.gather(1, k + j)

    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    q = h00 * at(qs, 0) + h * h10 * at(ps, 0) + h01 * at(qs, 1) + h * h11 * at(ps, 1)
    p = h00 * at(ps, 0) - h * h10 * at(fs, 0) + h01 * at(ps, 1) - h * h11 * at(fs, 1)
    return q, p
