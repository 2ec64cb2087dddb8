"""Exponential moving average of network weights (NCSNv2 technique 5, rate 0.999)."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn


class EMA:
    """theta_ema <- rate * theta_ema + (1 - rate) * theta after every optimizer step.

    Floating-point parameters and buffers are averaged; other buffers are copied.
    """

    def __init__(self, net: nn.Module, rate: float) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"EMA rate must lie in [0, 1), got {rate}")
        self.rate = rate
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """One EMA step towards ``net``'s weights: a single fused ``torch._foreach_lerp_`` over
        all floating-point tensors (not one kernel per tensor)."""
        source = net.state_dict()
        averaged, targets = [], []
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                targets.append(source[name])
            else:
                value.copy_(source[name])
        if averaged:
            torch._foreach_lerp_(averaged, targets, 1.0 - self.rate)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.model.load_state_dict(dict(state), strict=True)
