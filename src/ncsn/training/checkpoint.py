"""Training checkpoints: atomic writes, listing, pruning and safe loading.

A checkpoint is a ``torch.save`` of plain tensors, dicts, lists, strings and numbers, so it loads
with ``torch.load(weights_only=True)``. It is first written to a temporary file in the same
folder, flushed to disk, then renamed over the final name: a crash at any moment leaves either
the old set of checkpoints or the new one, never a half-written ``ckpt_*.pt``. Beside it,
``ckpt_*.pt.sha256`` records its hash and name; a checkpoint is trusted by that record and the
step stored inside it, never by its file name alone (a renamed copy is neither resumed from
nor counted when pruning).

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

from ncsn import files
from ncsn.errors import UserError
from ncsn.training.distributed import DistInfo, broadcast_bytes

CHECKPOINT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")
BEST_NAME = "best.pt"
SIDECAR_SUFFIX = ".sha256"
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


def sidecar_path(path: Path) -> Path:
    """``<checkpoint>.sha256``: the SHA-256 and name of the checkpoint, as ``sha256sum`` writes
    them (so ``sha256sum -c`` checks it too)."""
    return path.with_name(f"{path.name}{SIDECAR_SUFFIX}")


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`ncsn.files.atomic_open`: temporary file,
    fsync, rename; a link planted at ``path`` is replaced), then its ``.sha256`` beside it."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    with files.atomic_open(path) as fh:
        half = len(data) // 2
        fh.write(data[:half])
        fh.flush()
        _fault_point(path.name)
        fh.write(data[half:])
    files.write_text(sidecar_path(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return path


def recorded_hash(path: Path) -> str | None:
    """The SHA-256 that ``path``'s ``.sha256`` records for a file of ``path``'s name; None when
    there is no readable record or it names another file (a renamed copy)."""
    try:
        digest, _, name = sidecar_path(path).read_text().strip().partition("  ")
    except (OSError, UnicodeDecodeError):
        return None
    return digest if name == path.name else None


def list_checkpoints(folder: str | Path, *, recorded_only: bool = False
                     ) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``ckpt_<step>.pt`` in ``folder``, oldest first, except those
    whose ``.sha256`` names another file. ``recorded_only``: only those with their own
    ``.sha256`` (checkpoints of ncsn before it wrote them have none; their step is checked on
    load, see :func:`load_checkpoint`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := CHECKPOINT_RE.match(p.name)) and p.is_file() and not p.is_symlink()
             and _name_vouched(p, recorded_only)]
    return sorted(found)


def _name_vouched(path: Path, recorded_only: bool) -> bool:
    """Does ``path``'s ``.sha256`` name it (True without one, unless ``recorded_only``)?"""
    if recorded_only or sidecar_path(path).exists():
        return recorded_hash(path) is not None
    return True


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
    """Keep the newest ``keep_last`` step checkpoints, counting only those whose ``.sha256``
    vouches for their name (a renamed file neither counts nor is deleted; ``best.pt`` is never
    touched)."""
    existing = list_checkpoints(folder, recorded_only=True)
    doomed = [p for _, p in existing[:max(0, len(existing) - keep_last)]]
    for p in doomed:
        p.unlink()
        sidecar_path(p).unlink(missing_ok=True)
    return doomed


def _check_identity(path: Path, data: bytes, state: dict[str, Any]) -> None:
    """UserError when ``data`` is not what ``path``'s ``.sha256`` records, or when the step
    recorded inside differs from the one the name ``ckpt_<step>.pt`` claims."""
    digest = recorded_hash(path)
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise UserError(f"checkpoint {path} does not match its {SIDECAR_SUFFIX} record (corrupt, "
                        "truncated or replaced); delete both to resume from the previous one")
    m = CHECKPOINT_RE.match(path.name)
    if m and state["step"] != int(m.group(1)):
        raise UserError(f"checkpoint {path} records step {state['step']}, not the step its name "
                        "says (renamed or copied?); move it out of the checkpoint folder and "
                        "resume again")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    data: bytes | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``), trusted by the step recorded inside it
    and the hash recorded beside it, not by its name; UserError when it is unreadable.
    ``data``: the file's bytes, already read (e.g. sent by rank 0); ``path`` then only names it
    (and its ``.sha256``, when this process sees one)."""
    path = Path(path)
    try:
        data = path.read_bytes() if data is None else data
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated/corrupt files
        raise UserError(f"checkpoint {path} is corrupt/incomplete ({type(err).__name__}); "
                        "delete it to resume from the previous one") from None
    required = ("step", "model", "optimizer", "config", "rng")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise UserError(f"checkpoint {path} is corrupt/incomplete (missing entries); "
                        "delete it to resume from the previous one")
    _check_identity(path, data, state)
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
