"""A neural operator defined outside Neural Hamilton: an MLP from (V, q0, p0, t) to (q, p).

    nh train my_mlp --plugin examples/my_operator.py --data parquet_data/1000
    nh eval runs/my_mlp-... --plugin examples/my_operator.py
    python bench/accuracy.py --plugin examples/my_operator.py --models my_mlp,deeponet ...

The encoder maps the 100 sensor values and the initial condition to a code z; the decoder maps
(z, t) at every query time to a correction, and the orbit is

    q(t) = q0 + t * a(z, t),   p(t) = p0 + t * b(z, t)

so that it starts exactly at (q0, p0). docs/extending.md walks through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nh_data.errors import NHError
from nh_models import OperatorModel, register_model


@dataclass
class MyMLPConfig:
    """Every field has a default: `get_model("my_mlp")` builds this configuration."""

    width: int = 64  # hidden units of the encoder and of the decoder
    code: int = 32  # size of the code z of one orbit

    def __post_init__(self) -> None:
        for key in ("width", "code"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NHError(f"MyMLPConfig.{key} must be an integer >= 1, got {value!r}")


class MyMLP(OperatorModel):
    """forward(V (B, 100), t (B, W), ic (B, 2)) -> q, p (B, W); the base class checks the shapes."""

    def __init__(self, config: MyMLPConfig) -> None:
        super().__init__(config)
        w = config.width
        self.encoder = nn.Sequential(nn.Linear(100 + 2, w), nn.GELU(), nn.Linear(w, config.code))
        self.decoder = nn.Sequential(nn.Linear(config.code + 1, w), nn.GELU(), nn.Linear(w, 2))

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        B, W = t.shape
        z = self.encoder(torch.cat([V, ic], dim=1))  # (B, code)
        x = torch.cat([z.unsqueeze(1).expand(B, W, -1), t.unsqueeze(-1)], dim=-1)  # (B, W, code + 1)
        ab = self.decoder(x)  # (B, W, 2)
        return ic[:, :1] + t * ab[..., 0], ic[:, 1:] + t * ab[..., 1]


# What `nh train my_mlp` uses without --config: data, like a YAML config file (the keys of the
# config dataclass under `model`, the trainer's under `train`).
DEFAULT_CONFIG = {
    "model": {"width": 64, "code": 32},
    "train": {
        "epochs": 50,
        "batch_size": 100,
        "lr": 1e-3,
        "infimum_lr": 1e-5,
        "schedule": "cosine",
        "warmup": 0.05,
    },
}

register_model("my_mlp", MyMLP, MyMLPConfig, default_config=DEFAULT_CONFIG)
