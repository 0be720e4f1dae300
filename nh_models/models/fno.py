"""FNO: a Fourier neural operator encoder over the 100 sensors, a Transformer decoder over query times.

Encoder (Li et al. 2021): lift (V(x_j), x_j) to d_model channels, then `fourier_layers` layers

    v <- GELU( K v + W v ),   (K v)(x) = IDFT_M[ R_k * DFT_M[v](k) ]

where DFT_M keeps the lowest `modes` frequencies and R_k (d x d, complex) mixes channels
per frequency (no GELU after the last layer). With only M of the 51 rfft frequencies
kept, the truncated transform and its inverse are two small real matrices, (2M, 100)
and (100, 2M): `spectral_conv` is three matmuls (real arithmetic, no FFT call) and
equals irfft(R * rfft(v)[:M], n=100) exactly (tested against torch.fft).

Decoder: `layers.QueryDecoder` over the query times, attending to the encoder output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nh_data.errors import NHError

from .base import (
    N_SENSORS,
    OperatorModel,
    check_divisible,
    check_nonnegative_floats,
    check_positive_ints,
    input_widths,
    scale_outputs,
    sensor_inputs,
)
from .heads import CHEBYSHEV, SequenceOptions, TokenBasisHead, patchify
from .layers import QueryDecoder


@dataclass
class FNOConfig(SequenceOptions):
    """The reference's configuration (SPEC section 8): d_model 128, 3 Fourier layers, 16 modes,
    decoder 16 heads, 2 layers, feed-forward 128. `features` and `scale` are the input and
    output options of `base.sensor_inputs`; `decoder: chebyshev` replaces the decoder over
    query times by the basis head of `heads` (defaults: the reference's network)."""

    d_model: int = 128
    fourier_layers: int = 3
    modes: int = 16
    nhead: int = 16
    decoder_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.0
    features: str = "sensors"
    scale: bool = False
    decoder: str = "attention"

    def __post_init__(self) -> None:
        check_positive_ints(
            self, "d_model", "fourier_layers", "modes", "nhead", "decoder_layers", "dim_feedforward"
        )
        check_nonnegative_floats(self, "dropout")
        check_divisible(self, "d_model", "nhead")
        self.check_sequence("attention")
        if self.modes > self.tokens // 2:
            raise NHError(f"FNOConfig.modes must be at most {self.tokens // 2}, got {self.modes}")


def dft_matrices(n: int, modes: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Real matrices of the truncated DFT and of its inverse (irfft with the other modes zero).

    forward (2M, n): rows [Re; Im] of sum_j v_j exp(-2 pi i j k / n), k < M.
    inverse (n, 2M): v_j = (1/n) [Re Y_0 + 2 sum_{0<k<M} (Re Y_k cos - Im Y_k sin)(2 pi j k / n)]
    (irfft ignores Im Y_0; M <= n/2 so no Nyquist term).
    """
    j = torch.arange(n, dtype=torch.float64)
    k = torch.arange(modes, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(k, j) / n  # (M, n)
    forward = torch.cat([torch.cos(angle), -torch.sin(angle)])  # (2M, n)
    weight = torch.full((modes,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    inverse = (
        torch.cat([torch.cos(angle) * weight[:, None], -torch.sin(angle) * weight[:, None]]).T / n
    )  # (n, 2M)
    inverse[:, modes] = 0.0  # Im Y_0 does not contribute
    return forward.to(dtype), inverse.to(dtype)


def spectral_conv(v: Tensor, forward: Tensor, inverse: Tensor, w_re: Tensor, w_im: Tensor) -> Tensor:
    """K v for v (B, n, d_in): forward (2M, n), inverse (n, 2M), w_re (M, d_in, d_out) -> (B, n, d_out).

    w_im (M - 1, d_in, d_out) holds Im R_k for k >= 1: Im R_0 would multiply Im v^_0 = 0 and
    feed Im Y_0, which the inverse ignores, so it is not a parameter (it would get no gradient).
    """
    M = w_re.shape[0]
    w_im = torch.cat([w_im.new_zeros(1, *w_im.shape[1:]), w_im])  # (M, d_in, d_out)
    X = torch.matmul(forward, v)  # (B, 2M, d_in): [Re; Im] of the kept modes
    X = torch.cat([X[:, :M], X[:, M:]], dim=-1).transpose(0, 1)  # (M, B, 2 d_in): [Re | Im] per mode
    # complex product per mode as one real matmul: [Re | Im] @ [[W_re, W_im], [-W_im, W_re]]
    W = torch.cat(
        [torch.cat([w_re, w_im], dim=-1), torch.cat([-w_im, w_re], dim=-1)], dim=1
    )  # (M, 2 d_in, 2 d_out)
    Y = torch.bmm(X, W).transpose(0, 1)  # (B, M, 2 d_out)
    d_out = w_re.shape[-1]
    Y = torch.cat([Y[..., :d_out], Y[..., d_out:]], dim=1)  # (B, 2M, d_out): [Re; Im]
    return torch.matmul(inverse, Y)  # (B, n, d_out)


class SpectralConv1d(nn.Module):
    """Fourier layer kernel K on a fixed grid of n points, `modes` lowest frequencies."""

    def __init__(self, d_in: int, d_out: int, modes: int, n: int = N_SENSORS) -> None:
        super().__init__()
        scale = 1.0 / math.sqrt(d_in * modes)
        self.w_re = nn.Parameter(scale * torch.randn(modes, d_in, d_out))
        self.w_im = nn.Parameter(scale * torch.randn(modes - 1, d_in, d_out))
        forward, inverse = dft_matrices(n, modes)
        self.register_buffer("forward_dft", forward, persistent=False)  # (2M, n)
        self.register_buffer("inverse_dft", inverse, persistent=False)  # (n, 2M)

    def forward(self, v: Tensor) -> Tensor:
        return spectral_conv(v, self.forward_dft, self.inverse_dft, self.w_re, self.w_im)  # (B, n, d_out)


class FNO(OperatorModel, config=FNOConfig, order=5, paper=True):
    name = "fno"

    def __init__(self, config: FNOConfig) -> None:
        super().__init__(config)
        c = config
        channels, ic_dim = input_widths(c.features)
        # the sensor channels (of `patch` neighbouring sensors) and the position of each token
        self.lift = nn.Linear(c.patch * channels + 1, c.d_model)
        self.register_buffer(
            "sensors", torch.linspace(0.0, 1.0, N_SENSORS).view(-1, c.patch).mean(1), persistent=False
        )  # (L,) token positions: the sensors' (patch 1) or each group's mean
        self.spectral = nn.ModuleList(
            SpectralConv1d(c.d_model, c.d_model, c.modes, n=c.tokens) for _ in range(c.fourier_layers)
        )
        self.pointwise = nn.ModuleList(nn.Linear(c.d_model, c.d_model) for _ in range(c.fourier_layers))
        self.norm = nn.LayerNorm(c.d_model)
        if c.decoder == CHEBYSHEV:
            self.head = TokenBasisHead(c.d_model, c.tokens, ic_dim, c)
        else:
            self.decoder = QueryDecoder(
                c.d_model, c.nhead, c.decoder_layers, c.dim_feedforward, c.dropout, ic_dim=ic_dim
            )

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        sensors, cond = sensor_inputs(V, ic, self.config.features, self.config.scale)  # (B, 100, C)
        sensors = patchify(sensors, self.config.patch)  # (B, L, patch * C), L = 100 / patch
        x = self.sensors.expand(V.shape[0], -1).unsqueeze(-1)  # (B, L, 1) token positions
        v = self.lift(torch.cat([sensors, x], dim=-1))  # (B, L, d_model)
        last = len(self.spectral) - 1
        for i, (K, W) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            v = K(v) + W(v)  # (B, L, d_model)
            if i < last:
                v = F.gelu(v)
        memory = self.norm(v)  # (B, L, d_model)
        if self.config.decoder == CHEBYSHEV:
            return scale_outputs(*self.head(memory, cond, t), self.config.scale)
        return scale_outputs(*self.decoder(t, cond, memory), self.config.scale)  # (B, W), (B, W)
