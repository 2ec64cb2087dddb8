"""A small unconditional residual score network for the paper's Figure 1 (SSM on images)."""

from __future__ import annotations

from torch import Tensor, nn


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ELU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.ELU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNetScore(nn.Module):
    """conv -> ``n_blocks`` residual blocks (ELU, 3x3 convs) -> ELU -> conv; no noise input.

    ``forward(x, sigma)`` ignores sigma: it models the score of one fixed distribution.
    """

    continuous_sigma = True  # any sigma is accepted (and ignored)

    def __init__(self, *, channels: int, width: int = 32, n_blocks: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(width) for _ in range(n_blocks)])
        self.tail = nn.Sequential(nn.ELU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        return self.tail(self.blocks(self.head(2 * x - 1)))
