"""A learned correction on the sensor grid: an operator from V to three grid functions,
a modified-potential term dV and the processor's displacement a = A' and kick b = B'
(`processor`), at sensor resolution.

Backward error analysis says what a fixed-step splitting method with step h gets wrong: it is
the exact flow of a modified Hamiltonian H + h^2 H_2 + h^4 H_4 + ..., and for Strang splitting
of H = p^2 / 2 + V(q) the terms are local polynomials in the derivatives of V at q (H_2 a
combination of V'^2 and p^2 V''; Hairer, Lubich and Wanner, *Geometric Numerical Integration*,
ch. IX). So the correction is local too: each output at sensor i is

    h^2 [ sum_c w_oc f_c(x_i) + CNN(asinh(f / s))_o(x_i) ]

over a dictionary of local features f_c of V at the sensors (V, V', V'', V''' and the
products of the orders of H_2 and H_4: V'^2, V'^2 V'', V''^2, V' V''', V'^4; derivatives of the
quintic sensor spline, `sensor_spline.nodal_derivatives`), each divided by its typical size
s_c on the training distribution. The linear part w (a 1 x 1 convolution) can state the classical
corrections exactly (dV = -V'^2 / 24, a = A' = -V' / 12 for leapfrog, with b = 0); the CNN, a stack of
1-D convolutions over the 100 sensors with a receptive field of a few sensor spacings, learns
what the dictionary misses. Both start at zero: an untrained correction is no correction.

How the grid values become functions of q (`tables`):

- `spline`: dV, and the integrals A, B of a, b, through the quintic sensor spline
  (`sensor_spline.force_table`, `processor.tables`: one solve of three right-hand sides per orbit);
- `local`: no solve. The first output is the force correction dF = (dV)' itself, the linear
  map of the features' derivatives (`features(V, slopes=True)`: the dictionary is of local
  polynomials in V's derivatives, so their derivatives are too, V'''' from the same spline),
  and dF, a = A', b = B' are read through `sensor_spline.local_table` (`processor.local_tables`),
  local C1 cubics (cubic Hermite with fourth-order slopes). In one dimension every force is the
  derivative of a potential, so the kernel stays a symplectic integrator of V + dV; the same
  weights give the corrections of `spline` to O(dx^4) h^2;
- `own` (`GridCorrection.own`): what is linear in V is read from V's own quintic table, exactly,
  and only the rest through a local cubic. The linear features' part of dF (the derivatives of
  V - V0, V', V'', V''': V' to V'''') is folded into the kernel's table from V's own table and
  its derivatives; dF's nonlinear part (the slopes of V'^2 ... V'^4) is one local C1 cubic
  added to it; A' is the linear features V', V'', V''' alone, read from V's own table (A'' its
  exact derivative), and there is no kick (b = 0: it gives only terms odd in p, which the
  time-symmetric kernel does not have; trained runs left it at zero). The other weights of a and
  the row of b are unused. Nothing that V's spline gives exactly is re-interpolated (that was
  the larger error at the grid points, docs/results.md), and the set-up is V's table, one pass
  over it and one local cubic.
- `inline` (`GridCorrection.inline`): no table of the correction at all. The two terms of the
  textbook correction are evaluated at each lookup from V's own table: the kernel's force is
  V' + k V' V'' (the force of V + (k / 2) V'^2, with k / 2 the weight of V'^2 in dV), and A' =
  alpha V' (alpha the weight of V' in a), A'' = alpha V''; no kick. The other weights are unused.
  The set-up is the prior's (V's table), so side by side nothing but the two multiply-adds a
  lookup is added to the prior's work (docs/results.md, "A correction without tables").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nh_data.problem import V0

from . import sensor_spline

# the dictionary: name -> typical size (90th percentile of |f| over the strata training potentials)
FEATURES = {
    "V": 2.0,  # V - V0 (V0 the wall height: a constant, so the feature stays local)
    "V'": 7.5,
    "V''": 77.0,
    "V'''": 775.0,
    "V'^2": 56.0,
    "V'^2 V''": 2600.0,
    "V''^2": 5900.0,
    "V' V'''": 3900.0,
    "V'^4": 3200.0,
}
# the linear part's weights are stored divided by this: its step under the optimiser's one
# learning rate is LINEAR_GAIN times the CNN's (the classical coefficients are O(1) there)
LINEAR_GAIN = 10.0
OUTPUTS = ("dV", "a", "b")  # modified potential (its force dF with tables: local), a = A', b = B'
TABLES = ("spline", "local", "own", "inline")
LINEAR = 4  # the dictionary's first four features are linear in V (V - V0, V', V'', V''')


def features(V: Tensor, slopes: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The dictionary at the sensors, each divided by its typical size: (B, 100) -> (B, C, 100);
    with `slopes` also d/dx of each feature, divided by the same size."""
    v1, v2, v3, v4 = sensor_spline.nodal_derivatives(V).unbind(1)
    sq = v1 * v1
    f = [V - V0, v1, v2, v3, sq, sq * v2, v2 * v2, v1 * v3, sq * sq]
    scale = torch.tensor(list(FEATURES.values()), dtype=V.dtype, device=V.device)[:, None]
    if not slopes:
        return torch.stack(f, dim=1) / scale
    d = [v1, v2, v3, v4, 2.0 * v1 * v2, (2.0 * v1) * (v2 * v2) + sq * v3, 2.0 * v2 * v3, v2 * v3 + v1 * v4,
         4.0 * (sq * v1) * v2]  # fmt: skip
    return torch.stack(f, dim=1) / scale, torch.stack(d, dim=1) / scale


