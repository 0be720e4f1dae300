"""The one check of a `--device` value: cpu, cuda, cuda:N or auto.

`nh eval`, `nh tune`, `nh demo`, `nh predict`, `nh calibrate` and `nh train` all read a
device through `resolve_device`; training places the result on its local rank
(`training.distributed.local_device`). The error texts name where the value came from,
so the trainer passes its own (it speaks of its `--device` option).
"""

from __future__ import annotations

import torch

from nh_data.errors import NHError

UNKNOWN = "unknown device {device!r}; valid: cpu, cuda, cuda:N, auto"
NO_CUDA = "device {device!r} requested but CUDA is not available"


def resolve_device(device: str, unknown: str = UNKNOWN, no_cuda: str = NO_CUDA) -> str:
    """'auto' -> 'cuda' if available else 'cpu'; 'cpu', 'cuda', 'cuda:N' as given; else an NHError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NHError(no_cuda.format(device=device))
    elif device != "cpu":
        raise NHError(unknown.format(device=device))
    return device
