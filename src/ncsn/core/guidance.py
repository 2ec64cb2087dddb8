"""Classifier guidance as a wrapper of the score contract, so every sampler takes it.

With a noise-conditional classifier p(y | x, sigma) of the data perturbed at sigma (its logits
``logits(x, sigma) -> (B, K)``), Bayes' rule gives the score of the class-conditional perturbed
data (Song et al. 2021, Sec. 5 and Appendix I; Dhariwal & Nichol 2021, Sec. 4):

    grad_x log p_sigma(x | y) = s(x, sigma) + grad_x log p(y | x, sigma),

and :func:`guided_score` returns s(x, sigma) + w grad_x log p(y | x, sigma). With w = 1 and an
exact classifier it is the exact conditional score, so any sampler that is exact on scores
samples p(x | y) (tests/test_guidance.py); w > 1 sharpens the classifier's distribution
(p(x) p(y | x)^w, the usual trade of diversity for class fidelity).

:func:`denoised_guided_score` instead asks a classifier of clean images about the denoised
estimate x0_hat(x, sigma) = x + sigma^2 s(x, sigma) (Tweedie's formula, E[x0 | x] for the
exact score), the gradient taken through the score network (as Chung et al. 2023, DPS, and
Bansal et al. 2023 use the denoiser): s + w grad_x log p(y | x0_hat(x, sigma)). It is not
the exact conditional score (p(y | E[x0 | x]) is not E[p(y | x0) | x]: inside a class it
favours the modes nearest the mean), but its class signal at large sigma comes from the score
model's denoiser rather than from a classifier of noisy images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ncsn.core import ScoreFn

LogitsFn = Callable[[Tensor, Tensor], Tensor]
"""``logits(x (B, ...), sigma (B,)) -> (B, K)``: a noise-conditional classifier's logits."""
CleanLogitsFn = Callable[[Tensor], Tensor]
"""``logits(x0 (B, ...)) -> (B, K)``: a classifier of clean data."""


def class_log_prob_grad(logits: LogitsFn, x: Tensor, sigma: Tensor, labels: Tensor) -> Tensor:
    """grad_x log p(y | x, sigma) = grad_x log softmax(logits(x, sigma))_y, one label per row,
    by autograd (also inside a sampler's ``torch.no_grad``)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        log_probs = torch.log_softmax(logits(x, sigma), dim=-1)
        chosen = log_probs.gather(1, labels.to(log_probs.device).reshape(-1, 1)).sum()
        (grad,) = torch.autograd.grad(chosen, x)
    return grad


def _rows(labels: int | Tensor, batch: int) -> Tensor:
    return torch.as_tensor(labels, dtype=torch.long).reshape(-1).expand(batch)


def guided_score(score: ScoreFn, logits: LogitsFn, labels: int | Tensor,
                 scale: float = 1.0) -> ScoreFn:
    """The score s(x, sigma) + ``scale`` grad_x log p(``labels`` | x, sigma) (module docstring);
    ``labels`` is one class for every row or a (B,) tensor of classes."""
    if scale < 0:
        raise ValueError(f"the guidance scale must be >= 0, got {scale}")

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        grad = class_log_prob_grad(logits, x, sigma, _rows(labels, x.shape[0]))
        return score(x, sigma) + scale * grad.to(x.dtype)

    return guided


def denoised_guided_score(score: ScoreFn, clean_logits: CleanLogitsFn, labels: int | Tensor,
                          scale: float = 1.0) -> ScoreFn:
    """The score s(x, sigma) + ``scale`` grad_x log p(``labels`` | x0_hat) with x0_hat =
    x + sigma^2 s(x, sigma) (module docstring); one score evaluation with autograd, the
    gradient through ``score``; ``labels`` as in :func:`guided_score`."""
    if scale < 0:
        raise ValueError(f"the guidance scale must be >= 0, got {scale}")

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            s = score(x, sigma)
            denoised = x + sigma.reshape(-1, *[1] * (x.dim() - 1)).to(s.dtype) ** 2 * s
            log_probs = torch.log_softmax(clean_logits(denoised), dim=-1)
            rows = _rows(labels, x.shape[0]).to(log_probs.device).reshape(-1, 1)
            (grad,) = torch.autograd.grad(log_probs.gather(1, rows).sum(), x)
        return s.detach() + scale * grad.to(s.dtype)

    return guided
