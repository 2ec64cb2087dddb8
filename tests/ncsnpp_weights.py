"""Deterministic NCSN++ weights from (key name, shape) alone, shared by the reference recording
(benchmarks/record_ncsnpp_reference.py) and tests/test_ncsnpp.py, so no weights are stored.

Each tensor is uniform noise from a torch.Generator seeded with the CRC-32 of its key, scaled by
its role: the Fourier ``W`` with std 16 (score_sde's scale, so phases reach ~1e3 rad), GroupNorm
scales 1 +- 0.2, biases +-0.1, and weight matrices with variance 1 / fan_in (NIN ``W`` is
(in, out)); layers that score_sde initialises near zero get full-size weights here.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def deterministic_tensor(key: str, shape: Sequence[int]) -> Tensor:
    """The float32 tensor for ``key`` (see the module docstring)."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    u = torch.rand(tuple(shape), generator=gen, dtype=torch.float64) * 2 - 1
    if len(shape) == 1:
        if key.endswith(".W"):
            scale, offset = 16 * math.sqrt(3), 0.0
        elif key.endswith("weight"):
            scale, offset = 0.2, 1.0
        else:
            scale, offset = 0.1, 0.0
        return (offset + scale * u).float()
    fan_in = shape[0] if key.endswith(".W") else math.prod(shape[1:])
    return (u * math.sqrt(3 / fan_in)).float()


def deterministic_weights(shapes: Mapping[str, Sequence[int]]) -> dict[str, Tensor]:
    """``{key: deterministic_tensor(key, shape)}`` for every key."""
    return {key: deterministic_tensor(key, shape) for key, shape in shapes.items()}
