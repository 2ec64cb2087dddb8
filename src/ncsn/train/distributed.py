"""Distributed data-parallel helpers (PyTorch DDP): launched by ``torchrun`` or run alone.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them the run is a single
process. The backend is NCCL on CUDA devices and Gloo on the CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ncsn.errors import UserError

# Rank 0 alone draws sample grids and FID/KID sets while the others wait in the next all-reduce;
# NCCL's default 10-minute timeout would kill a run whose evaluation takes longer (NCSNv2,
# 1,000 samples x 1,161 network evaluations), so collectives may wait this long.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def select_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (GPU ``local_rank``) when present, else the CPU."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if ":" in choice and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError(f"training.device {choice!r} would put every process on one GPU; "
                            "under torchrun use training.device=cuda or auto (each process takes "
                            "GPU LOCAL_RANK)")
        if not torch.cuda.is_available():
            raise UserError(f"training.device is {choice!r} but CUDA is not available; "
                            "use training.device=auto or cpu")
        return torch.device(choice if ":" in choice else f"cuda:{local_rank}")
    return torch.device("cpu")


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world_size,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return info


def local_rank_from_env() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The average of a scalar tensor over all processes (itself for one process)."""
    if not info.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
