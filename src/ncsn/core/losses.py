"""Score-matching objectives over one score function ``score(x, sigma)`` (see :mod:`ncsn.core`).

- :func:`dsm_loss`: denoising score matching over noise levels (paper Eq. 5-6),
- :func:`ssm_loss`: sliced score matching (Song et al. 2019), optionally variance-reduced,
- :func:`exact_sm_loss`: implicit score matching with the full Jacobian trace (low dimension only).

Every loss returns the batch mean, or with ``reduction="none"`` one value per sample, and accepts
fixed ``levels`` / ``noise`` / ``projections`` so that it can be checked against closed forms.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ncsn.core import ScoreFn

Reduction = Literal["mean", "none"]
Projection = Literal["gaussian", "rademacher"]


def _flat_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _reduce(per_sample: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def draw_levels(batch: int, num_levels: int, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Tensor:
    """Noise-level indices, uniform over {0, ..., L-1} (the paper's sampling of i)."""
    return torch.randint(0, num_levels, (batch,), generator=generator, device=device)


def _perturb(x: Tensor, sigmas: Tensor | None, levels: Tensor | None, sigma: Tensor | None,
             noise: Tensor | None, generator: torch.Generator | None
             ) -> tuple[Tensor, Tensor, Tensor]:
    """x~ = x + sigma z with per-sample ``sigma`` (B,), or sigma = sigmas[levels] (levels drawn
    uniformly when None); returns (x~, sigma (B,), z)."""
    if sigma is None:
        if sigmas is None:
            raise ValueError("give either the level table sigmas or per-sample sigma")
        sigmas = sigmas.to(device=x.device, dtype=x.dtype)
        if levels is None:
            levels = draw_levels(x.shape[0], sigmas.numel(), generator, x.device)
        sigma = sigmas[levels]
    elif levels is not None:
        raise ValueError("give per-sample sigma or levels, not both")
    sigma = sigma.to(device=x.device, dtype=x.dtype).reshape(-1)
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    shaped = sigma.reshape(-1, *([1] * (x.dim() - 1)))
    return x + shaped * noise, sigma, noise


def dsm_weight(sigma: Tensor, anneal_power: float = 2.0,
               sigma_data: float | None = None) -> Tensor:
    """lambda(sigma) of denoising score matching: sigma^anneal_power (the paper's lambda =
    sigma^2 with the default), times (sigma^2 + sigma_data^2) / sigma_data^2 with ``sigma_data``.

    With anneal_power 2 and sigma_data, 0.5 lambda ||s - target||^2 equals EDM's denoiser loss
    0.5 lambda_EDM ||D(x~; sigma) - x||^2 with lambda_EDM = (sigma^2 + sigma_data^2) /
    (sigma sigma_data)^2 (Karras et al. 2022, Eq. 8 and Table 1), because
    s = (D - x~) / sigma^2 gives ||s - target||^2 = ||D - x||^2 / sigma^4.
    """
    weight = sigma**anneal_power
    if sigma_data is not None:
        weight = weight * (sigma**2 + sigma_data**2) / sigma_data**2
    return weight


def dsm_loss(score: ScoreFn, x: Tensor, sigmas: Tensor | None = None, *,
             levels: Tensor | None = None, sigma: Tensor | None = None,
             noise: Tensor | None = None, anneal_power: float = 2.0,
             sigma_data: float | None = None, generator: torch.Generator | None = None,
             reduction: Reduction = "mean") -> Tensor:
    """Denoising score matching over noise levels (paper Eq. 5-6).

    l = 0.5 ||s(x + sigma z, sigma) + z / sigma||^2, weighted by :func:`dsm_weight`
    (lambda = sigma^2 by default, which makes every level's loss of the same magnitude).
    The levels are either ``sigmas[levels]`` of a table of discrete levels (``levels`` (B,)
    drawn uniformly when None: the paper) or a per-sample ``sigma`` (B,) drawn by the caller
    from a continuous distribution (:func:`ncsn.core.noise.draw_sigmas`). ``noise`` is z
    (standard normal draw when None).
    """
    x_tilde, sigma, z = _perturb(x, sigmas, levels, sigma, noise, generator)
    shaped = sigma.reshape(-1, *([1] * (x.dim() - 1)))
    target = -z / shaped
    per_sample = 0.5 * _flat_sum((score(x_tilde, sigma) - target) ** 2) \
        * dsm_weight(sigma, anneal_power, sigma_data)
    return _reduce(per_sample, reduction)


def draw_projections(x: Tensor, n_particles: int, projection: Projection,
                     generator: torch.Generator | None = None) -> Tensor:
    """SSM projection vectors v, shape (n_particles, *x.shape): N(0, I) or Rademacher +-1."""
    shape = (n_particles, *x.shape)
    if projection == "gaussian":
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    if projection == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
        return bits.to(x.dtype) * 2.0 - 1.0
    raise ValueError(f"projection must be 'gaussian' or 'rademacher', got {projection!r}")


def ssm_loss(score: ScoreFn, x: Tensor, sigmas: Tensor | None = None, *,
             levels: Tensor | None = None, sigma: Tensor | None = None,
             noise: Tensor | None = None,
             anneal_power: float = 2.0, n_particles: int = 1,
             projection: Projection = "gaussian", variance_reduced: bool = True,
             projections: Tensor | None = None, generator: torch.Generator | None = None,
             reduction: Reduction = "mean") -> Tensor:
    """Sliced score matching: E_v [ v^T (d s / d x) v + 0.5 (v^T s)^2 ] (Song et al., UAI 2019).

    ``variance_reduced`` (SSM-VR) replaces 0.5 (v^T s)^2 by its expectation 0.5 ||s||^2 (exact for
    projections with E[v v^T] = I). v^T (ds/dx) v is one vector-Jacobian product per projection.
    ``projections`` (n_particles, *x.shape) fixes v. With ``sigmas`` (or per-sample ``sigma``) the
    data are first perturbed as in :func:`dsm_loss` and each sample is weighted by
    sigma^anneal_power (annealed SSM); without,
    the score is evaluated at the clean data with sigma = 0.
    """
    if sigmas is None and sigma is None:
        x_in, sigma, weight = x, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype), None
    else:
        x_in, sigma, _ = _perturb(x, sigmas, levels, sigma, noise, generator)
        weight = sigma**anneal_power
    if projections is None:
        projections = draw_projections(x, n_particles, projection, generator)
    n = projections.shape[0]
    with torch.enable_grad():
        x_rep = x_in.detach().unsqueeze(0).expand(n, *x.shape).reshape(-1, *x.shape[1:])
        x_rep.requires_grad_(True)
        v = projections.reshape(-1, *x.shape[1:])
        s = score(x_rep, sigma.repeat(n))
        v_s = _flat_sum(s * v)
        (grad_v_s,) = torch.autograd.grad(v_s.sum(), x_rep, create_graph=True)
        jac_term = _flat_sum(grad_v_s * v)
        norm_term = 0.5 * _flat_sum(s**2) if variance_reduced else 0.5 * v_s**2
        per_sample = (jac_term + norm_term).reshape(n, -1).mean(dim=0)
    if weight is not None:
        per_sample = per_sample * weight
    return _reduce(per_sample, reduction)


def exact_sm_loss(score: ScoreFn, x: Tensor, sigma: Tensor | None = None,
                  reduction: Reduction = "mean") -> Tensor:
    """Implicit score matching (Hyvarinen 2005): tr(d s / d x) + 0.5 ||s||^2.

    The trace costs one backward pass per data dimension: for low-dimensional data only.
    """
    if sigma is None:
        sigma = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        s = score(x_in, sigma)
        flat = s.reshape(s.shape[0], -1)
        trace = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for d in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(flat[:, d].sum(), x_in, create_graph=True)
            trace = trace + grad.reshape(grad.shape[0], -1)[:, d]
        per_sample = trace + 0.5 * (flat**2).sum(dim=1)
    return _reduce(per_sample, reduction)
