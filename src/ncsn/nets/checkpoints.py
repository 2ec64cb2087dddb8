"""Helpers shared by the checkpoint importers (official NCSN/NCSNv2, score_sde, diffusers).

``torch.save`` files are read with ``torch.load(weights_only=True)`` (tensors, containers,
numbers, strings; no arbitrary objects), optionally also allowing the numpy float64 scalar that
score_sde's optimizer state holds (its warm-up learning rate comes from ``np.minimum``).
Anything else, unreadable files and stored noise levels that differ from the config's are a
one-line :class:`~ncsn.errors.UserError`.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncsn.errors import UserError, weights_only_load_reason

PREFIX = "module."


def numpy_scalar_globals() -> list[Any]:
    """The globals a pickled numpy float64 names: the scalar reconstructor under its numpy-1
    (``numpy.core``) and numpy-2 (``numpy._core``) module names, ``numpy.dtype`` and, with
    numpy 2, the float64 dtype class that ``numpy.dtype("f8")`` returns."""
    multiarray = importlib.import_module(
        "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray")
    allowed: list[Any] = [(multiarray.scalar, "numpy.core.multiarray.scalar"),
                          (multiarray.scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed.append(dtypes.Float64DType)
    return allowed


def read_torch_file(path: str | Path, *, numpy_scalars: bool = False) -> Any:
    """The object in a ``torch.save`` file, unpickled with ``weights_only=True`` (plus
    :func:`numpy_scalar_globals` when ``numpy_scalars``); UserError when the file is missing,
    corrupt, truncated or holds other objects."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, not a torch file (a diffusers pipeline "
                        "folder converts with --from diffusers)")
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    allowed = numpy_scalar_globals() if numpy_scalars else []
    if allowed and not hasattr(torch.serialization, "safe_globals"):
        raise UserError(f"reading {path} safely needs torch >= 2.5 (weights-only loading with "
                        f"allowed numpy scalars); this is torch {torch.__version__}")
    scope = torch.serialization.safe_globals(allowed) if allowed else contextlib.nullcontext()
    try:
        with scope:
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError,
            OSError) as err:
        reason = weights_only_load_reason(err)
        if not numpy_scalars and "(numpy." in reason:
            reason += ("; of the checkpoints read here only score_sde's hold numpy scalars (its "
                       "optimizer's lr): is it one? then use --from score-sde")
        raise UserError(f"cannot read {path} as a weights-only torch checkpoint: {reason}"
                        ) from err


def strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the DataParallel ``module.`` prefix from every key that has it."""
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


def tensor_state(obj: Any, path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """``obj`` as a non-empty {name: tensor} state dict without the ``module.`` prefix;
    UserError naming ``what`` otherwise."""
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path}: {what} is not a state dict (a mapping of names to tensors)")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise UserError(f"{path}: {what} holds non-tensor entries: {', '.join(not_tensors[:8])}")
    return strip_prefix(obj)


def check_stored_sigmas(stored: torch.Tensor, expected: Sequence[float], source: str, *,
                        ends_only: bool = False, rel_tol: float = 1e-5) -> None:
    """The noise levels a checkpoint stores must be the configured ones (all of them, or with
    ``ends_only`` the largest and smallest, for networks that take any sigma); UserError naming
    the first differing level otherwise."""
    have = stored.detach().double().flatten()
    want = torch.tensor(list(expected), dtype=torch.float64)
    if not ends_only and len(have) != len(want):
        raise UserError(f"{source} stores {len(have)} noise levels but the config has "
                        f"{len(want)}; use the config it was trained with (noise.num_levels)")
    levels = [0, len(want) - 1] if ends_only else list(range(len(want)))
    stored_at = [0, len(have) - 1] if ends_only else levels
    for i, j in zip(levels, stored_at, strict=True):
        if abs(float(have[j]) - float(want[i])) > rel_tol * abs(float(want[i])):
            raise UserError(f"{source}: noise level {j + 1} is {float(have[j]):.6g} in the "
                            f"checkpoint but {float(want[i]):.6g} in the config; use the config "
                            "it was trained with (noise.sigma_max, sigma_min, num_levels)")
