"""One optimizer step and the validation loss: `train_step`, `eval_step`, `evaluate`, and the
losses (0.5 (MSE_q + MSE_p) per sample; log cosh as an alternative training objective)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil

import torch
from torch import Tensor, nn

from nh_data.errors import NHError

from ..data import ShardDataset, eval_batches, iterate_batches
from . import distributed as D


def per_sample_loss(q_hat: Tensor, p_hat: Tensor, q: Tensor, p: Tensor) -> Tensor:
    """0.5 (MSE_q + MSE_p) of every sample, the mean taken over the W time points: (B, W) x 4 -> (B,)."""
    return 0.5 * ((q_hat - q).square().mean(dim=1) + (p_hat - p).square().mean(dim=1))


def logcosh_loss(q_hat: Tensor, p_hat: Tensor, q: Tensor, p: Tensor) -> Tensor:
    """0.5 (mean log cosh(q_hat - q) + mean log cosh(p_hat - p)), computed without overflow."""

    def lc(d: Tensor) -> Tensor:
        a = d.abs()
        return (a + torch.nn.functional.softplus(-2.0 * a) - math.log(2.0)).mean()

    return 0.5 * (lc(q_hat - q) + lc(p_hat - p))


def logmse_loss(per_sample: Tensor) -> Tensor:
    """mean log(MSE of each orbit + 1e-14): every orbit's relative error counts alike, so a few
    ill-conditioned orbits (long periods near a barrier) do not set every gradient step."""
    return torch.log(per_sample + 1e-14).mean()


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_compiler(device: torch.device) -> None:
    """torch.compile on CPU generates C++: fail early, in one line, when there is no compiler."""
    if device.type != "cpu":
        return
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    if not any(n and shutil.which(n) for n in names):
        raise NHError(
            "compile: true on CPU needs a C++ compiler (g++ or clang++) on PATH; install one or set compile: false"
        )


def train_step(
    net: nn.Module,
    model: nn.Module,
    batch: dict[str, Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    grad_clip: float = 0.0,
    bf16: bool = False,
    loss_kind: str = "mse",
) -> Tensor:
    """One optimisation step on `batch`; returns the batch's data loss 0.5 (MSE_q + MSE_p), detached.

    net: the module to call (the model, or its DDP / compiled wrapper); model: the bare
    model (for `regularizer()` and the parameters to clip). loss_kind: the objective, "mse",
    "logcosh" or "logmse" (the returned value is the MSE either way).
    """
    optimizer.zero_grad(set_to_none=True)
    with _autocast(batch["V"].device, bf16):
        q_hat, p_hat = net(batch["V"], batch["t"], batch["ic"])  # (B, W), (B, W)
        q_hat, p_hat = q_hat.float(), p_hat.float()
        per_sample = per_sample_loss(q_hat, p_hat, batch["q"], batch["p"])
        data_loss = per_sample.mean()
        if loss_kind == "mse":
            objective = data_loss
        elif loss_kind == "logmse":
            objective = logmse_loss(per_sample)
        else:
            objective = logcosh_loss(q_hat, p_hat, batch["q"], batch["p"])
        loss = objective + model.regularizer()
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return data_loss.detach()


@torch.no_grad()
def eval_step(model: nn.Module, batch: dict[str, Tensor], *, bf16: bool = False) -> Tensor:
    """Sum over the batch of the per-sample loss 0.5 (MSE_q + MSE_p) (a 0-dim tensor)."""
    with _autocast(batch["V"].device, bf16):
        q_hat, p_hat = model(batch["V"], batch["t"], batch["ic"])  # (B, W), (B, W)
    return per_sample_loss(
        q_hat.to(batch["q"].dtype), p_hat.to(batch["p"].dtype), batch["q"], batch["p"]
    ).sum()


def _to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def evaluate(
    model: nn.Module,
    ds: ShardDataset,
    *,
    batch_size: int,
    device: torch.device,
    env: D.DistEnv | None = None,
    bf16: bool = False,
    num_workers: int = 0,
) -> float:
    """Mean per-sample loss 0.5 (MSE_q + MSE_p) over the whole split (every rank takes a part)."""
    env = env if env is not None else D.DistEnv()
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    batches = eval_batches(len(ds), batch_size, env.rank, env.world_size)
    for batch in iterate_batches(ds, batches, num_workers=num_workers, pin_memory=device.type == "cuda"):
        total += eval_step(model, _to_device(batch, device), bf16=bf16).double()
    count = sum(len(b) for b in batches)
    s, n = D.all_reduce_sum([float(total), float(count)], env, device)
    model.train(was_training)
    return s / n
