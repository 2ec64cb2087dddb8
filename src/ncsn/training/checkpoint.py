"""Training checkpoints: atomic writes, listing, pruning and safe loading.

A checkpoint is a ``torch.save`` of plain tensors, dicts, lists, strings and numbers, so it loads
with ``torch.load(weights_only=True)``. It is first written to a temporary file in the same
folder, flushed to disk, then renamed over the final name: a crash at any moment leaves either
the old set of checkpoints or the new one, never a half-written ``ckpt_*.pt``.

``NCSN_CHECKPOINT_FAULT`` makes the write point observable for tests: ``exit`` ends the process
(``os._exit(137)``, like SIGKILL) after half of the bytes are written; ``sleep:SECONDS`` pauses
there (a test can then kill the process during the write). A suffix ``@NAME`` (e.g.
``exit@ckpt_00000006.pt``) limits the fault to the file named NAME.

The trainer's generator lives on the training device, and a CPU generator state (5,056 bytes) does
not fit a CUDA generator (16 bytes) nor the reverse, so the device type is saved with the state.
A checkpoint resumed on another device type continues with the generator re-seeded from
(seed, step) (:func:`restore_generator`): deterministic, but not the stream of an uninterrupted
run. The global CUDA generators are never saved: training draws only from its own generator.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import torch

from ncsn.errors import UserError
from ncsn.training.distributed import DistInfo, broadcast_bytes

CHECKPOINT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")
BEST_NAME = "best.pt"
TMP_SUFFIX = ".tmp"
FAULT_ENV = "NCSN_CHECKPOINT_FAULT"


def checkpoint_name(step: int) -> str:
    return f"ckpt_{step:08d}.pt"


def _fault_point(name: str) -> None:
    fault, _, only = os.environ.get(FAULT_ENV, "").partition("@")
    if only and only != name:
        return
    if fault == "exit":
        os._exit(137)
    if fault.startswith("sleep:"):
        time.sleep(float(fault.removeprefix("sleep:")))


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            fh.flush()
            _fault_point(path.name)
            fh.write(data[half:])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``ckpt_<step>.pt`` in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := CHECKPOINT_RE.match(p.name)) and p.is_file()]
    return sorted(found)


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete temporary files left by a write that was killed (they are never checkpoints)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    partial = [p for p in folder.iterdir() if p.name.startswith(".") and
               p.name.endswith(TMP_SUFFIX)]
    for p in partial:
        p.unlink()
    return partial


def latest_from_rank0(folder: Path, info: DistInfo, device: torch.device
                      ) -> tuple[Path, bytes] | None:
    """Rank 0's latest checkpoint in ``folder`` as (path, its bytes) on every process, or None
    when rank 0 has none. Only rank 0 lists and reads; the bytes go through the process group,
    so the processes agree on the step and state even when their nodes share no file system."""
    name = data = None
    if info.is_main and (found := list_checkpoints(folder)):
        name, data = found[-1][1].name.encode(), found[-1][1].read_bytes()
    name = broadcast_bytes(name, info, device)
    data = broadcast_bytes(data, info, device)
    if name is None or data is None:
        return None
    return folder / name.decode(), data


def prune_checkpoints(folder: str | Path, keep_last: int) -> list[Path]:
    """Keep the newest ``keep_last`` step checkpoints (``best.pt`` is never touched)."""
    existing = list_checkpoints(folder)
    doomed = [p for _, p in existing[:max(0, len(existing) - keep_last)]]
    for p in doomed:
        p.unlink()
    return doomed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    data: bytes | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); UserError when it is unreadable.
    ``data``: the file's bytes, already read (e.g. sent by rank 0); ``path`` then only names it."""
    path = Path(path)
    try:
        state = torch.load(io.BytesIO(data) if data is not None else path,
                           map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated/corrupt files
        raise UserError(f"checkpoint {path} is corrupt/incomplete ({type(err).__name__}); "
                        "delete it to resume from the previous one") from None
    required = ("step", "model", "optimizer", "config", "rng")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise UserError(f"checkpoint {path} is corrupt/incomplete (missing entries); "
                        "delete it to resume from the previous one")
    return state


CPU_GENERATOR_STATE_BYTES = torch.Generator().get_state().numel()


def generator_state(gen: torch.Generator) -> dict[str, Any]:
    """The generator's state with the type of device it belongs to (the checkpoint's ``rng``)."""
    return {"generator": gen.get_state(), "generator_device": gen.device.type}


def saved_generator_device(rng: dict[str, Any]) -> str:
    """Device type of a saved generator state; checkpoints that predate the record are told
    apart by the state's size (only a CPU state has 5,056 bytes)."""
    if "generator_device" in rng:
        return str(rng["generator_device"])
    return "cpu" if rng["generator"].numel() == CPU_GENERATOR_STATE_BYTES else "cuda"


def reseed_value(seed: int, step: int) -> int:
    """The generator seed after a change of device type: a 63-bit hash of (seed, step), not
    one of the run's small seeds (its own, the epoch orders' ``derived_seed(seed, epoch)``)."""
    digest = hashlib.blake2b(f"ncsn-reseed:{seed}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def restore_generator(gen: torch.Generator, rng: dict[str, Any], *, seed: int, step: int) -> bool:
    """Set ``gen`` to the saved state, or, when the state was saved on another device type,
    seed it with :func:`reseed_value` ``(seed, step)``; True when it was re-seeded."""
    if saved_generator_device(rng) == gen.device.type:
        gen.set_state(rng["generator"])
        return False
    gen.manual_seed(reseed_value(seed, step))
    return True
