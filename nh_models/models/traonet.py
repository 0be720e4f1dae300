"""TraONet: a Transformer encoder over the 100 sensor values, a Transformer decoder over query times.

Encoder tokens: a linear embedding of each sensor value V(x_j), scaled by sqrt(d_model),
plus the sinusoidal encoding of the sensor index j (with `patch` > 1: of each group of
`patch` neighbouring sensors and the group's index). Decoder tokens: an MLP embedding
of each query time plus the MLP embedding of (q0, p0); they attend to each other and
to the encoder memory (see `layers.QueryDecoder`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from .base import (
    OperatorModel,
    check_divisible,
    check_nonnegative_floats,
    check_positive_ints,
    input_widths,
    scale_outputs,
    sensor_inputs,
    sinusoidal_table,
)
from .heads import CHEBYSHEV, SequenceOptions, TokenBasisHead, patchify
from .layers import QueryDecoder, TransformerEncoder


@dataclass
class TraONetConfig(SequenceOptions):
    """Paper configuration (SPEC section 8): d_model 64, nhead 8, layers 3, feed-forward 512, dropout 0.

    `num_layers` is the depth of the encoder and of the decoder. `features` and `scale` are the
    input and output options of `base.sensor_inputs`; `decoder: chebyshev` replaces the
    decoder over query times by the basis head of `heads` (defaults: the paper's network).
    """

    d_model: int = 64
    nhead: int = 8
    num_layers: int = 3
    dim_feedforward: int = 512
    dropout: float = 0.0
    features: str = "sensors"
    scale: bool = False
    decoder: str = "attention"

    def __post_init__(self) -> None:
        check_positive_ints(self, "d_model", "nhead", "num_layers", "dim_feedforward")
        check_nonnegative_floats(self, "dropout")
        check_divisible(self, "d_model", "nhead")
        self.check_sequence("attention")


class TraONet(OperatorModel, config=TraONetConfig, order=3, paper=True):
    name = "traonet"

    def __init__(self, config: TraONetConfig) -> None:
        super().__init__(config)
        c = config
        channels, ic_dim = input_widths(c.features)
        self.embed = nn.Linear(c.patch * channels, c.d_model)
        self.register_buffer("pos", sinusoidal_table(c.tokens, c.d_model), persistent=False)  # (L, d)
        self.encoder = TransformerEncoder(c.d_model, c.nhead, c.num_layers, c.dim_feedforward, c.dropout)
        if c.decoder == CHEBYSHEV:
            self.head = TokenBasisHead(c.d_model, c.tokens, ic_dim, c)
        else:
            self.decoder = QueryDecoder(
                c.d_model, c.nhead, c.num_layers, c.dim_feedforward, c.dropout, ic_dim=ic_dim
            )
        self.scale = math.sqrt(c.d_model)

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        sensors, cond = sensor_inputs(V, ic, self.config.features, self.config.scale)  # (B, 100, C)
        x = self.embed(patchify(sensors, self.config.patch)) * self.scale + self.pos  # (B, L, d_model)
        memory = self.encoder(x)  # (B, L, d_model), L = 100 / patch
        if self.config.decoder == CHEBYSHEV:
            return scale_outputs(*self.head(memory, cond, t), self.config.scale)
        return scale_outputs(*self.decoder(t, cond, memory), self.config.scale)  # (B, W), (B, W)
