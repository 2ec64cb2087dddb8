"""The toy score network of the paper's Figure 2: an MLP R^D -> R^D (2-128-128-2, softplus)."""

from __future__ import annotations

from torch import Tensor, nn

_ACTIVATIONS = {"softplus": nn.Softplus, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class ToyMLP(nn.Module):
    """Unconditional score MLP: ``forward(x, sigma)`` ignores ``sigma`` (one noise level)."""

    continuous_sigma = True  # any sigma is accepted (and ignored)

    def __init__(self, *, dim: int = 2, hidden: int = 128, depth: int = 2,
                 activation: str = "softplus") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        return self.net(x)
