"""Planning a wall-clock budget: how many epochs and steps fill it (used by `trainer.train`).

The trainer measures the seconds per optimizer step, per validation pass (with its
checkpoints) and per fresh set on throw-away copies, then asks `plan_budget` for the
epochs and steps; after 20 s of real epochs it re-plans with `fill` on what is left, at
`BUDGET_MARGIN`. Both fill the budget with whole epochs and then, when at least
`MIN_PART` of an epoch still fits, one last shorter epoch (its steps end the schedule).
"""

from __future__ import annotations

BUDGET_MARGIN = 0.95  # the plan fills this fraction of the remaining time budget
MIN_PART = 0.1  # a last, shorter epoch is planned when at least this fraction of one fits


def fill(usable: float, per_step: float, fixed: float, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, steps) that fit in `usable` seconds: whole epochs of `steps_per_epoch` steps
    plus `fixed` seconds each (validation, checkpoints, data), then a last epoch of the steps
    that still fit beside its own `fixed` seconds when they are at least MIN_PART of an epoch.
    (0, 0) when not even that fits."""
    epoch_s = steps_per_epoch * per_step + fixed
    whole = int(usable // epoch_s) if epoch_s > 0 else 1
    rest = usable - whole * epoch_s
    part = int((rest - fixed) // per_step) if per_step > 0 else 0
    if part >= max(1, MIN_PART * steps_per_epoch):
        return whole + 1, whole * steps_per_epoch + min(part, steps_per_epoch)
    return whole, whole * steps_per_epoch


def cap_epochs(plan: tuple[int, int], max_epochs: int | None, steps_per_epoch: int) -> tuple[int, int, bool]:
    """(epochs, steps, capped): the plan `plan` = (epochs, steps) of a time budget, cut to
    `max_epochs` whole epochs when that is fewer (a number of epochs the user gave bounds the
    run as the budget does; the schedule is then planned for those epochs)."""
    epochs, steps = plan
    if max_epochs is None or max_epochs >= epochs:
        return epochs, steps, False
    return max_epochs, max_epochs * steps_per_epoch, True


def plan_budget(seconds: float, per_step: float, per_val: float, per_gen: float, steps_per_epoch: int,
                fresh_workers: bool) -> tuple[int, int]:  # fmt: skip
    """(epochs, max_steps) that fill `seconds` of training: whole epochs of `steps_per_epoch`
    steps plus one validation pass (and one fresh set, half hidden behind training when
    loader workers make it) each, and a shorter last epoch in what is left (`fill`); a single
    epoch shortened to fit when even one is too long."""
    usable = max(0.0, BUDGET_MARGIN * seconds)
    fixed = per_val + (0.5 if fresh_workers else 1.0) * per_gen
    epochs, steps = fill(usable, per_step, fixed, steps_per_epoch)
    if epochs >= 1:
        return epochs, steps
    steps = int((usable - fixed) // per_step) if per_step > 0 else steps_per_epoch
    return 1, max(1, min(steps, steps_per_epoch))
