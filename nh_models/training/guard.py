"""The divergence guard of the trainer: a batch loss that is not finite, or a median of the
last GUARD_WINDOW batch losses EXPLODE_FACTOR times that of the run's first GUARD_WINDOW,
stops the run with one line naming the epoch and what to change.

Medians, not single batches: where a few orbits carry most of the loss (a network whose prior
is already accurate, SympONet's), one batch holding such an orbit is hundreds of times the
next and is not a divergence.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from nh_data.errors import NHError

EXPLODE_FACTOR = 100.0  # a median batch loss this many times the first one stops the run
GUARD_WINDOW = 5  # batch losses per median


class Diverged(NHError):
    """The training loss became non-finite or exploded (see `check_loss`)."""


def check_loss(value: float, state: Any, epoch: int, lr: float) -> None:
    """Raise Diverged when a batch loss is not finite, or when the median of the last
    GUARD_WINDOW checked batch losses exceeds EXPLODE_FACTOR x that of the first GUARD_WINDOW."""
    if not math.isfinite(value):
        _diverged(epoch, lr, f"the batch loss {value:.3g} is not finite")
    state.recent.append(value)
    if state.first_loss is None:
        if len(state.recent) < GUARD_WINDOW:
            return
        state.first_loss = statistics.median(state.recent)
    level = statistics.median(state.recent)
    if level > EXPLODE_FACTOR * max(state.first_loss, 1e-12):
        _diverged(epoch, lr, f"the median of the last {GUARD_WINDOW} batch losses {level:.3g} is "
                  f"{level / state.first_loss:,.0f}x that of the first {GUARD_WINDOW}, {state.first_loss:.3g}")  # fmt: skip


def _diverged(epoch: int, lr: float, what: str) -> None:
    raise Diverged(
        f"training diverged in epoch {epoch}: {what}; lower train.lr (now {lr:.3g}) or use schedule: "
        "cosine with warmup: 0.05"
    )
