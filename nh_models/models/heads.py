"""The Chebyshev basis of the window and the basis head that any encoder can end in.

An orbit of one 2-second window is smooth in t: the Chebyshev polynomials T_0..T_{K-1} of
x = 2 t / T - 1 span the training orbits to 1e-7 with K = 48 and to 1e-8 with K = 64
(docs/results.md). A model that predicts the 2K coefficients of q(t) and p(t) in that fixed
basis, once per orbit, needs no decoder over the query times at all:

    q(t) = sum_k c_k T_k(x) + b_q,   p(t) = sum_k c_{K+k} T_k(x) + b_p

`chebyshev_expand` evaluates this (one (B, K) x (K, W) matmul per channel when every orbit
of the batch shares one time grid, a batched product otherwise). `BasisHead` maps a flat
encoding (B, n_in) and the decoder condition ((q0, p0), or (q0, p0, E0) with the energy
features) to the coefficients, the condition embedded and added to its first hidden layer
as in DeepONet's branch. `TokenBasisHead` first narrows each encoder token (B, L, d) to
`width` channels and flattens them, which keeps where each sensor is.

The config fields of the option live in `SequenceOptions`, a dataclass the configs of TraONet,
MambONet, FNO and VaRONet inherit: `decoder` (the paper's decoder, or "chebyshev"),
`basis` (K), `head_nodes`, `head_layers` and `head_width`; and `patch`, which groups
`patch` neighbouring sensors into one encoder token (`patchify`: 100 / patch tokens of
patch x C channels, as in ViT and PatchTST), for encoders whose cost grows with the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nh_data.errors import NHError
from nh_data.problem import T_END

from .base import N_SENSORS, ICEmbedding, check_input_options, check_positive_ints, mlp

CHEBYSHEV = "chebyshev"


def chebyshev_basis(t: Tensor, K: int) -> Tensor:
    """T_0..T_{K-1} at x = 2 t / T - 1 (the window [0, T] mapped to [-1, 1]): (*S,) -> (*S, K)."""
    x = (t * (2.0 / T_END) - 1.0).clamp(-1.0, 1.0)
    n = torch.arange(K, dtype=t.dtype, device=t.device)
    return torch.cos(torch.acos(x).unsqueeze(-1) * n)  # T_n(cos a) = cos(n a), one fused pass


def shared_grid(t: Tensor) -> bool:
    """True when every row of t (B, W) holds the same times (then the basis is evaluated once).

    Under torch.compile always False: a data-dependent branch would break the graph, and
    the per-point path computes the same values.
    """
    if torch.compiler.is_compiling():
        return False
    return t.shape[0] == 1 or bool((t == t[:1]).all())


def chebyshev_expand(coef: Tensor, t: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """Coefficients (B, 2, K) of q and p, times (B, W), bias (2,) -> q, p (B, W)."""
    K = coef.shape[-1]
    if shared_grid(t):
        basis = chebyshev_basis(t[0], K)  # (W, K), once for the batch
        q = torch.addmm(bias[0], coef[:, 0], basis.t())  # (B, W)
        p = torch.addmm(bias[1], coef[:, 1], basis.t())  # (B, W)
        return q, p
    basis = chebyshev_basis(t, K)  # (B, W, K)
    out = torch.bmm(basis, coef.transpose(1, 2)) + bias  # (B, W, 2)
    return out[..., 0], out[..., 1]


@dataclass
class SequenceOptions:
    """The basis-head option of a model config (see the module docstring).

    `decoder` is the model's own decoder name (its paper default, set by each config class)
    or "chebyshev"; the other fields are used only with "chebyshev".
    """

    basis: int = 64
    head_nodes: int = 256
    head_layers: int = 3
    head_width: int = 16
    patch: int = 1

    def check_sequence(self, decoder: str) -> None:
        """The checks the sequence models share: the input options (`features`, `scale`:
        `base.check_input_options`), then the head with `decoder`, the model's own decoder."""
        check_input_options(self)
        self.check_head((decoder, CHEBYSHEV))

    def check_head(self, decoders: tuple[str, ...]) -> None:
        """Raise NHError unless `decoder` is one of `decoders` and the head sizes are valid."""
        if self.decoder not in decoders:  # type: ignore[attr-defined]
            raise NHError(
                f"{type(self).__name__}.decoder must be one of {', '.join(decoders)}, got {self.decoder!r}"  # type: ignore[attr-defined]
            )
        check_positive_ints(self, "basis", "head_nodes", "head_layers", "head_width", "patch")
        if self.basis < 2:
            raise NHError(f"{type(self).__name__}.basis must be >= 2, got {self.basis}")
        if N_SENSORS % self.patch:
            raise NHError(f"{type(self).__name__}.patch must divide {N_SENSORS}, got {self.patch}")

    @property
    def tokens(self) -> int:
        """Encoder tokens: N_SENSORS / patch."""
        return N_SENSORS // self.patch


def patchify(x: Tensor, patch: int) -> Tensor:
    """(B, n, C) per-sensor channels -> (B, n / patch, patch * C): neighbouring sensors side by side."""
    B, n, C = x.shape
    return x.reshape(B, n // patch, patch * C)


class BasisHead(nn.Module):
    """(B, n_in) encoding, (B, cond_dim) condition, (B, W) times -> q, p (B, W) in the Chebyshev basis."""

    def __init__(self, n_in: int, cond_dim: int, options: SequenceOptions) -> None:
        super().__init__()
        nodes, K = options.head_nodes, options.basis
        self.K = K
        self.inp = nn.Linear(n_in, nodes)
        self.cond = ICEmbedding(nodes, nodes, cond_dim)
        self.rest = mlp([nodes] * options.head_layers + [2 * K])  # head_layers Linear layers after inp
        self.bias = nn.Parameter(torch.zeros(2))  # (b_q, b_p)

    def coefficients(self, x: Tensor, cond: Tensor) -> Tensor:
        """(B, n_in), (B, cond_dim) -> (B, 2, K)."""
        h = F.gelu(self.inp(x) + self.cond(cond))  # (B, nodes)
        return self.rest(h).view(-1, 2, self.K)  # (B, 2, K)

    def forward(self, x: Tensor, cond: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return chebyshev_expand(self.coefficients(x, cond), t, self.bias)


class TokenBasisHead(nn.Module):
    """Encoder tokens (B, L, d) -> each narrowed to `head_width` channels, flattened -> BasisHead."""

    def __init__(self, d_model: int, tokens: int, cond_dim: int, options: SequenceOptions) -> None:
        super().__init__()
        self.narrow = nn.Linear(d_model, options.head_width)
        self.head = BasisHead(tokens * options.head_width, cond_dim, options)

    def forward(self, memory: Tensor, cond: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        x = self.narrow(memory).flatten(1)  # (B, L * width)
        return self.head(x, cond, t)
