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


class Gaussian:
    """N(mean, cov) on flattened inputs (x of shape (B, ...) with D entries per row), float64:
    the exact score of the data perturbed at sigma, N(mean, cov + sigma^2 I), and Gaussian
    conditioning, which give exact posteriors of linear observations (:mod:`ncsn.core.inverse`)."""

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        self.mean, self.cov = mean.double(), cov.double()
        self._eigenvalues, self._eigenvectors = torch.linalg.eigh(self.cov)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """grad_x log N(x; mean, cov + sigma^2 I) = -(cov + sigma^2 I)^-1 (x - mean), per row."""
        v = self._eigenvectors.to(x.device)
        centred = x.reshape(x.shape[0], -1).double() - self.mean.to(x.device)
        var = self._eigenvalues.to(x.device)[None] + sigma.double().reshape(-1, 1) ** 2
        return (-((centred @ v) / var) @ v.T).reshape(x.shape).to(x.dtype)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The score-function contract: ``gaussian(x, sigma)`` is :meth:`score`."""
        return self.score(x, sigma)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws (n, D), float64."""
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + (z * self._eigenvalues.clamp_min(0).sqrt()) @ self._eigenvectors.T

    def condition(self, observed: Tensor, value: Tensor,
                  noise_var: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
        """The law of x given x[observed] + sqrt(noise_var) e = value: (mean, covariance, gain K)
        with K = C_{:,o} (C_oo + noise_var I)^-1, mean = m + K (value - m_o), cov = C - K C_o."""
        noise = noise_var * torch.eye(int(observed.sum()), dtype=torch.float64)
        gain = self.cov[:, observed] @ torch.linalg.inv(self.cov[observed][:, observed] + noise)
        return (self.mean + gain @ (value.double() - self.mean[observed]),
                self.cov - gain @ self.cov[observed], gain)

    def transformed(self, matrix: Tensor) -> Gaussian:
        """The law of U x for a (D, D) matrix U, e.g. an orthonormal basis's coefficients."""
        u = matrix.double()
        return Gaussian(u @ self.mean, u @ self.cov @ u.T)

    def perturbed(self, sigma: float) -> Gaussian:
        """The Gaussian convolved with N(0, sigma^2 I)."""
        return Gaussian(self.mean, self.cov + sigma**2 * torch.eye(self.dim, dtype=torch.float64))


def smooth_image_gaussian(side: int = 4) -> Gaussian:
    """A correlated Gaussian on 1 x side x side images: covariance 0.6 exp(-d^2 / (2 1.5^2)) + 0.1 I
    (pixel distance d; eigenvalues 0.10 .. 4.55 at side 4), mean rising from 0.5 to 0.6."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    p = torch.stack([yy.flatten(), xx.flatten()], 1).double()
    d2 = ((p[:, None] - p[None]) ** 2).sum(-1)
    cov = 0.6 * torch.exp(-d2 / (2 * 1.5**2)) + 0.1 * torch.eye(side * side, dtype=torch.float64)
    return Gaussian(0.5 + 0.1 * torch.arange(side * side, dtype=torch.float64) / side**2, cov)
