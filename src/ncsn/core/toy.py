"""Analytic Gaussian mixtures with exact log-density, score and noise-perturbed versions.

A mixture sum_k w_k N(mu_k, s_k^2 I) perturbed by N(0, sigma^2 I) is the mixture with
variances s_k^2 + sigma^2, so annealed samplers can run on exact scores (paper Sec. 3.2, Fig. 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


class GaussianMixture:
    """sum_k w_k N(mu_k, s_k^2 I) in R^D with isotropic components.

    ``weights`` (K,) are normalised; ``means`` (K, D); ``stds`` a scalar or (K,).
    """

    def __init__(self, weights: Sequence[float] | Tensor, means: Sequence[Sequence[float]] | Tensor,
                 stds: float | Sequence[float] | Tensor = 1.0) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.dim() != 2 or w.dim() != 1 or w.shape[0] != mu.shape[0]:
            raise ValueError(f"need weights (K,) and means (K, D); got {tuple(w.shape)}, "
                             f"{tuple(mu.shape)}")
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("mixture weights must be non-negative with a positive sum")
        s = torch.as_tensor(stds, dtype=torch.float64).expand(mu.shape[0]).clone()
        if (s <= 0).any():
            raise ValueError("component standard deviations must be positive")
        self.weights, self.means, self.stds = w / w.sum(), mu, s

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _variances(self, sigma: float | Tensor, batch: int) -> Tensor:
        """(B, K) component variances s_k^2 + sigma^2 for each sample."""
        sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1)
        return (self.stds**2).reshape(1, -1) + sig**2 * torch.ones(batch, 1, dtype=torch.float64)

    def _component_log_probs(self, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
        """log w_k + log N(x; mu_k, var_k I) as (B, K), and the variances (B, K)."""
        xd = x.double()
        var = self._variances(sigma, x.shape[0]).to(xd.device)
        sq = ((xd[:, None, :] - self.means.to(xd.device)[None]) ** 2).sum(-1)
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * var)
        return self.weights.to(xd.device).log()[None] + log_norm - 0.5 * sq / var, var

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log p_sigma(x) for x (B, D); ``sigma`` a scalar or (B,)."""
        logp, _ = self._component_log_probs(x, sigma)
        return torch.logsumexp(logp, dim=1).to(x.dtype)

    def score(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """grad_x log p_sigma(x) = sum_k r_k(x) (mu_k - x) / var_k (r: responsibilities)."""
        logp, var = self._component_log_probs(x, sigma)
        resp = torch.softmax(logp, dim=1)
        diff = self.means.to(x.device)[None] - x.double()[:, None, :]
        return (resp[..., None] * diff / var[..., None]).sum(1).to(x.dtype)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The score-function contract: ``mixture(x, sigma)`` is :meth:`score`."""
        return self.score(x, sigma)

    def sample(self, n: int, generator: torch.Generator | None = None,
               return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """n exact samples (float32), and optionally their component labels."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = (self.means[labels] + self.stds[labels, None] * z).float()
        return (x, labels) if return_labels else x

    def perturbed(self, sigma: float) -> GaussianMixture:
        """The mixture convolved with N(0, sigma^2 I)."""
        return GaussianMixture(self.weights, self.means, torch.sqrt(self.stds**2 + sigma**2))


def paper_mixture() -> GaussianMixture:
    """The paper's p = 0.2 N((-5,-5), I) + 0.8 N((5,5), I) (Sec. 3.2)."""
    return GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
