"""Checking a user's device choice before any work: one-line errors for devices that do not
exist here (used by ``ncsn sample``/``ncsn inpaint`` and :func:`ncsn.load`)."""

from __future__ import annotations

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
