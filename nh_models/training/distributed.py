"""Data-parallel training across processes: torchrun detection, process group, rank-0 writes.

`torchrun --nproc-per-node N ...` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; without them the run is a single process and nothing here does anything.
The backend is NCCL for CUDA devices and gloo on CPU.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nh_data.errors import NHError

from ..devices import resolve_device

SETTLE_S = 0.25  # the pause before leaving the process group (`cleanup`)

# the trainer's texts (it speaks of its --device option)
UNKNOWN = "unknown device {device!r}; valid devices: cpu, cuda, auto (or cuda:N)"
NO_CUDA = "--device {device} was asked for but CUDA is not available (use cpu or auto)"


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def detect() -> DistEnv:
    """The torchrun environment of this process (a single process when the variables are absent)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise NHError("RANK, LOCAL_RANK and WORLD_SIZE must be integers") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise NHError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size)


def local_device(device: str, env: DistEnv) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' -> a torch.device (one GPU per local rank under DDP)."""
    name = resolve_device(device, unknown=UNKNOWN, no_cuda=NO_CUDA)
    if name == "cuda":
        return torch.device("cuda", env.local_rank % torch.cuda.device_count())
    return torch.device(name)


def init(env: DistEnv, device: torch.device) -> bool:
    """Join the process group of a multi-process run; True when this call created it."""
    if not env.distributed or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    return True


def cleanup(created: bool) -> None:
    """Leave the process group if `init` created it, after a pause with the GIL released.

    Gloo's worker threads free each finished collective after it completes. Freeing a tensor
    made in Python takes the GIL. The process group's destructor joins those threads, and it
    runs on the main thread with the GIL held (when the last reference goes: here or when the
    DDP wrapper is freed). If a worker is still freeing the last collective's tensors then,
    the process deadlocks at exit. That was seen under load, with `py-spy dump`: the main thread
    in ~ProcessGroupGloo's thread join, the worker in TensorImpl::decref_pyobject waiting for
    the GIL (pytorch/pytorch#75097). The pause lets the workers finish first."""
    if created and dist.is_initialized():
        time.sleep(SETTLE_S)
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    """Element-wise sum of `values` over the ranks (float64)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()

