"""Training a noise-conditional classifier p(y | x, sigma) for classifier guidance: cross-entropy
on data perturbed at sigma, with log sigma ~ U[log sigma_min, log sigma_max] over the score
model's range (the continuous limit of the paper's uniform choice among geometric levels, and
the levels a geometric sampling schedule visits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ncsn.core.noise import draw_sigmas
from ncsn.nets.classifier import NoiseConditionalClassifier

RECIPE: dict[str, Any] = {"steps": 1500, "batch_size": 64, "lr": 2e-3, "width": 32, "seed": 0}
"""The recipe for the embedded digits (mnist5k): about a minute on one CPU thread."""


def train_classifier(images: Tensor, labels: Tensor, sigma_min: float, sigma_max: float, *,
                     num_classes: int = 10, steps: int = RECIPE["steps"],
                     batch_size: int = RECIPE["batch_size"], lr: float = RECIPE["lr"],
                     width: int = RECIPE["width"], seed: int = RECIPE["seed"],
                     log: Callable[[str], None] | None = None) -> NoiseConditionalClassifier:
    """A classifier of ``images`` (N, C, H, W in [0, 1]) by ``labels`` (N,) trained ``steps``
    Adam steps of cross-entropy on x + sigma z, log sigma uniform over [sigma_min, sigma_max]."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = NoiseConditionalClassifier(images.shape[1], num_classes, width)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        pick = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        sigma = draw_sigmas(batch_size, "log_uniform", sigma_min=sigma_min, sigma_max=sigma_max,
                            generator=gen)
        x = images[pick] + sigma.reshape(-1, 1, 1, 1) * torch.randn(
            images[pick].shape, generator=gen)
        loss = F.cross_entropy(net(x, sigma), labels[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None and (step + 1) % max(1, steps // 10) == 0:
            log(f"step {step + 1}/{steps}: cross-entropy {loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def accuracy_per_level(net: NoiseConditionalClassifier, images: Tensor, labels: Tensor,
                       sigmas: list[float], seed: int = 0) -> dict[str, float]:
    """Share of ``images`` perturbed at each sigma that ``net`` classifies as ``labels``,
    keyed by sigma (4 significant digits)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for s in sigmas:
        sigma = torch.full((images.shape[0],), float(s))
        x = images + s * torch.randn(images.shape, generator=gen)
        out[f"{s:.4g}"] = float((net(x, sigma).argmax(1) == labels).float().mean())
    return out
