"""Training checkpoints: atomic writes, listing, pruning and safe loading.

A checkpoint is a ``torch.save`` of plain tensors, dicts, lists, strings and numbers, so it loads
with ``torch.load(weights_only=True)``. It is first written to a temporary file in the same
folder, flushed to disk, then renamed over the final name: a crash at any moment leaves either
the old set of checkpoints or the new one, never a half-written ``ckpt_*.pt``.

``NCSN_CHECKPOINT_FAULT`` makes the write point observable for tests: ``exit`` ends the process
(``os._exit(137)``, like SIGKILL) after half of the bytes are written; ``sleep:SECONDS`` pauses
there (a test can then kill the process during the write). A suffix ``@NAME`` (e.g.
``exit@ckpt_00000006.pt``) limits the fault to the file named NAME.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path
from typing import Any

import torch

from ncsn.errors import UserError

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


def prune_checkpoints(folder: str | Path, keep_last: int) -> list[Path]:
    """Keep the newest ``keep_last`` step checkpoints (``best.pt`` is never touched)."""
    existing = list_checkpoints(folder)
    doomed = [p for _, p in existing[:max(0, len(existing) - keep_last)]]
    for p in doomed:
        p.unlink()
    return doomed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); UserError when it is unreadable."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated/corrupt files
        raise UserError(f"checkpoint {path} is corrupt/incomplete ({type(err).__name__}); "
                        "delete it to resume from the previous one") from None
    required = ("step", "model", "optimizer", "config", "rng")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise UserError(f"checkpoint {path} is corrupt/incomplete (missing entries); "
                        "delete it to resume from the previous one")
    return state