class GridCorrection(nn.Module):
    """V (B, 100) -> (dV, a, b), each (B, 100): h^2 [linear(features) + CNN(features)]; with
    `tables: local` (dF, a, b), dF from the linear map of the features' slopes."""

    def __init__(
        self, h: float, width: int = 32, layers: int = 2, kernel: int = 5, tables: str = "spline", generator: bool = False
    ) -> None:
        super().__init__()
        if tables not in TABLES:
            raise ValueError(f"tables must be one of {TABLES}, got {tables!r}")
        self.tables = tables
        self.h2 = float(h) ** 2
        C, O = len(FEATURES), len(OUTPUTS)
        self.linear = nn.Conv1d(C, O, 1, bias=False)
        convs: list[nn.Module] = []
        width_in = C
        for _ in range(layers):  # layers = 0: the linear dictionary alone
            convs += [nn.Conv1d(width_in, width, kernel, padding=kernel // 2, padding_mode="replicate"), nn.GELU()]
            width_in = width
        convs.append(nn.Conv1d(width_in, O, 1))
        self.cnn = nn.Sequential(*convs) if layers else None
        # `readout: corrected`: the read-out generator's two weights (`processor.apply_generated`),
        # stored divided by LINEAR_GAIN like the linear part's (the textbook's are 1)
        self.generator = nn.Parameter(torch.zeros(2)) if generator else None
        with torch.no_grad():
            self.linear.weight.zero_()
            if self.cnn is not None:
                self.cnn[-1].weight.zero_()
                self.cnn[-1].bias.zero_()

    def classical(self) -> None:
        """Set the linear part to the classical correction of leapfrog (Takahashi and Imada 1984):
        dV = -(h^2 / 24) V'^2, a = -(h^2 / 12) V', b = 0, and the read-out generator's (1, 1); the
        CNN part unchanged."""
        names = list(FEATURES)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[0, names.index("V'^2"), 0] = -FEATURES["V'^2"] / 24.0 / LINEAR_GAIN
            self.linear.weight[1, names.index("V'"), 0] = -FEATURES["V'"] / 12.0 / LINEAR_GAIN
        self.textbook_generator()

    def textbook_generator(self) -> None:
        """Set the read-out generator, if there is one, to the textbook's weights (1, 1)."""
        if self.generator is not None:
            with torch.no_grad():
                self.generator.fill_(1.0 / LINEAR_GAIN)

    def generator_weights(self) -> Tensor | None:
        """The read-out generator's weights (w0, w1) in the textbook's units, or None."""
        return None if self.generator is None else LINEAR_GAIN * self.generator

    def own(self, V: Tensor, force: Tensor) -> tuple[Tensor, Tensor]:
        """`tables: own`: the kernel's force table and the processor's stacked table (A', A'', B')
        from V (B, 100) and its own table `force` (B, 99, 5) (`sensor_spline.force_table`)."""
        _, d = features(V, slopes=True)  # (B, C, 100), each divided by its typical size
        scale = torch.tensor(list(FEATURES.values()), dtype=V.dtype, device=V.device)
        ws = (self.h2 * LINEAR_GAIN) * self.linear.weight[:, :, 0]  # (3, C), on the scaled features
        w = ws / scale  # on the raw ones, for the linear part read from V's table
        derivs = [force]  # V' and its next three derivatives, exact: the linear features' slopes
        for _ in range(3):
            derivs.append(sensor_spline.derivative_table(derivs[-1]))
        kernel = force + sum(w[0, c] * derivs[c] for c in range(LINEAR))
        nonlinear = torch.einsum("c,bcx->bx", ws[0, LINEAR:], d[:, LINEAR:])
        kernel = kernel + sensor_spline.local_table(nonlinear)
        a1 = sum(w[1, c] * derivs[c - 1] for c in range(1, LINEAR))  # A' from V', V'', V'''
        return kernel, torch.stack([a1, sensor_spline.derivative_table(a1), torch.zeros_like(a1)], dim=2)

    def unused_weights(self) -> int:
        """How many of the linear dictionary's weights the forward pass never reads: `tables: own`
        reads dV's C weights and the LINEAR - 1 of a on V' to V''', `inline` two (V'^2 in dV, V' in
        a); `spline` and `local` read all 3 C."""
        n = self.linear.weight.numel()
        if self.tables == "own":
            return n - len(FEATURES) - (LINEAR - 1)
        if self.tables == "inline":
            return n - 2
        return 0

    def inline(self) -> tuple[Tensor, Tensor]:
        """`tables: inline`: (k, alpha), the kernel's force V' + k V' V'' and the processor's A' =
        alpha V' (k twice the weight of V'^2 in dV, alpha the weight of V' in a, h^2 folded in)."""
        names = list(FEATURES)
        w = (self.h2 * LINEAR_GAIN) * self.linear.weight[:, :, 0]
        return 2.0 * w[0, names.index("V'^2")] / FEATURES["V'^2"], w[1, names.index("V'")] / FEATURES["V'"]

    def forward(self, V: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.tables == "local":  # dF from the slopes, a and b from the features themselves
            f, d = features(V, slopes=True)  # (B, C, 100) each
            w = self.linear.weight
            out = LINEAR_GAIN * torch.cat([F.conv1d(d, w[:1]), F.conv1d(f, w[1:])], dim=1)
        else:
            f = features(V)  # (B, C, 100)
            out = LINEAR_GAIN * self.linear(f)
        if self.cnn is not None:
            out = out + self.cnn(torch.asinh(f))
        out = self.h2 * out  # (B, 3, 100)
        return out[:, 0], out[:, 1], out[:, 2]
