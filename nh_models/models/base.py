"""The common interface of the operator networks and the small pieces they share.

Every model maps

    V  (B, 100)  potential at the 100 uniform sensors of [0, 1]
    t  (B, W)    query times in [0, 2]
    ic (B, 2)    initial condition (q0, p0)

to (q, p), each (B, W). `regularizer()` is the extra term added to the loss
(zero for every model but VaRONet). Each model keeps its typed config as
`self.config` (a dataclass: `dataclasses.asdict(model.config)` rebuilds it with
`get_model(model.name, ...)`) and its registry name as `self.name`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nh_data.errors import NHError
from nh_data.problem import N_SENSORS  # V is sampled at np.linspace(0, 1, 100)

# ----------------------------------------------------------------- config checks


def check_positive_ints(config: Any, *names: str) -> None:
    """Raise NHError unless each named field of the dataclass is an int >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NHError(f"{type(config).__name__}.{name} must be an integer >= 1, got {value!r}")


def check_nonnegative_floats(config: Any, *names: str) -> None:
    """Raise NHError unless each named field is a finite real number >= 0 (ints are converted)."""
    for name in names:
        value = getattr(config, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise NHError(f"{type(config).__name__}.{name} must be a finite number >= 0, got {value!r}")
        object.__setattr__(config, name, float(value))


def check_divisible(config: Any, d_model: str, nhead: str) -> None:
    """Raise NHError unless config.<d_model> is a multiple of config.<nhead>."""
    if getattr(config, d_model) % getattr(config, nhead):
        raise NHError(
            f"{type(config).__name__}.{d_model} ({getattr(config, d_model)}) must be a multiple of "
            f"{nhead} ({getattr(config, nhead)})"
        )


# ----------------------------------------------------------------- the interface


@dataclasses.dataclass(frozen=True)
class BuiltIn:
    """A built-in model as its class registered it (`OperatorModel.__init_subclass__`)."""

    name: str
    config_class: type
    model_class: type[OperatorModel]
    order: int  # its place in MODEL_NAMES
    paper: bool  # a network of the paper (a recipe in configs/paper/)


#: the built-in models by name, each registered where it is defined (its class statement)
BUILT_IN: dict[str, BuiltIn] = {}


class OperatorModel(nn.Module):
    """Base class: forward(V, t, ic) -> (q, p); regularizer() -> scalar tensor.

    Subclasses implement `_forward`. Without autograd (evaluation) a large batch is cut into
    blocks of about `infer_tokens` query points (samples are independent), which keeps the
    activations in the CPU cache: 1.4-1.6x faster at batch 1,000 for the Transformer decoders.

    A built-in model registers itself in its class statement, so that adding one is adding a
    file to nh_models/models/ (`nh_models.models` finds it):

        class MyNet(OperatorModel, config=MyNetConfig, order=7):
            name = "mynet"

    config: its config dataclass; order: its place in MODEL_NAMES; paper=True: a network of the
    paper. A model of the user's own is registered with `register_model` (plugins.py) instead.
    """

    name: str = ""
    infer_tokens: int | None = 10_000  # query points per block without autograd; None: one block

    def __init_subclass__(
        cls, *, config: type | None = None, order: int | None = None, paper: bool = False, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if config is None:
            return  # a helper class, or a model of the user's own (register_model)
        if not cls.__module__.startswith(f"{__package__}."):
            raise TypeError(f"{cls.__qualname__}: register a model of your own with register_model")
        if not cls.name or order is None or not dataclasses.is_dataclass(config):
            raise TypeError(f"{cls.__qualname__}: a built-in model needs a name, a config dataclass and an order")
        old = BUILT_IN.get(cls.name)
        if old is not None and (old.model_class.__module__, old.model_class.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):  # the same class imported again (a reloaded module) replaces itself
            raise TypeError(f"{cls.__qualname__}: the model name {cls.name!r} is taken by {old.model_class}")
        BUILT_IN[cls.name] = BuiltIn(cls.name, config, cls, order, paper)

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not dataclasses.is_dataclass(config):
            raise TypeError("config must be a dataclass instance")
        self.config = config

    def forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:
        """V (B, 100), t (B, W), ic (B, 2) -> q, p (B, W)."""
        check_inputs(V, t, ic)
        B, W = t.shape
        block = max(1, self.infer_tokens // W) if self.infer_tokens else B
        if torch.is_grad_enabled() or B <= block:
            return self._forward(V, t, ic)
        outs = [
            self._forward(V[s : s + block], t[s : s + block], ic[s : s + block]) for s in range(0, B, block)
        ]
        return torch.cat([q for q, _ in outs]), torch.cat([p for _, p in outs])  # (B, W) each

    def _forward(self, V: Tensor, t: Tensor, ic: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def for_derivatives(self) -> OperatorModel:
        """The same function computed with operations that every automatic-differentiation mode
        supports (forward mode, vmap): exact Jacobians in evaluation. `self`, unless a subclass
        computes with a custom autograd Function (MambONet's fast scan)."""
        return self

    def regularizer(self) -> Tensor:
        """Extra loss term of the last forward pass (zero here; VaRONet's KL term)."""
        p = next(self.parameters())
        return torch.zeros((), dtype=p.dtype, device=p.device)

    def num_parameters(self) -> int:
        """Number of trainable scalars (a subclass may leave out those its forward never reads)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def count_parameters(model: nn.Module) -> int:
    """`model.num_parameters()` where the model has it (every OperatorModel), else its trainable
    scalars: the figure the training line, metrics.json and `nh eval` report."""
    fn = getattr(model, "num_parameters", None)
    return int(fn()) if callable(fn) else sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_inputs(V: Tensor, t: Tensor, ic: Tensor) -> None:
    """Raise NHError naming the first tensor with a wrong shape (cheap: shapes only)."""
    if V.dim() != 2 or V.shape[1] != N_SENSORS:
        raise NHError(f"V must have shape (B, {N_SENSORS}), got {tuple(V.shape)}")
    B = V.shape[0]
    if t.dim() != 2 or t.shape[0] != B or t.shape[1] < 1:
        raise NHError(f"t must have shape (B={B}, W>=1), got {tuple(t.shape)}")
    if ic.dim() != 2 or ic.shape != (B, 2):
        raise NHError(f"ic must have shape (B={B}, 2), got {tuple(ic.shape)}")


# ----------------------------------------------------------------- shared blocks


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.GELU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ICEmbedding(nn.Module):
    """MLP embedding of the initial condition (q0, p0) (and E0 with `d_in` 3): (B, d_in) -> (B, d_out)."""

    def __init__(self, d_hidden: int, d_out: int, d_in: int = 2) -> None:
        super().__init__()
        self.net = mlp([d_in, d_hidden, d_out])

    def forward(self, ic: Tensor) -> Tensor:
        return self.net(ic)  # (B, d_out)


# ----------------------------------------------------------------- input and output options

# `features`: what the encoder sees at each sensor. "sensors": V(x_j) (the paper); "energy":
# V(x_j) and the signed root of E0 - V(x_j), with E0 handed to the decoder beside (q0, p0).
FEATURES = ("sensors", "energy")
# `scale: true`: V -> (V - V_SHIFT) / V_SCALE in, raw -> OUT_SHIFT + OUT_SCALE * raw out (q, p),
# about the mean and spread of V, q and p over the training sets (strata and wall-start)
V_SHIFT, V_SCALE = 1.2, 0.64
OUT_SHIFT, OUT_SCALE = (0.5, 0.0), (0.33, 1.0)


def check_input_options(config: Any) -> None:
    """Raise NHError unless config.features is one of FEATURES and config.scale a bool."""
    name = type(config).__name__
    if config.features not in FEATURES:
        raise NHError(f"{name}.features must be one of {', '.join(FEATURES)}, got {config.features!r}")
    if not isinstance(config.scale, bool):
        raise NHError(f"{name}.scale must be true or false, got {config.scale!r}")


def input_widths(features: str) -> tuple[int, int]:
    """(channels per sensor, width of the decoder's condition) that `sensor_inputs` returns."""
    return (2, 3) if features == "energy" else (1, 2)


def scale_sensors(V: Tensor, scale: bool) -> Tensor:
    """V -> (V - V_SHIFT) / V_SCALE with `scale: true`; V otherwise."""
    return (V - V_SHIFT) / V_SCALE if scale else V


def sensor_inputs(V: Tensor, ic: Tensor, features: str, scale: bool) -> tuple[Tensor, Tensor]:
    """The encoder's per-sensor channels and the decoder's condition for `features` and `scale`.

    (B, 100), (B, 2) -> (B, 100, C) with C = 1 ("sensors") or 2 ("energy": V and the signed
    root of `energy_features`), and (B, 2) (q0, p0) or (B, 3) (q0, p0, E0).
    """
    v = scale_sensors(V, scale)
    if features == "energy":
        f = energy_features(V, ic)  # (B, 101)
        return torch.stack([v, f[:, :-1]], dim=-1), torch.cat([ic, f[:, -1:]], dim=1)
    return v.unsqueeze(-1), ic


def scale_outputs(q: Tensor, p: Tensor, scale: bool) -> tuple[Tensor, Tensor]:
    """Map the raw outputs to (q, p) with `scale: true`; the identity otherwise."""
    if scale:
        return OUT_SHIFT[0] + OUT_SCALE[0] * q, OUT_SHIFT[1] + OUT_SCALE[1] * p
    return q, p


def energy_features(V: Tensor, ic: Tensor) -> Tensor:
    """What decides the motion, from the sensors and (q0, p0): (B, 100), (B, 2) -> (B, 101).

    Columns 0..99: at every sensor x_j the signed root of the kinetic energy E0 - V(x_j),
    +sqrt(E0 - V) on the classically allowed interval that holds q0 (the sensors reached
    from q0 without crossing a point where E0 < V), -sqrt|E0 - V| everywhere else. Column
    100: E0 = p0^2 / 2 + V(q0), V(q0) interpolated linearly between the sensors.
    """
    B, n = V.shape
    # (B, 1) in sensor units; a non-finite q0 (a chained prediction that blew up) indexes sensor 0
    # and gives non-finite features, never an out-of-range index
    pos = torch.nan_to_num(ic[:, :1], nan=0.0).clamp(0.0, 1.0) * (n - 1)
    i0 = pos.floor().clamp(max=n - 2).long()  # left neighbour of q0
    w = pos - i0
    E0 = 0.5 * ic[:, 1:].square() + V.gather(1, i0) * (1 - w) + V.gather(1, i0 + 1) * w  # (B, 1)
    E0 = torch.where(ic[:, :1].isfinite(), E0, torch.full_like(E0, float("nan")))
    kin = E0 - V  # (B, n)
    idx = torch.arange(n, device=V.device).expand(B, n)
    forbidden = kin < 0
    # the allowed interval: from the last forbidden sensor left of q0 to the first one right of it
    left = torch.where(forbidden & (idx <= i0), idx, torch.full_like(idx, -1)).amax(1, keepdim=True)
    right = torch.where(forbidden & (idx > i0), idx, torch.full_like(idx, n)).amin(1, keepdim=True)
    inside = (idx > left) & (idx < right)
    root = kin.abs().sqrt()
    return torch.cat([torch.where(inside, root, -root), E0], dim=1)


def sinusoidal_table(length: int, d_model: int) -> Tensor:
    """Fixed sinusoidal encodings (Vaswani et al.) of positions 0..length-1: (length, d_model)."""
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)  # (L, 1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div[: d_model // 2])
    return pe.float()  # (L, d_model)
