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

READOUTS = ("step", "hermite", "scaled", "corrected")


def flow(
    t: Tensor,
    ic: Tensor,
    kernel: Tensor,
    proc: Tensor | None,
    steps: int,
    subs: tuple[float, ...],
    readout: str = "step",
    force: Tensor | None = None,
    generator: Tensor | None = None,
    combine=None,
) -> tuple[Tensor, Tensor]:
    """(q, p) at the query times t (B, W) from ic (B, 2); kernel (B, 99, 5); proc (B, 99, 3, 5) or
    None. With `combine` (`readout: step` only) the kernel is a stack of tables (B, 99, K, 5) and
    its force at q is combine(values (..., K), q) of their lookup (`tables: inline`: V' and V'').
    `readout`: `step` (a last partial step, exactly symplectic), `scaled` (the same with the
    correction and the processor scaled to the partial step, `_scaled_flow`: exactly
    symplectic, without the partial step's O(h^2 tau) error; `step` without a processor) or
    `hermite` (cubic Hermite between the processed grid states, fourth order) or `corrected`
    (`step` with chi replaced by `processor.apply_generated`, whose generator, of weights
    `generator` (2,), takes back the partial step's O(h^2 tau) error at no further lookup);
    `force`: the table of V' itself, for `hermite`'s derivatives and `scaled`'s dF.

    Why `corrected` works (leapfrog kernel on V + dV with the processor of its h^2 error): a
    partial step of tau has the modified Hamiltonian H + dV + tau^2 E2, E2 = p^2 V''/12 -
    V'^2/24 (kick-drift-kick), where a whole step has h^2 E2, and the processor cancels dV +
    h^2 E2 only. So chi o S_tau is the exact flow of H + (tau^2 - h^2) E2 to leading order: an
    error tau (h^2 - tau^2) X_E2, largest at tau = h / sqrt(3), which the generator eps E2 with
    eps = tau (h^2 - tau^2) takes back (a near-identity symplectic map, read at the same point).
    It is zero at tau = 0 (the identity at t = 0 stays exact) and at tau = h."""
    if readout == "hermite":
        return _hermite_flow(t, ic, kernel, proc, steps, subs, force)
    if readout == "scaled" and proc is not None:
        return _scaled_flow(t, ic, kernel, proc, steps, subs, force)
    h = T_END / steps
    ktab = kernel.unsqueeze(2) if combine is None else kernel  # (B, 99, K, 5)
    nk = ktab.shape[2]
    force_of = combine or first
    k = torch.floor(t.detach() / h).clamp(min=0, max=steps)  # whole steps before each query time
    n = int(k.max().item()) if k.numel() else 0
    qs, ps, fs = trajectory(*start(ic, ktab, proc, force_of), ktab, h, n, subs, force_of)
    idx = k.long()
    q, p, F = (x.gather(1, idx) for x in (qs, ps, fs))  # the states at k h
    corrected = readout == "corrected" and proc is not None
    if corrected:  # the kernel's V'' and V''' read in the same lookup
        d1 = sensor_spline.derivative_table(kernel)
        last = torch.cat([ktab, torch.stack([d1, sensor_spline.derivative_table(d1)], dim=2), proc], dim=2)
    else:
        last = torch.cat([ktab, proc], dim=2) if proc is not None else None
    tau = t - k * h
    q, p, _, values = step(q, p, F, tau, ktab, subs, last, force_of)
    if corrected:
        eps = tau * (h * h - tau * tau)
        return processor.apply_generated(q, p, values[..., 3:], values[..., :3], eps, generator)
    if proc is not None:
        q, p = processor.apply(q, p, values[..., nk:])
    return q, p


def first(values: Tensor, q: Tensor) -> Tensor:
    """The kernel's force from the lookup of its table: the first value (`flow`'s `combine`)."""
    return values[..., 0]


def start(ic: Tensor, ktab: Tensor, proc: Tensor | None, force_of=first) -> tuple[Tensor, Tensor, Tensor]:
    """The kernel's first state and force, each (B, 1): chi^-1 of the initial condition (its last
    lookup also reads the force) or, without a processor, the initial condition itself."""
    if proc is not None:
        q, p, F = processor.invert(ic[:, :1], ic[:, 1:], proc, ktab)
        return q, p, force_of(F, q)
    q, p = ic[:, :1], ic[:, 1:]
    return q, p, force_of(sensor_spline.lookup(ktab, q), q)


