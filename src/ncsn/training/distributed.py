"""Distributed data-parallel helpers (PyTorch DDP): launched by ``torchrun`` or run alone.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them the run is a single
process. The backend is NCCL on CUDA devices and Gloo on the CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
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
    """The training device: ``auto`` is CUDA when present, else the CPU.

    ``cuda`` takes this process's GPU: the only visible one when the launcher gives each process
    its own (``CUDA_VISIBLE_DEVICES`` per process, e.g. SLURM ``--gpus-per-task=1``), else
    visible GPU ``local_rank`` (torchrun on a node whose processes all see every GPU).
    """
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if not choice.startswith("cuda"):
        return torch.device("cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if ":" in choice and world_size > 1:
        raise UserError(f"training.device {choice!r} would put every process on one GPU; "
                        "under torchrun use training.device=cuda or auto (each process takes "
                        "GPU LOCAL_RANK)")
    if not torch.cuda.is_available():
        raise UserError(f"training.device is {choice!r} but CUDA is not available; "
                        "use training.device=auto or cpu")
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(not set)")
    index = int(choice.partition(":")[2] or (0 if count == 1 else local_rank))
    if index >= count:
        raise UserError(f"training.device {choice!r} needs GPU {index}, but this process sees "
                        f"{count} GPU(s) (CUDA_VISIBLE_DEVICES={visible}); start at most {count} "
                        "processes per node, or give each process its own GPU")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if count == 1 and local_world > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        raise UserError(f"{local_world} processes on this node would share its one GPU; start "
                        "one process per GPU (torchrun --nproc_per_node=1)")
    return torch.device(f"cuda:{index}")


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
        # torch._dynamo (imported by the first optimizer) keeps a reference to a process group
        # that exists when it is imported, so destroy_process_group would leave gloo's threads
        # running and a process stopping on an error could abort at exit (SIGABRT). Imported
        # before the group exists, it holds none.
        importlib.import_module("torch._dynamo")
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return info


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 alone), readable before the group exists."""
    return int(os.environ.get("RANK", "0"))


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


def broadcast_bytes(data: bytes | None, info: DistInfo, device: torch.device) -> bytes | None:
    """Rank 0's ``data`` (None: nothing) on every process, sent through the process group, so
    ranks on nodes without a shared file system get it too."""
    if not info.enabled:
        return data
    size = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    n = int(size.item())
    if n <= 0:
        return None if n < 0 else b""
    if info.is_main:
        assert data is not None
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    else:
        buffer = torch.empty(n, dtype=torch.uint8, device=device)
    dist.broadcast(buffer, src=0)
    return data if info.is_main else buffer.cpu().numpy().tobytes()


def raise_together(error: UserError | None, info: DistInfo, device: torch.device) -> None:
    """Raise on every process when any one has ``error`` (a process failing alone would leave
    the others waiting in the next collective until the timeout)."""
    failed = torch.tensor([error is not None], dtype=torch.int32, device=device)
    if info.enabled:
        dist.all_reduce(failed, op=dist.ReduceOp.MAX)
    if error is not None:
        raise error
    if bool(failed.item()):
        raise UserError("another process of this job stopped with an error (see its message)")


@contextmanager
def together(info: DistInfo, device: torch.device) -> Iterator[None]:
    """Run the block on every process; when it raises UserError on any of them, every process
    raises (:func:`raise_together`) instead of waiting for the others in a collective."""
    error = None
    try:
        yield
    except UserError as err:
        error = err
    raise_together(error, info, device)
