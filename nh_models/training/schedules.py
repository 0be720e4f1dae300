"""Learning-rate schedules: ExpHyperbolicLR (SPEC section 8, stepped per epoch) and a linear
warm-up followed by a cosine (stepped per optimizer step); `make_scheduler` picks one from a
train config, `reschedule` stretches a running one to a new plan."""

from __future__ import annotations

import math
from typing import Any

import torch

from nh_data.errors import NHError

UPPER_BOUND = 300  # ExpHyperbolicLR upper bound U (SPEC section 8)


def exp_hyperbolic_lr(
    x: float, init_lr: float, infimum_lr: float, max_iter: int, upper_bound: float
) -> float:
    """ExpHyperbolicLR (Kim, arXiv:2407.15200) at step x of N = max_iter, with U = upper_bound:

        lr(x) = init_lr * (init_lr / infimum_lr) ** (h(x) - h(0)),
        h(x)  = sqrt((N - x) / U * (2 - (N + x) / U)).

    lr(0) = init_lr; the decay in log space follows a hyperbola whose early slope
    depends on U, not on N; lr(N) = init_lr * (infimum_lr / init_lr) ** h(0) >= infimum_lr.
    """
    N, U = max_iter, upper_bound
    x = min(max(x, 0), N)

    def h(s: float) -> float:
        return math.sqrt((N - s) / U * (2.0 - (N + s) / U))

    return init_lr * (init_lr / infimum_lr) ** (h(x) - h(0))


class ExpHyperbolicLR(torch.optim.lr_scheduler.LRScheduler):
    """ExpHyperbolicLR on every parameter group, stepped once per epoch (closed form in the epoch)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        infimum_lr: float,
        upper_bound: float = UPPER_BOUND,
        last_epoch: int = -1,
    ) -> None:
        if upper_bound < max_iter:
            raise NHError(f"ExpHyperbolicLR needs upper_bound >= max_iter, got {upper_bound} < {max_iter}")
        self.max_iter, self.infimum_lr, self.upper_bound = (
            int(max_iter),
            float(infimum_lr),
            float(upper_bound),
        )
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            exp_hyperbolic_lr(self.last_epoch, base, self.infimum_lr, self.max_iter, self.upper_bound)
            for base in self.base_lrs
        ]


def warmup_cosine_lr(step: int, init_lr: float, infimum_lr: float, total: int, warmup: int) -> float:
    """Linear warm-up from init_lr / warmup to init_lr over `warmup` steps, then a cosine
    from init_lr down to infimum_lr at step `total` (and infimum_lr after it)."""
    if step < warmup:
        return init_lr * (step + 1) / warmup
    span = max(1, total - warmup)
    x = min(1.0, (step - warmup) / span)
    return infimum_lr + (init_lr - infimum_lr) * 0.5 * (1.0 + math.cos(math.pi * x))


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """`warmup_cosine_lr` on every parameter group, stepped once per optimizer step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int,
        infimum_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.infimum_lr = float(infimum_lr)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            warmup_cosine_lr(self.last_epoch, base, self.infimum_lr, self.total_steps, self.warmup_steps)
            for base in self.base_lrs
        ]


def make_scheduler(
    optimizer: torch.optim.Optimizer, tc: dict[str, Any], total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule of train config `tc`: ExpHyperbolicLR over the epochs, or warm-up + cosine
    over `total_steps` optimizer steps."""
    if tc["schedule"] == "cosine":
        warm = int(round(tc["warmup"] * total_steps))
        return WarmupCosineLR(optimizer, total_steps, warm, tc["infimum_lr"])
    return ExpHyperbolicLR(
        optimizer,
        max_iter=tc["epochs"],
        infimum_lr=tc["infimum_lr"],
        upper_bound=max(UPPER_BOUND, tc["epochs"]),
    )


def reschedule(scheduler: torch.optim.lr_scheduler.LRScheduler, tc: dict[str, Any], total: int) -> None:
    """Stretch a running schedule to a new plan (`tc` epochs, `total` steps); a warm-up still under
    way is re-sized to the new plan (a small step in the rate), a finished one is kept."""
    if isinstance(scheduler, WarmupCosineLR):
        scheduler.total_steps = int(total)
        if scheduler.last_epoch < scheduler.warmup_steps:
            scheduler.warmup_steps = int(round(tc["warmup"] * total))
    elif isinstance(scheduler, ExpHyperbolicLR):
        scheduler.max_iter, scheduler.upper_bound = int(tc["epochs"]), float(max(UPPER_BOUND, tc["epochs"]))
