"""Checking a user's device choice before any work (one-line errors for devices that do not
exist here; used by ``ncsn sample``/``ncsn inpaint`` and :func:`ncsn.load`), and the CPU thread
count of ``training.threads: auto``."""

from __future__ import annotations

import os
import time

import torch

from ncsn.errors import UserError


def resolve_device(name: str | torch.device, option: str = "device") -> torch.device:
    """A torch device that exists here; ``option`` names the choice in the one-line UserError
    otherwise (``--device`` on the command line)."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"bad {option} {str(name)!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no visible GPU"
            raise UserError(f"{option} {name}: CUDA is not available here ({build}); use "
                            f"{option} cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"{option} {name}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type not in ("cpu", "cuda"):
        raise UserError(f"{option} {name}: only cpu and cuda devices are supported")
    return device


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy_cores(interval: float = 0.5, stat_path: str = "/proc/stat") -> float | None:
    """Cores kept busy by the whole system over ``interval`` seconds, from the jiffies of
    Linux's /proc/stat (this process sleeps meanwhile, so it is other processes' work); None
    where /proc/stat is not available."""

    def snapshot() -> tuple[int, int]:
        with open(stat_path) as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total0, idle0 = snapshot()
        time.sleep(interval)
        total1, idle1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    busy = 1.0 - (idle1 - idle0) / (total1 - total0)
    return busy * (os.cpu_count() or 1)


def idle_core_threads() -> int:
    """Intra-op threads for ``threads: auto``: the cores this process may use minus the cores
    other processes keep busy right now (:func:`busy_cores`, rounded), at least 1.

    On the 2-core dev box (docs/training.md) two threads train the demo 1.7x faster than one
    when the machine is idle, but 2.1x slower than one while another process keeps a core busy
    (OpenMP threads spin-wait for each other); this picks the faster choice in both cases.
    The thread count changes floating-point summation order, so runs are bit-reproducible
    for the same count (recorded in the run's log)."""
    busy = busy_cores()
    return max(1, available_cores() - round(busy or 0.0))
