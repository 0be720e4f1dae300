"""DeepONet (Lu et al. 2021): branch MLP on the problem, trunk MLP on the query time.

    q(t) = sum_k b_k(V, q0, p0) tau_k(t) + c_q,   p(t) = sum_k b_{K+k}(V, q0, p0) tau_{K+k}(t) + c_p

with K = `branches`. The branch encodes everything that defines one orbit: the sensor values
of V and, through an MLP embedding added to its first hidden layer, the initial condition
(q0, p0). The trunk encodes the query coordinate alone, as in Lu et al. and in the
reference, so `tau(t)` does not depend on the orbit.

That split decides the cost. When all orbits of a batch are asked for at the same times (a
uniform grid: v1 data, the physics set, chained windows) the trunk runs once on the W
times and the batch costs one small branch pass per orbit plus a (B, 2K) x (2K, W)
contraction. With per-orbit times (v1.33 data) the trunk runs on all B*W query points at
once (one matmul per layer), not once per time column as the reference did; at evaluation
the base class feeds a large batch in blocks of 10,000 points, whose activations stay in
the CPU cache.

Options beyond the paper (defaults = the paper's network; measured in docs/results.md):

- `trunk: chebyshev` replaces the trunk MLP by the fixed Chebyshev basis T_0..T_{K-1} of
  x = 2 t / T - 1, shared by q and p: the orbits of one 2-second window are smooth, and 48
  to 64 Chebyshev terms span them to 1e-7 (the best rank-64 basis reaches 1e-8). Its cost
  does not depend on a width, and per-orbit times cost no more than a shared grid.
- `features: energy` adds to the branch input what decides the motion: E0 = p0^2/2 + V(q0)
  (V linearly interpolated between sensors) and, at every sensor, the signed root
  +-sqrt|E0 - V|, positive only on the classically allowed interval that holds q0 (the
  well the particle cannot leave), negative elsewhere.
- `scale: true` centres and scales V on the way in and q, p on the way out by fixed
  constants (the spread of the training data), so that every layer starts at unit scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nh_data.errors import NHError

from .base import (
    N_SENSORS,
    ICEmbedding,
    OperatorModel,
    check_input_options,
    check_inputs,
    check_positive_ints,
    energy_features,
    mlp,
    scale_outputs,
    scale_sensors,
)
from .heads import chebyshev_basis, chebyshev_expand, shared_grid

TRUNKS = ("mlp", "chebyshev")


@dataclass
class DeepONetConfig:
    """Paper configuration (SPEC section 8): nodes 128, layers 3, branches 10.

    `layers` counts the Linear layers of the branch and of the trunk.
    """

    nodes: int = 128
    layers: int = 3
    branches: int = 10
    trunk: str = "mlp"
    features: str = "sensors"
    scale: bool = False

    def __post_init__(self) -> None:
        check_positive_ints(self, "nodes", "layers", "branches")
        if self.trunk not in TRUNKS:
            raise NHError(f"DeepONetConfig.trunk must be one of {', '.join(TRUNKS)}, got {self.trunk!r}")
        check_input_options(self)
        if self.trunk == "chebyshev" and self.branches < 2:
            raise NHError("DeepONetConfig.branches must be >= 2 with trunk: chebyshev")


def inner_product(branch: Tensor, trunk: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2K) branch and (B, W, 2K) trunk features -> q, p (B, W): first K for q, last K for p."""
    B, W, K2 = trunk.shape
    prod = trunk.view(B, W, 2, K2 // 2) * branch.view(B, 1, 2, K2 // 2)  # (B, W, 2, K)
    out = prod.sum(-1) + bias  # (B, W, 2)
    return out[..., 0], out[..., 1]


class DeepONet(OperatorModel, config=DeepONetConfig, order=1, paper=True):
    name = "deeponet"

    def __init__(self, config: DeepONetConfig) -> None:
        super().__init__(config)
        n_out = 2 * config.branches
        hidden = [config.nodes] * (config.layers - 1)
        h1 = hidden[0] if hidden else n_out
        # branch = branch_in (100 -> h1; 201 with the energy features) + ic embedding, then GELU
        # and the remaining layers
        n_in = N_SENSORS if config.features == "sensors" else 2 * N_SENSORS + 1
        self.branch_in = nn.Linear(n_in, h1)
        self.ic_embed = ICEmbedding(config.nodes, h1)
        self.branch_rest = mlp([h1, *hidden[1:], n_out]) if hidden else None
        # trunk = trunk_in (1 -> h1), then GELU and the remaining layers: a function of t alone
        self.chebyshev = config.trunk == "chebyshev"
        if not self.chebyshev:
            self.trunk_in = nn.Linear(1, h1)
            self.trunk_rest = mlp([h1, *hidden[1:], n_out]) if hidden else None
        self.bias = nn.Parameter(torch.zeros(2))  # (c_q, c_p)

    def branch(self, V: Tensor, ic: Tensor) -> Tensor:
        """(B, 100) sensors and (B, 2) initial conditions -> (B, 2K) coefficients."""
        x = scale_sensors(V, self.config.scale)
        if self.config.features == "energy":
            x = torch.cat([x, energy_features(V, ic)], dim=1)  # (B, 201)
        h = self.branch_in(x) + self.ic_embed(ic)  # (B, h1)
        return self.branch_rest(F.gelu(h)) if self.branch_rest is not None else h

    def trunk(self, t: Tensor) -> Tensor:
        """Times of any shape S -> (*S, 2K) basis values (the Chebyshev basis twice: q and p)."""
        if self.chebyshev:
            basis = chebyshev_basis(t, self.config.branches)
            return torch.cat([basis, basis], dim=-1)
        # first layer, input width 1: w t + b as one fused multiply-add, not a K = 1 matmul
        h = torch.addcmul(self.trunk_in.bias, t.unsqueeze(-1), self.trunk_in.weight.view(-1))  # (*S, h1)
        return self.trunk_rest(F.gelu(h)) if self.trunk_rest is not None else h

    def forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        """V (B, 100), t (B, W), ic (B, 2) -> q, p (B, W); one trunk pass when t is shared."""
        check_inputs(V, t, ic)
        return scale_outputs(*self._raw(V, t, ic), self.config.scale)

    def _raw(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        B, W = t.shape
        if self.chebyshev:  # one basis for q and p; (B, W, K) x (B, K) per channel
            return chebyshev_expand(self.branch(V, ic).view(B, 2, -1), t, self.bias)
        if shared_grid(t):
            coef = self.branch(V, ic).view(B, 2, -1)  # (B, 2, K)
            basis = self.trunk(t[0]).view(W, 2, -1)  # (W, 2, K), once for the whole batch
            q = torch.addmm(self.bias[0], coef[:, 0], basis[:, 0].t())  # (B, W)
            p = torch.addmm(self.bias[1], coef[:, 1], basis[:, 1].t())  # (B, W)
            return q, p
        if torch.is_grad_enabled() or torch.is_autocast_enabled(t.device.type):
            return self._forward(V, t, ic)  # (autocast does not apply to the buffers' out= ops)
        return self._infer_blocks(self.branch(V, ic), t)

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        return inner_product(self.branch(V, ic), self.trunk(t), self.bias)  # trunk (B, W, 2K)

    def _infer_blocks(self, coef: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Trunk and inner product without autograd, in blocks of about `infer_tokens` query
        points that reuse two preallocated work buffers: the same arithmetic as `_forward`,
        but no fresh multi-megabyte tensor per layer, whose page faults (glibc hands large
        freed blocks back to the kernel) made the time per orbit vary 2.5x from run to run."""
        B, W = t.shape
        K2 = coef.shape[1]
        rows = min(B, max(1, (self.infer_tokens or B * W) // W))  # orbits per block
        linears = (
            [m for m in self.trunk_rest if isinstance(m, nn.Linear)] if self.trunk_rest is not None else []
        )
        width = max([self.trunk_in.out_features] + [m.out_features for m in linears])
        bufs = [t.new_empty(rows * W * width), t.new_empty(rows * W * width)]
        w_in, b_in = self.trunk_in.weight.view(-1), self.trunk_in.bias
        q, p = t.new_empty(B, W), t.new_empty(B, W)
        for s in range(0, B, rows):
            e = min(B, s + rows)
            n = (e - s) * W
            x = bufs[0][: n * w_in.numel()].view(n, -1)
            torch.addcmul(b_in, t[s:e].reshape(n, 1), w_in, out=x)  # first layer (n, h1)
            for i, lin in enumerate(linears):
                torch.ops.aten.gelu_(x)
                y = bufs[(i + 1) % 2][: n * lin.out_features].view(n, lin.out_features)
                torch.addmm(lin.bias, x, lin.weight.t(), out=y)
                x = y
            basis = x.view(e - s, W, 2, K2 // 2)
            out = (basis * coef[s:e].view(e - s, 1, 2, K2 // 2)).sum(-1) + self.bias  # (rows, W, 2)
            q[s:e], p[s:e] = out[..., 0], out[..., 1]
        return q, p
