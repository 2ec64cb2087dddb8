"""Exponential moving average of network weights: a constant rate (NCSNv2 technique 5, rate
0.999) or the power function of Karras et al. 2024 ("Analyzing and Improving the Training
Dynamics of Diffusion Models", Sec. 3.1)."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn


def power_ema_rate(step: int, gamma: float) -> float:
    """beta_t = (1 - 1/t)^(gamma + 1): after t steps the average weights iterate i by
    (i^(gamma+1) - (i-1)^(gamma+1)) / t^(gamma+1), about (gamma + 1) i^gamma / t^(gamma+1), so
    its length grows with the run (Karras et al. 2024, Eq. 3)."""
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def warmup_ema_rate(step: int, rate: float) -> float:
    """beta_t = min(rate, (1 + t) / (10 + t)): the warm-up of TensorFlow's
    ``ExponentialMovingAverage(num_updates=t)``, so the first steps' average is not dominated
    by the initial weights (beta_1 = 2/11)."""
    return min(rate, (1.0 + step) / (10.0 + step))


class EMA:
    """theta_ema <- beta_t * theta_ema + (1 - beta_t) * theta after optimizer step t, with
    beta_t = ``rate`` (with ``warmup``, :func:`warmup_ema_rate`) or, given ``gamma``,
    :func:`power_ema_rate`.

    Floating-point parameters and buffers are averaged; other buffers are copied.
    """

    def __init__(self, net: nn.Module, rate: float | None = None, *,
                 gamma: float | None = None, warmup: bool = False) -> None:
        if (rate is None) == (gamma is None):
            raise ValueError("give the EMA either a constant rate or a power-function gamma")
        if rate is not None and not 0.0 <= rate < 1.0:
            raise ValueError(f"EMA rate must lie in [0, 1), got {rate}")
        if gamma is not None and not gamma > 0:
            raise ValueError(f"EMA gamma must be > 0, got {gamma}")
        if warmup and rate is None:
            raise ValueError("the EMA warm-up applies to a constant rate, not a power function")
        self.rate, self.gamma, self.warmup = rate, gamma, warmup
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int = 1) -> None:
        """One EMA step towards ``net``'s weights after optimizer step ``step`` (1-based; only
        the power function and the warm-up use it): a single fused ``torch._foreach_lerp_`` over all
        floating-point tensors (not one kernel per tensor)."""
        if self.gamma is not None:
            rate = power_ema_rate(step, self.gamma)
        else:
            rate = warmup_ema_rate(step, self.rate) if self.warmup else self.rate
        source = net.state_dict()
        averaged, targets = [], []
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                targets.append(source[name])
            else:
                value.copy_(source[name])
        if averaged:
            torch._foreach_lerp_(averaged, targets, 1.0 - rate)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.model.load_state_dict(dict(state), strict=True)