def step(q, p, F, dt, ktab: Tensor, subs: tuple[float, ...], last_tables: Tensor | None = None, force_of=first):
    """One step of dt of the composition of Strang substeps on the kernel's tables (its force at
    q: force_of of their lookup); the force at the end is the next step's start. `last_tables`
    (stacked after the kernel's): the last lookup reads them all, returned as `values` (else
    None). Returns (q, p, F, values)."""
    values = None
    nk = ktab.shape[2]
    for j, a in enumerate(subs):
        p = p - (0.5 * a) * dt * F
        q = q + a * dt * p
        if last_tables is not None and j == len(subs) - 1:
            values = sensor_spline.lookup(last_tables, q)
            F = force_of(values[..., :nk], q)
        else:
            F = force_of(sensor_spline.lookup(ktab, q), q)
        p = p - (0.5 * a) * dt * F
    return q, p, F, values


def trajectory(q, p, F, ktab: Tensor, h: float, n: int, subs: tuple[float, ...], force_of=first) -> tuple[Tensor, Tensor, Tensor]:
    """n fixed steps of h from the state (B, 1): q, p and the force at every grid point, (B, n + 1) each."""
    qs, ps, fs = [q[:, 0]], [p[:, 0]], [F[:, 0]]
    for _ in range(n):
        q, p, F, _ = step(q, p, F, h, ktab, subs, None, force_of)
        qs.append(q[:, 0])
        ps.append(p[:, 0])
        fs.append(F[:, 0])
    # stacked step-major ((n + 1, B): contiguous rows, a fast copy), read as (B, n + 1)
    return tuple(torch.stack(x).T for x in (qs, ps, fs))


def lookups_per_orbit(steps: int, n_substeps: int, n_times: int, processed: bool, readout: str = "step") -> int:
    """Lookups (force evaluations) of `flow` on one orbit whose last query time is T. One lookup
    is one point, whatever it reads there (the processor is read with the partial step's last
    force). `hermite` and `scaled` charge what they read at each grid state as a lookup of its
    own, although the kernel looked up its force at that very point: conservative, where the
    classical processed baseline (`evaluation.sensor_integrators`) reads both in one."""
    start = processor.INVERSE_ITERATIONS + 1 if processed else 1
    if readout == "hermite":  # the read-out is free; chi costs one lookup per grid state
        return start + steps * n_substeps + ((steps + 1) if processed else 0)
    if readout == "scaled" and processed:  # the values at every grid state, a partial step per time
        return start + steps * n_substeps + (steps + 1) + n_times * n_substeps
    return start + steps * n_substeps + n_times * n_substeps


def _scaled_flow(t, ic, kernel, proc, steps, subs, force):
    """The scaled read-out (leapfrog kernel): a query time t = k h + tau, s = (tau / h)^2, is
    chi_s o S_tau o chi_(1 - s) of the grid state k, where chi_c is the processor with A and B
    scaled by c and S_tau one leapfrog step of tau on V + s dV. At tau = 0 it is chi at the grid
    state, at tau = h chi after a whole kernel step: continuous in t, a composition of shears and
    lifts (exactly symplectic), and the O(h^2 tau) error of an unscaled partial step is gone: the
    modified Hamiltonian of chi_s S_tau chi_s^-1 is H + s (dV + h^2 H_2 + {G, H}) to O(h^4), which
    the kernel's correction zeroes. The first half kick's force at chi_(1 - s)'s point is V' + s dF
    at the grid state plus its first-order Taylor term (a function of the point alone, so still a
    kick; its error O(h^4)). `force`: the table of V' itself (dF = kernel - force). The
    processor's and the forces' values at the grid states are one stacked lookup each."""
    h = T_END / steps
    ktab = kernel.unsqueeze(2)
    k = torch.floor(t.detach() / h).clamp(min=0, max=steps)
    n = int(k.max().item()) if k.numel() else 0
    qs, ps, _ = trajectory(*start(ic, ktab, proc), ktab, h, n, subs)
    dF = kernel - force
    side = torch.cat([torch.stack([force, dF, sensor_spline.derivative_table(force),
                                   sensor_spline.derivative_table(dF)], dim=2), proc], dim=2)  # fmt: skip
    idx = k.long()
    grid = sensor_spline.lookup(side, qs)  # (B, n + 1, 7) at every grid state
    q, p = qs.gather(1, idx), ps.gather(1, idx)
    v = grid.gather(1, idx.unsqueeze(-1).expand(*idx.shape, grid.shape[-1]))
    tau = t - k * h
    s = (tau / h) ** 2
    q1, p1 = processor.apply(q, p, v[..., 4:], 1.0 - s)
    F1 = v[..., 0] + s * v[..., 1] + (v[..., 2] + s * v[..., 3]) * (q1 - q)
    p1 = p1 - (0.5 * tau) * F1
    q2 = q1 + tau * p1
    w = sensor_spline.lookup(side[:, :, [0, 1, 4, 5, 6]], q2)
    p2 = p1 - (0.5 * tau) * (w[..., 0] + s * w[..., 1])
    return processor.apply(q2, p2, w[..., 2:], s)


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
