"""Planning a wall-clock budget: how many epochs and steps fill it (used by `trainer.train`).

The trainer measures the seconds per optimizer step, per validation pass (with its
checkpoints) and per fresh set on throw-away copies, then asks `plan_budget` for the
epochs and steps; after 20 s of real epochs it re-plans with `BUDGET_MARGIN` of what is left.
"""

from __future__ import annotations

BUDGET_MARGIN = 0.95  # the plan fills this fraction of the remaining time budget


def plan_budget(seconds: float, per_step: float, per_val: float, per_gen: float, steps_per_epoch: int,
                fresh_workers: bool) -> tuple[int, int]:  # fmt: skip
    """(epochs, max_steps) that fill `seconds` of training: whole epochs of `steps_per_epoch`
    steps plus one validation pass (and one fresh set, half hidden behind training when
    loader workers make it) each; a single epoch shortened to fit when even one is too long."""
    usable = max(0.0, BUDGET_MARGIN * seconds)
    fixed = per_val + (0.5 if fresh_workers else 1.0) * per_gen
    epoch_s = steps_per_epoch * per_step + fixed
    epochs = int(usable // epoch_s) if epoch_s > 0 else 1
    if epochs >= 1:
        return epochs, epochs * steps_per_epoch
    steps = int((usable - fixed) // per_step) if per_step > 0 else steps_per_epoch
    return 1, max(1, min(steps, steps_per_epoch))
