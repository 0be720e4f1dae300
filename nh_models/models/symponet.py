"""SympONet: an operator network whose map (q0, p0) -> (q(t), p(t)) is symplectic by construction.

Not a network of the paper (there is no paper configuration). For every sensor vector V and
every time t the predicted map is a composition of shears of the phase plane,

    kick   p <- p - h F(q)        drift   q <- q + h G(p)

each of which has Jacobian [[1, 0], [-h F'(q), 1]] or [[1, h G'(p)], [0, 1]], determinant 1,
whatever F and G are (in one dimension every F(q) is the derivative of some U(q)). The steps
sum to t (h = t / steps, or whole steps of a fixed h and a last one of the rest, below), so
the map is the identity at t = 0, exactly. (q0, p0)
enter only as the arguments of the shears: nothing of the initial condition reaches their
parameters (that is why the energy features of models.base are not an option here).

The map at time t, with h = t / steps (`grid: scaled`, the dataclass default):

1. `steps` Strang (leapfrog) steps on the sensors' own force plus a learned correction:
   p <- p - h/2 F(q), then `steps` times [q <- q + h G(p); p <- p - h F(q)] (the last kick a
   half one), with F(q) = V'(q) + f_0(q) and G(p) = p + g_0(p). `prior: yoshida4` makes each
   step Yoshida's fourth-order composition of three leapfrog steps (h w1, h w0, h w1; Yoshida
   1990), three force evaluations a step: still shears, a fourth-order integrator. V' is the derivative of the
   quintic spline through the 100 sensors (C4, so that finite-difference Jacobians of the map
   are accurate); the prior alone is a symplectic integrator of the sensor potential.
   `grid: fixed` (the recommended recipe) runs one trajectory per orbit instead, with the fixed
   step h = T / steps (T the 2-second window), and reads each query time t out of it by a
   last partial step: floor(t / h) whole steps, then one step of t - floor(t / h) h. Still a
   composition of shears, still the identity at t = 0 and continuous in t; the step no longer
   grows with t (a sharp feature of the potential, a kink, is crossed in steps of h at every
   t), chaining windows is the same as integrating straight through, and the cost is
   `steps` force evaluations per orbit instead of per query time. Its learned correction
   (f_0, g_0) is autonomous: amplitudes of (z, 0), not of the query time, scaled by
   `correction` (a prior this accurate wants small corrections: 1e-3 in the recipe).
2. `shears` learned pairs p <- p - t f_k(q), q <- q + t g_k(p), k = 1..shears: a near-identity
   correction of what is left.

Each learned function is a sum of `ridges` ridge functions with a closed-form value (no
nested autograd): f(x) = sum_i a_i tanh(w_i x + c_i), the derivative of
U(x) = sum_i (a_i / w_i) log cosh(w_i x + c_i). A hypernetwork sets their parameters: an MLP
encodes the (scaled) sensors into a latent z; the directions and offsets (w_i, c_i) are a
linear function of z (one set per orbit), the amplitudes a_i an MLP of (z, t) (one set per
query point). `steps: 0` leaves only the learned shears (a SympNet whose layers are set by
the potential and the time).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nh_data.errors import NHError
from nh_data.integrators import LEAPFROG, YOSHIDA4
from nh_data.problem import T_END

from . import processed, processor
from .base import N_SENSORS, OperatorModel, check_positive_ints, mlp, scale_sensors
from .correction import TABLES, GridCorrection
from .sensor_spline import derivative_table, force_table, local_table, sensor_force

__all__ = ["SympONet", "SympONetConfig", "force_table", "sensor_force"]
# the prior's integrators: the leapfrog substep weights of one step (the engine's compositions)
PRIORS = {m.name: tuple(float(w) for w in m.weights) for m in (LEAPFROG, YOSHIDA4)}
# how the prior's step is set: h = t / steps for each query time t, or h = T_END / steps fixed;
# `processed`: the fixed grid with a learned modified potential and processor (issue 21)
GRIDS = ("scaled", "fixed", "processed")
INITS = ("zero", "classical")  # the processed grid's correction at the start of training


@dataclass
class SympONetConfig:
    """Recommended size (configs/symponet.yaml); there is no paper configuration.

    `latent`: width of z; `nodes`, `encoder_layers`, `hyper_layers`: width and Linear-layer
    counts of the sensor encoder and of the amplitude network; `steps`: leapfrog steps of the
    sensor-force prior (0: none); `prior`: its integrator, leapfrog or yoshida4 (each step
    three leapfrog substeps, fourth order); `grid`: `scaled` (h = t / steps, one integration per
    query time; the default, so that older checkpoints keep their meaning) or `fixed` (h = 2 /
    steps, one trajectory per orbit read out at every query time); `correction`: the scale of the
    prior's learned correction (its amplitudes times this; a good prior wants a small one);
    `shears`: learned (kick, drift) pairs after it; `ridges`:
    ridge functions per learned kick or drift; `scale`: centre and scale V on the way into the
    encoder (the prior always uses V itself; the outputs are never rescaled, which would
    break the area preservation).

    `grid: processed` (issue 21): the fixed grid's kernel runs on a learned modified potential
    V + dV given on the sensor grid, conjugated by a learned symplectic processor (displacement
    a and kick b on the sensor grid), chi o Phi_h^n o chi^-1: `models.processed`. dV, a and b are
    outputs of `models.correction.GridCorrection`, a local operator of V (`local_width`,
    `local_layers`, `local_kernel`: its CNN); `init`: `zero` (no correction) or `classical` (the
    textbook correction of leapfrog, Takahashi and Imada 1984, in its linear part). No encoder,
    no ridges, no shears on this grid. `readout`: `step` (each query time by a last partial step:
    exactly symplectic, read-out error O(h^3)), `scaled` (the partial step with the correction
    and the processor scaled to it, leapfrog only: exactly symplectic, the O(h^3) error gone;
    the forces and the processor read at every grid state, `models.processed._scaled_flow`),
    `corrected` (`step` with a learned read-out generator of two weights folded into chi, leapfrog
    only: the same lookups, the partial step's leading error taken back; `models.processed.flow`) or
    `hermite` (cubic Hermite between the processed grid states: fourth order, area-preserving
    only at the grid points; chi at every grid state).

    `tables`: how the correction's grid values are read at q: `spline` (the quintic sensor spline
    of V + dV and of the processor's integrals, a solve per orbit; the default, so that older
    checkpoints keep their meaning) or `local` (local C1 cubics, `sensor_spline.local_table`,
    the force correction dF from the dictionary's derivatives: no solve) or `own` (what is
    linear in V read from V's own table, exactly, the rest through one local cubic, no kick;
    `models.correction`) or `inline` (the textbook correction's two terms evaluated at each lookup
    from V's own table, with learned weights: no table of the correction; leapfrog, `readout:
    step`, the linear dictionary alone).
    `learned`: false applies only the prior (every learned correction zero: the same weights,
    the integrator alone), the baseline every SympONet is shown beside.
    """

    latent: int = 128
    nodes: int = 256
    encoder_layers: int = 3
    hyper_layers: int = 3
    steps: int = 96
    shears: int = 2
    ridges: int = 8
    scale: bool = True
    prior: str = "leapfrog"
    grid: str = "scaled"
    correction: float = 1.0
    learned: bool = True
    init: str = "zero"
    local_width: int = 32
    local_layers: int = 2
    local_kernel: int = 5
    readout: str = "step"
    tables: str = "spline"

    def __post_init__(self) -> None:
        check_positive_ints(self, "latent", "nodes", "encoder_layers", "hyper_layers", "ridges")
        for name in ("steps", "shears"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise NHError(f"SympONetConfig.{name} must be an integer >= 0, got {value!r}")
        if self.steps == 0 and self.shears == 0:
            raise NHError("SympONetConfig needs steps >= 1 or shears >= 1 (else the map is the identity)")
        if not isinstance(self.scale, bool):
            raise NHError(f"SympONetConfig.scale must be true or false, got {self.scale!r}")
        if self.prior not in PRIORS:
            raise NHError(f"SympONetConfig.prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if isinstance(self.correction, bool) or not isinstance(self.correction, (int, float)) or not (
            math.isfinite(self.correction) and self.correction > 0
        ):
            raise NHError(f"SympONetConfig.correction must be a number > 0, got {self.correction!r}")
        if self.grid not in GRIDS:
            raise NHError(f"SympONetConfig.grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")
        for name in ("learned", "scale"):
            if not isinstance(getattr(self, name), bool):
                raise NHError(f"SympONetConfig.{name} must be true or false, got {getattr(self, name)!r}")
        check_positive_ints(self, "local_width", "local_kernel")
        if isinstance(self.local_layers, bool) or not isinstance(self.local_layers, int) or self.local_layers < 0:
            raise NHError(f"SympONetConfig.local_layers must be an integer >= 0, got {self.local_layers!r}")
        if self.init not in INITS:
            raise NHError(f"SympONetConfig.init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.readout not in processed.READOUTS:
            raise NHError(
                f"SympONetConfig.readout must be one of {', '.join(processed.READOUTS)}, got {self.readout!r}"
            )
        if self.tables not in TABLES:
            raise NHError(f"SympONetConfig.tables must be one of {', '.join(TABLES)}, got {self.tables!r}")
        if self.readout != "step" and self.grid != "processed":
            raise NHError(f"SympONetConfig: readout {self.readout} is a read-out of grid processed")
        if self.readout in ("scaled", "corrected") and self.prior != "leapfrog":
            raise NHError(f"SympONetConfig: readout {self.readout} is a read-out of a leapfrog kernel (prior: leapfrog)")
        if self.tables in ("own", "inline") and self.local_layers:
            raise NHError(f"SympONetConfig: tables {self.tables} is the linear dictionary alone (local_layers: 0)")
        if self.tables == "inline" and (self.readout != "step" or self.prior != "leapfrog"):
            raise NHError("SympONetConfig: tables inline is a correction of leapfrog read out by steps (prior: leapfrog, readout: step)")
        if self.grid == "processed":
            if self.steps < 1 or self.shears:
                raise NHError("SympONetConfig: grid processed needs steps >= 1 and shears: 0")
            if self.init == "classical" and self.prior != "leapfrog":
                raise NHError("SympONetConfig: init classical is the correction of leapfrog (prior: leapfrog)")


# ----------------------------------------------------------------- the network


def ridge(x: Tensor, amp: Tensor, w: Tensor, c: Tensor) -> Tensor:
    """sum_i amp_i tanh(w_i x + c_i): x (B, W), amp (B, W, n), w and c (B, n) -> (B, W)."""
    arg = torch.addcmul(c.unsqueeze(1), x.unsqueeze(-1), w.unsqueeze(1))  # (B, W, n)
    return (amp * torch.tanh(arg)).sum(-1)


class SympONet(OperatorModel, config=SympONetConfig, order=6):
    name = "symponet"

    def __init__(self, config: SympONetConfig) -> None:
        super().__init__(config)
        if config.grid == "processed":
            self.local = GridCorrection(T_END / config.steps, config.local_width, config.local_layers,
                                        config.local_kernel, config.tables, config.readout == "corrected")  # fmt: skip
            if config.init == "classical":
                self.local.classical()
            self.infer_tokens = 400_000  # a trajectory per orbit: inference blocks of many orbits
            return
        n = config.ridges
        self.groups = config.shears + (1 if config.steps else 0)  # sets of (f, g)
        hidden = [config.nodes] * (config.encoder_layers - 1)
        self.encoder = mlp([N_SENSORS, *hidden, config.latent])
        # directions and offsets of every ridge function: a linear function of z
        self.ridge_head = nn.Linear(config.latent, self.groups * 2 * 2 * n)
        # amplitudes: MLP of (z, t); first layer A z + a t + b
        n_amp = self.groups * 2 * n
        width = config.nodes if config.hyper_layers > 1 else n_amp
        self.amp_in = nn.Linear(config.latent, width)
        self.amp_t = nn.Parameter(torch.randn(width) / math.sqrt(2.0))
        amp_hidden = [config.nodes] * (config.hyper_layers - 1)
        self.amp_rest = mlp([*amp_hidden, n_amp]) if amp_hidden else None
        if config.steps and config.grid == "fixed":
            # the trajectory loop runs on (orbits, 1) tensors: its cost is per step, not per
            # element, so inference blocks of many orbits (10x the base class's query points)
            self.infer_tokens = 100_000
        self._init_heads()

    def _init_heads(self) -> None:
        """Ridges spread over the phase plane (q in [0, 1], p in [-2, 2]); amplitudes near 0."""
        n, G = self.config.ridges, self.groups
        with torch.no_grad():
            self.ridge_head.weight.mul_(0.1)
            bias = self.ridge_head.bias.view(G, 2, 2, n)  # group, (f of q | g of p), (w | c)
            sign = torch.randint(0, 2, (G, 2, n)).float() * 2 - 1
            w = sign * torch.cat(
                [torch.empty(G, 1, n).uniform_(2.0, 8.0), torch.empty(G, 1, n).uniform_(0.5, 3.0)], dim=1
            )
            centre = torch.cat([torch.rand(G, 1, n), torch.empty(G, 1, n).uniform_(-2.0, 2.0)], dim=1)
            bias[:, :, 0] = w
            bias[:, :, 1] = -w * centre
            last = self.amp_rest[-1] if self.amp_rest is not None else self.amp_in
            last.weight.mul_(0.01)  # the prior alone at first: corrections grow from ~0
            last.bias.zero_()

    def hyper(self, V: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The ridge parameters: amplitudes (B, W, G, 2, n), directions and offsets (B, G, 2, n)."""
        return self._params(self._latent(V), t)

    def _latent(self, V: Tensor) -> Tensor:
        return self.encoder(scale_sensors(V, self.config.scale))  # (B, latent)

    def _amplitudes(self, z: Tensor, t: Tensor) -> Tensor:
        h = torch.addcmul(self.amp_in(z).unsqueeze(1), t.unsqueeze(-1), self.amp_t)  # (B, W, nodes)
        amp = self.amp_rest(F.gelu(h)) if self.amp_rest is not None else h
        return amp.view(*t.shape, self.groups, 2, self.config.ridges)

    def _params(self, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        wc = self.ridge_head(z).view(z.shape[0], self.groups, 2, 2, self.config.ridges)
        return self._amplitudes(z, t), wc[:, :, :, 0], wc[:, :, :, 1]

    def force_evaluations_per_orbit(self, n_times: int) -> int:
        """Force evaluations (lookups of the sensor spline, `models.sensor_spline`) spent on one
        orbit with `n_times` query times in [0, 2], read-out included: the cost to compare with
        an integrator's."""
        c = self.config
        subs = len(PRIORS[c.prior])
        if c.grid == "processed":
            return processed.lookups_per_orbit(c.steps, subs, n_times, c.learned, c.readout)
        if c.grid == "fixed" and c.steps:
            return 1 + c.steps * subs + n_times * subs
        return n_times * (1 + c.steps * subs) if c.steps else 0

    def num_parameters(self) -> int:
        """Trainable scalars that the forward pass reads: with `tables: own` or `inline` the
        dictionary's unused weights (`GridCorrection.unused_weights`) are not counted."""
        unused = self.local.unused_weights() if self.config.grid == "processed" else 0
        return super().num_parameters() - unused

    def prior_alone(self) -> SympONet:
        """The same network with `learned: false`: its weights, its prior integrator only."""
        import copy

        other = copy.deepcopy(self)
        other.config = dataclasses.replace(self.config, learned=False)
        return other

    def variant(self, readout: str = "", steps: int = 0) -> SympONet:
        """The same weights with another read-out or kernel step count (on the processed grid the
        dictionary's weights are per h^2, so they carry over), in eval mode; the network itself
        when neither is given (0 or "": unchanged). NHError on a negative step count or a bad
        combination."""
        if not readout and not steps:
            return self
        if steps < 0:
            raise NHError(f"steps must be a positive number of kernel steps, got {steps}")
        changes = {k: v for k, v in (("readout", readout), ("steps", steps)) if v}
        other = type(self)(dataclasses.replace(self.config, **changes))
        p = next(self.parameters())
        other = other.to(device=p.device, dtype=p.dtype).eval()
        # the read-out generator exists with `readout: corrected` only: to another read-out it is
        # dropped; to `corrected` from one without it, it is the textbook's (`GridCorrection.classical`)
        gen = "local.generator"
        missing, unexpected = other.load_state_dict(self.state_dict(), strict=False)
        if set(missing) - {gen} or set(unexpected) - {gen}:
            raise NHError(f"variant: the weights do not fit ({sorted(set(missing) | set(unexpected))})")
        if missing:
            other.local.textbook_generator()
        return other

    def classical_alone(self) -> SympONet | None:
        """The same processed grid with the textbook correction of leapfrog instead of the learned
        one (linear part at the classical coefficients, no CNN): what the structure gives untrained.
        None unless `grid: processed` with the leapfrog prior."""
        c = self.config
        if c.grid != "processed" or c.prior != "leapfrog":
            return None
        cfg = dataclasses.replace(c, init="classical", local_layers=0, learned=True)
        p = next(self.parameters())
        return type(self)(cfg).to(device=p.device, dtype=p.dtype)

    def fixed_parts(self) -> list[tuple[str, SympONet]]:
        """What the network is without its training, each shown beside it (`nh eval`, the
        equal-cost table): ("prior alone", `prior_alone()`) and, on the processed grid with the
        leapfrog prior, ("classical coefficients", `classical_alone()`). Each in eval mode."""
        parts = [("prior alone", self.prior_alone().eval())]
        classical = self.classical_alone()
        if classical is not None:
            parts.append(("classical coefficients", classical.eval()))
        return parts

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        if self.config.grid == "processed":
            return self._processed(V, t, ic)
        B, W = t.shape
        z = self._latent(V)
        wc = self.ridge_head(z).view(B, self.groups, 2, 2, self.config.ridges)
        w, c = wc[..., 0, :].unbind(1), wc[..., 1, :].unbind(1)  # per group: (B, 2, n)
        fixed = bool(self.config.steps) and self.config.grid == "fixed"
        # amplitudes per query time: (B, W, G, 2, n); on the fixed grid only the shears after the
        # prior need them (its correction is autonomous: amplitudes at t = 0, one set per orbit)
        amp = self._amplitudes(z, t) if self.config.shears or not fixed else None
        if amp is not None and not self.config.learned:
            amp = torch.zeros_like(amp)  # the prior alone: every correction and shear zero

        def functions(a: Tensor, g: int):  # the (f, g) pair of group g: one view each, taken once
            return (a[..., 0, :], w[g][:, 0], c[g][:, 0]), (a[..., 1, :], w[g][:, 1], c[g][:, 1])

        scale = self.config.correction

        q, p = ic[:, :1].expand(B, W), ic[:, 1:].expand(B, W)
        first = 0
        if self.config.steps:
            first = 1
            table = force_table(V)
            if fixed:
                a0 = self._amplitudes(z, t.new_zeros(B, 1))[:, :, 0]
                f0, g0 = functions(scale * a0 if self.config.learned else torch.zeros_like(a0), 0)
                q, p = self._fixed_grid(t, ic, table, f0, g0)
            else:
                f0, g0 = functions(amp[:, :, 0] if scale == 1 else scale * amp[:, :, 0], 0)
                q, p = self._scaled_grid(t, q, p, table, f0, g0)
        for g in range(first, self.groups):
            f, gg = functions(amp[:, :, g], g)
            p = p - t * ridge(q, *f)
            q = q + t * ridge(p, *gg)
        return q, p

    def _processed(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        """chi o Phi_h^n o chi^-1 with the learned dV, a, b (`grid: processed`)."""
        c = self.config
        subs = PRIORS[c.prior]
        if not c.learned:
            return processed.flow(t, ic, force_table(V), None, c.steps, subs, c.readout)
        if c.tables == "inline":  # the correction at each lookup from V's own table, no table of its own
            force = force_table(V)
            k, alpha = self.local.inline()
            a1 = alpha * force
            proc = processor.stack_tables(a1, derivative_table(a1), torch.zeros_like(a1))
            kernel = processor.stack_tables(force, derivative_table(force))

            def combine(values: Tensor, q: Tensor) -> Tensor:  # V' + k V' V'' (V'' zero outside the box)
                v1 = values[..., 0]
                return v1 + k * (v1 * processor.slope(q, values[..., 1]))

            return processed.flow(t, ic, kernel, proc, c.steps, subs, c.readout, combine=combine)
        if c.tables == "own":  # the linear part from V's own table, exactly (`GridCorrection.own`)
            force = force_table(V)
            kernel, proc = self.local.own(V, force)
            return processed.flow(t, ic, kernel, proc, c.steps, subs, c.readout, force, self.local.generator_weights())
        d, a, b = self.local(V)  # dV, or with tables: local its force dF
        force = force_table(V) if c.readout in ("hermite", "scaled") else None
        if c.tables == "local":  # V's own table, computed once
            kernel = (force if force is not None else force_table(V)) + local_table(d)
            proc = processor.local_tables(a, b)
        else:
            kernel, proc = force_table(V + d), processor.tables(a, b)
        return processed.flow(t, ic, kernel, proc, c.steps, subs, c.readout, force, self.local.generator_weights())

    def _scaled_grid(self, t: Tensor, q: Tensor, p: Tensor, table: Tensor, f0, g0) -> tuple[Tensor, Tensor]:
        """`steps` steps of h = t / steps for every query time: (B, W) states throughout."""
        N = self.config.steps
        h = t / N
        # the leapfrog substeps (in units of h), each a half kick, a drift and a half kick;
        # the half kicks of neighbouring substeps merged into one
        drifts = PRIORS[self.config.prior] * N
        halves = (0.0, *drifts, 0.0)
        kicks = [(a + b) / 2 for a, b in zip(halves[:-1], halves[1:], strict=True)]  # len(drifts) + 1
        p = p - kicks[0] * h * (sensor_force(table, q) + ridge(q, *f0))
        for d, kick in zip(drifts, kicks[1:], strict=True):
            q = q + d * h * (p + ridge(p, *g0))
            p = p - kick * h * (sensor_force(table, q) + ridge(q, *f0))
        return q, p

    def _fixed_grid(self, t: Tensor, ic: Tensor, table: Tensor, f0, g0) -> tuple[Tensor, Tensor]:
        """One trajectory per orbit with h = T_END / steps, read out at each query time t by
        floor(t / h) whole steps and a last step of the rest: (B, W) states at the end."""
        h = T_END / self.config.steps
        subs = PRIORS[self.config.prior]

        def force(q: Tensor) -> Tensor:
            return sensor_force(table, q) + ridge(q, *f0)

        def step(q: Tensor, p: Tensor, Fq: Tensor, dt) -> tuple[Tensor, Tensor, Tensor]:
            for a in subs:  # Strang substeps; the force at the end is the next one's start
                p = p - (0.5 * a) * dt * Fq
                q = q + a * dt * (p + ridge(p, *g0))
                Fq = force(q)
                p = p - (0.5 * a) * dt * Fq
            return q, p, Fq

        k = torch.floor(t.detach() / h).clamp(min=0)  # whole steps before each query time (B, W)
        n = int(k.max().item()) if k.numel() else 0
        q, p = ic[:, :1], ic[:, 1:]  # (B, 1)
        Fq = force(q)
        qs, ps, fs = [q], [p], [Fq]
        for _ in range(n):
            q, p, Fq = step(q, p, Fq, h)
            qs.append(q)
            ps.append(p)
            fs.append(Fq)
        idx = k.long()
        q, p, Fq = (torch.cat(x, dim=1).gather(1, idx) for x in (qs, ps, fs))  # the states at k h
        return step(q, p, Fq, t - k * h)[:2]
