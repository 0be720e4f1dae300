"""Trained networks as predictors: callables ``(V (B, 100), t (B, W), ic (B, 2)) -> (q, p)``
in float64 numpy, the interface the integrator baselines (`nh_models.evaluation.oracle`) share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .oracle import Predictor


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype a model computes in (its first parameter or buffer; float32 if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def model_predictor(
    model: torch.nn.Module, device: str | torch.device = "cpu", batch_size: int = 2048
) -> Predictor:
    """Wrap an OperatorModel as a float64 numpy predictor (eval mode, no grad, batched)."""
    model.eval()
    dtype = model_dtype(model)

    def predict(V: np.ndarray, t: np.ndarray, ic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        V = np.atleast_2d(V)
        t = np.broadcast_to(np.atleast_2d(t), (V.shape[0], np.shape(t)[-1]))
        ic = np.atleast_2d(ic)
        qs, ps = [], []
        with torch.inference_mode():
            for s in range(0, V.shape[0], batch_size):
                sl = slice(s, s + batch_size)
                Vb, tb, icb = (
                    torch.as_tensor(np.array(a[sl]), dtype=dtype, device=device) for a in (V, t, ic)
                )
                q, p = model(Vb, tb, icb)  # (b, W) each
                qs.append(q.double().cpu().numpy())
                ps.append(p.double().cpu().numpy())
        return np.concatenate(qs), np.concatenate(ps)

    return predict


@dataclass
class Candidate:
    """Something to evaluate: a label, a predictor and (for timing) a torch model."""

    label: str
    predict: Predictor
    model: torch.nn.Module | None = None
    run: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    calibration: Any = None  # the run's nh_models.calibration.Calibration, if it has one
    cost_table: bool = True  # a SympONet: the integrators at its cost (evaluation/cost_table.py)

    @classmethod
    def from_model(cls, label: str, model: torch.nn.Module, device="cpu", batch_size=2048, **kw) -> Candidate:
        return cls(label, model_predictor(model, device, batch_size), model, **kw)


def float64_predictor(candidate: Candidate, device, batch_size: int) -> Predictor:
    """The candidate evaluated in float64 (a float64 copy of a network's weights) for derivatives."""
    if candidate.model is None or model_dtype(candidate.model) == torch.float64:
        return candidate.predict
    import copy

    return model_predictor(copy.deepcopy(candidate.model).double(), device, batch_size)
