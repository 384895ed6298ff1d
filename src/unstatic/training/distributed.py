"""Running the same training command on one process or many (``torchrun``/``accelerate launch`` set ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``): the process group, the device, and small collective helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when CUDA is present, else the CPU."""
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available")
    return device


def start(device: str = "auto") -> Runtime:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Runtime(rank, world, chosen)


def stop(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], runtime: Runtime) -> list[float]:
    """Sum floats over processes (loss for logging, stop flags); identity on one process."""
    if not runtime.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def average_over_processes_(tensor: torch.Tensor) -> torch.Tensor:
    """Replace ``tensor`` by its mean over the processes of the group (in place; nothing to do on one process).
    For values that DistributedDataParallel does not reduce, e.g. a second network's gradients."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor
