"""MambONet: a Mamba encoder over the 100 sensor values, a Transformer decoder over query times.

The encoder's parameters live in `mambapy.mamba.Mamba` (so its state_dict is mambapy's);
its forward pass is written out here (`mamba_block`), the same maths as
`mambapy.mamba.MambaBlock.forward`, with the selective scan chosen by `config.scan`:

- "fast": `scan.selective_scan` (chunked over the batch, no padding, recomputing backward);
- "pscan": mambapy's parallel scan (pads L = 100 to 128, materialises (B, L, ED, N));
- "seq": mambapy's sequential reference scan.

All three compute the same function; only speed and memory differ.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mambapy.mamba import Mamba, MambaBlock, MambaConfig
from torch import Tensor, nn

from nh_data.errors import NHError

from .base import (
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
from .scan import selective_scan

SCANS = ("fast", "pscan", "seq")


@dataclass
class MambONetConfig(SequenceOptions):
    """Paper configuration (SPEC section 8): d_model 128, 4 Mamba layers, decoder 4 heads,
    4 layers, feed-forward 1024. d_state, d_conv and expand are mambapy's defaults.
    `features` and `scale` are the input and output options of `base.sensor_inputs`;
    `decoder: chebyshev` replaces the decoder over query times by the basis head of `heads`
    (defaults: the paper's network).
    """

    d_model: int = 128
    mamba_layers: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    nhead: int = 4
    decoder_layers: int = 4
    dim_feedforward: int = 1024
    dropout: float = 0.0
    scan: str = "fast"
    features: str = "sensors"
    scale: bool = False
    decoder: str = "attention"

    def __post_init__(self) -> None:
        check_positive_ints(
            self,
            "d_model",
            "mamba_layers",
            "d_state",
            "d_conv",
            "expand",
            "nhead",
            "decoder_layers",
            "dim_feedforward",
        )
        check_nonnegative_floats(self, "dropout")
        check_divisible(self, "d_model", "nhead")
        if self.scan not in SCANS:
            raise NHError(f"MambONetConfig.scan must be one of {', '.join(SCANS)}, got {self.scan!r}")
        self.check_sequence("attention")


def mamba_block(block: MambaBlock, x: Tensor, scan: str) -> Tensor:
    """One mambapy MambaBlock (B, L, D) -> (B, L, D) with the selective scan `scan`."""
    cfg = block.config
    L = x.shape[1]
    xz = block.in_proj(x)  # (B, L, 2 ED)
    x, z = xz.chunk(2, dim=-1)  # (B, L, ED) each
    x = F.silu(block.conv1d(x.transpose(1, 2))[:, :, :L].transpose(1, 2))  # causal depthwise conv, (B, L, ED)
    wide = torch.promote_types(block.A_log.dtype, torch.float32)  # float32, or float64 in a float64 model
    A = -torch.exp(block.A_log.to(wide))  # (ED, N)
    D = block.D.to(wide)  # (ED,)
    delta, B, C = torch.split(block.x_proj(x), [cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
    delta = F.softplus(F.linear(delta, block.dt_proj.weight, block.dt_proj.bias))  # (B, L, ED)
    if scan == "fast":
        y = selective_scan(x, delta, A, B, C, D)  # (B, L, ED)
    elif scan == "pscan":
        y = block.selective_scan(x, delta, A, B, C, D)
    else:
        y = block.selective_scan_seq(x, delta, A, B, C, D)
    return block.out_proj(y * F.silu(z))  # (B, L, D)


def mamba_forward(mamba: Mamba, x: Tensor, scan: str) -> Tensor:
    """mambapy's Mamba stack: x <- x + MambaBlock(RMSNorm(x)) per layer; (B, L, D) -> (B, L, D)."""
    for layer in mamba.layers:
        x = x + mamba_block(layer.mixer, layer.norm(x), scan)  # (B, L, D)
    return x


class MambONet(OperatorModel, config=MambONetConfig, order=4, paper=True):
    name = "mambonet"

    def __init__(self, config: MambONetConfig) -> None:
        super().__init__(config)
        c = config
        channels, ic_dim = input_widths(c.features)
        self.embed = nn.Linear(c.patch * channels, c.d_model)
        self.mamba = Mamba(
            MambaConfig(
                d_model=c.d_model,
                n_layers=c.mamba_layers,
                d_state=c.d_state,
                d_conv=c.d_conv,
                expand_factor=c.expand,
            )
        )
        self.norm = nn.LayerNorm(c.d_model)
        if c.decoder == CHEBYSHEV:
            self.head = TokenBasisHead(c.d_model, c.tokens, ic_dim, c)
        else:
            self.decoder = QueryDecoder(
                c.d_model, c.nhead, c.decoder_layers, c.dim_feedforward, c.dropout, ic_dim=ic_dim
            )

    def for_derivatives(self) -> MambONet:
        """A shallow copy (the same parameters) with mambapy's sequential scan: the same function
        of plain operations, which forward-mode differentiation accepts (the fast scan's custom
        autograd Function is reverse mode only)."""
        other = copy.copy(self)
        other.config = dataclasses.replace(self.config, scan="seq")
        return other

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        sensors, cond = sensor_inputs(V, ic, self.config.features, self.config.scale)  # (B, 100, C)
        x = self.embed(patchify(sensors, self.config.patch))  # (B, L, d_model), L = 100 / patch
        memory = self.norm(mamba_forward(self.mamba, x, self.config.scan))  # (B, L, d_model)
        if self.config.decoder == CHEBYSHEV:
            return scale_outputs(*self.head(memory, cond, t), self.config.scale)
        return scale_outputs(*self.decoder(t, cond, memory), self.config.scale)  # (B, W), (B, W)
