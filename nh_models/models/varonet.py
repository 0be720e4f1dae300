"""VaRONet: a variational recurrent operator network (LSTM seq2seq with a Gaussian latent).

    (h, c) = BiLSTM_enc(V)                                  over the 100 sensor values
    mu, logvar = W_mu h, W_var h                            (2 layers, B, latent) each
    z = mu + exp(logvar / 2) eps    (training)   z = mu    (eval: no sampling)
    h0 = W_z z + E(q0, p0),  c0 = c                         decoder initial state, one per output
    q = W_q BiLSTM_q(t; h0_q, c0),   p = W_p BiLSTM_p(t; h0_p, c0)

With `decoder: chebyshev` the two LSTM decoders give way to the basis head of `heads`: the
latent z of every encoder layer and direction, flattened, is mapped to the Chebyshev
coefficients of q and p. `features` and `scale` are the input and output options of
`base.sensor_inputs` (the encoder reads C channels per sensor).

`regularizer()` returns kl_weight * KL(N(mu, sigma^2) || N(0, 1)) of the last training-mode
forward pass (the KL averaged over batch, layers and latent components); zero in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import (
    ICEmbedding,
    OperatorModel,
    check_nonnegative_floats,
    check_positive_ints,
    input_widths,
    scale_outputs,
    sensor_inputs,
)
from .heads import CHEBYSHEV, BasisHead, SequenceOptions, patchify


@dataclass
class VaRONetConfig(SequenceOptions):
    """Paper configuration (SPEC section 8): hidden 512, layers 4, latent 30, dropout 0, kl_weight 0.1
    (the reference's tuned value: 0.055)."""

    hidden_size: int = 512
    num_layers: int = 4
    latent_size: int = 30
    dropout: float = 0.0
    kl_weight: float = 0.1
    features: str = "sensors"
    scale: bool = False
    decoder: str = "lstm"

    def __post_init__(self) -> None:
        check_positive_ints(self, "hidden_size", "num_layers", "latent_size")
        check_nonnegative_floats(self, "dropout", "kl_weight")
        self.check_sequence("lstm")


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Mean over all components of KL(N(mu, exp(logvar)) || N(0, 1)) (a scalar)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()


def reparameterize(mu: Tensor, logvar: Tensor, sample: bool) -> Tensor:
    """z = mu + exp(logvar / 2) * eps with eps ~ N(0, 1) when `sample`, else mu."""
    if not sample:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class _Decoder(nn.Module):
    """Bidirectional LSTM over the query times and a linear read-out: (B, W) -> (B, W)."""

    def __init__(self, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(1, hidden, layers, batch_first=True, dropout=dropout, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, t: Tensor, h0: Tensor, c0: Tensor) -> Tensor:
        o, _ = self.rnn(t.unsqueeze(-1), (h0, c0))  # (B, W, 2 H)
        return self.out(o).squeeze(-1)  # (B, W)


class VaRONet(OperatorModel, config=VaRONetConfig, order=2, paper=True):
    name = "varonet"
    infer_tokens = None  # the LSTMs' per-step matmuls prefer the whole batch

    def __init__(self, config: VaRONetConfig) -> None:
        super().__init__(config)
        c = config
        drop = c.dropout if c.num_layers > 1 else 0.0  # nn.LSTM warns about dropout with one layer
        channels, ic_dim = input_widths(c.features)
        self.encoder = nn.LSTM(
            c.patch * channels,
            c.hidden_size,
            c.num_layers,
            batch_first=True,
            dropout=drop,
            bidirectional=True,
        )
        self.fc_mu = nn.Linear(c.hidden_size, c.latent_size)
        self.fc_logvar = nn.Linear(c.hidden_size, c.latent_size)
        if c.decoder == CHEBYSHEV:
            self.head = BasisHead(2 * c.num_layers * c.latent_size, ic_dim, c)
        else:
            self.fc_z_q = nn.Linear(c.latent_size, c.hidden_size)
            self.fc_z_p = nn.Linear(c.latent_size, c.hidden_size)
            self.ic_embed = ICEmbedding(c.hidden_size, c.hidden_size, ic_dim)
            self.decoder_q = _Decoder(c.hidden_size, c.num_layers, drop)
            self.decoder_p = _Decoder(c.hidden_size, c.num_layers, drop)
        self._kl: Tensor | None = None

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        sensors, cond = sensor_inputs(V, ic, self.config.features, self.config.scale)  # (B, 100, C)
        _, (h, c) = self.encoder(
            patchify(sensors, self.config.patch)
        )  # (2 layers, B, H) each: 2 directions x num_layers
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)  # (2 layers, B, Z) each
        z = reparameterize(mu, logvar, sample=self.training)  # (2 layers, B, Z)
        self._kl = gaussian_kl(mu, logvar) if self.training else None
        if self.config.decoder == CHEBYSHEV:
            q, p = self.head(z.transpose(0, 1).flatten(1), cond, t)  # z: (B, 2 layers * Z)
            return scale_outputs(q, p, self.config.scale)
        e = self.ic_embed(cond).unsqueeze(0)  # (1, B, H)
        q = self.decoder_q(t, self.fc_z_q(z) + e, c)  # (B, W)
        p = self.decoder_p(t, self.fc_z_p(z) + e, c)  # (B, W)
        return scale_outputs(q, p, self.config.scale)

    def regularizer(self) -> Tensor:
        """kl_weight * KL of the last training-mode forward; zero in eval mode or before any forward."""
        if not self.training or self._kl is None:
            return super().regularizer()
        return self.config.kl_weight * self._kl
