"""Preconditioning: how a network conditioned on continuous sigma turns its raw output into a
score. A backbone ``F(x_in, sigma) -> Tensor`` (shaped like ``x``) sees a well-scaled input;
the preconditioner decides that input and how F's output becomes s(x, sigma). Networks pick one
by name from :data:`PRECONDITIONERS`.

- ``ncsnv2`` (Song & Ermon 2020, technique 3): s = F(c_in (2x - 1), sigma) / sigma with
  c_in = 1 / sqrt(1 + (2 sigma)^2), so noisy inputs keep unit-order magnitude at large sigma.
- ``edm`` (Karras et al. 2022, Sec. 5 and Table 1), around a data centre mu:
  D(x; sigma) = mu + c_skip (x - mu) + c_out F(c_in (x - mu), sigma),
  c_skip = sigma_d^2 / (sigma^2 + sigma_d^2), c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
  c_in = 1 / sqrt(sigma^2 + sigma_d^2), and the score s = (D(x; sigma) - x) / sigma^2
  (Tweedie's formula). F's target then has unit variance at every sigma; trained with DSM and
  :func:`ncsn.core.losses.dsm_weight` with ``sigma_data``, the objective is EDM's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Backbone = Callable[[Tensor, Tensor], Tensor]


def _shaped(sigma: Tensor, x: Tensor) -> Tensor:
    return sigma.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def ncsnv2_score(backbone: Backbone, x: Tensor, sigma: Tensor, *, sigma_data: float,
                 data_mean: float) -> Tensor:
    """s = F(c_in (2x - 1), sigma) / sigma, c_in = 1 / sqrt(1 + 4 sigma^2) (pixels in [0, 1])."""
    del sigma_data, data_mean
    s = _shaped(sigma, x)
    return backbone((2.0 * x - 1.0) / torch.sqrt(1.0 + 4.0 * s**2), sigma) / s


def edm_denoiser(backbone: Backbone, x: Tensor, sigma: Tensor, *, sigma_data: float,
                 data_mean: float) -> Tensor:
    """EDM's D(x; sigma) = mu + c_skip (x - mu) + c_out F(c_in (x - mu), sigma)."""
    s = _shaped(sigma, x)
    total = s**2 + sigma_data**2
    centred = x - data_mean
    root = torch.sqrt(total)
    out = backbone(centred / root, sigma)
    return data_mean + (sigma_data**2 / total) * centred + (s * sigma_data / root) * out


def edm_score(backbone: Backbone, x: Tensor, sigma: Tensor, *, sigma_data: float,
              data_mean: float) -> Tensor:
    """s = (D(x; sigma) - x) / sigma^2 with EDM's denoiser :func:`edm_denoiser`."""
    denoised = edm_denoiser(backbone, x, sigma, sigma_data=sigma_data, data_mean=data_mean)
    return (denoised - x) / _shaped(sigma, x) ** 2


PRECONDITIONERS: dict[str, Callable[..., Tensor]] = {"ncsnv2": ncsnv2_score, "edm": edm_score}
