"""Langevin samplers over one score function ``score(x, sigma)`` (see :mod:`ncsn.core`).

Step conventions (both explicit, never mixed silently):

- ``"paper"`` (Song & Ermon 2019, Algorithm 1): alpha_i = eps sigma_i^2 / sigma_L^2,
  x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z.
- ``"official"`` (the official code, NCSNv2): a_i = step_lr sigma_i^2 / sigma_L^2,
  x <- x + a_i s(x, sigma_i) + sqrt(2 a_i) z.  The same chain as "paper" with eps = 2 step_lr.

Every random draw uses ``generator``; ``callback(info)`` is called after every step with
``info = {"x", "level", "step", "sigma", "index"}`` (``index`` counts steps over all levels).
Samplers run without gradients and never clamp: callers clamp for display.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from ncsn.core import ScoreFn

Convention = Literal["paper", "official"]
Callback = Callable[[dict[str, Any]], None]


def _step_coefficients(alpha: float, convention: Convention) -> tuple[float, float]:
    """(drift, noise scale) of one Langevin step of size ``alpha`` in ``convention``."""
    if convention == "paper":
        return alpha / 2.0, math.sqrt(alpha)
    if convention == "official":
        return alpha, math.sqrt(2.0 * alpha)
    raise ValueError(f"convention must be 'paper' or 'official', got {convention!r}")


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _as_list(sigmas: Tensor | list[float] | tuple[float, ...]) -> list[float]:
    values = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, Tensor) else sigmas)]
    if not values:
        raise ValueError("need at least one noise level")
    return values


def _langevin_chain(score: ScoreFn, x: Tensor, sigmas: list[float], alphas: list[float],
                    n_steps_each: int, convention: Convention,
                    generator: torch.Generator | None, callback: Callback | None,
                    clamp_observed: Callable[[Tensor, int], Tensor] | None = None) -> Tensor:
    """The one Langevin loop: ``n_steps_each`` steps at each (sigma_i, alpha_i) in turn.

    ``clamp_observed(x, level)`` (inpainting) overwrites known pixels after every step.
    """
    index = 0
    for level, (sigma, alpha) in enumerate(zip(sigmas, alphas, strict=True)):
        drift, scale = _step_coefficients(alpha, convention)
        sigma_batch = torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)
        for step in range(n_steps_each):
            x = x + drift * score(x, sigma_batch) + scale * _randn(x, generator)
            if clamp_observed is not None:
                x = clamp_observed(x, level)
            if callback is not None:
                callback({"x": x, "level": level, "step": step, "sigma": sigma, "index": index})
            index += 1
    return x


def _final_denoise(score: ScoreFn, x: Tensor, sigma_min: float) -> Tensor:
    """Tweedie's denoising step x + sigma_L^2 s(x, sigma_L) (NCSNv2 Sec. 4 / Appendix)."""
    sigma_batch = torch.full((x.shape[0],), sigma_min, device=x.device, dtype=x.dtype)
    return x + sigma_min**2 * score(x, sigma_batch)


@torch.no_grad()
def langevin(score: ScoreFn, x: Tensor, step_size: float, n_steps: int, *, sigma: float = 0.0,
             convention: Convention = "paper", generator: torch.Generator | None = None,
             callback: Callback | None = None) -> Tensor:
    """Plain Langevin dynamics at one fixed noise level (paper Eq. 4).

    Paper convention: x_t = x_{t-1} + (eps/2) s(x_{t-1}, sigma) + sqrt(eps) z_t.
    ``sigma`` is passed to the score (0 = the data's own score, e.g. analytic).
    """
    return _langevin_chain(score, x, [sigma], [step_size], n_steps, convention, generator,
                           callback)


def annealed_step_sizes(sigmas: list[float], step_size: float) -> list[float]:
    """alpha_i = step_size * sigma_i^2 / sigma_L^2 (Algorithm 1, line 3)."""
    sigma_min = sigmas[-1]
    if sigma_min <= 0:
        raise ValueError("annealed Langevin needs sigma_L > 0")
    return [step_size * (s / sigma_min) ** 2 for s in sigmas]


@torch.no_grad()
def annealed_langevin(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float],
                      n_steps_each: int, step_size: float, *,
                      convention: Convention = "paper", final_denoise: bool = False,
                      generator: torch.Generator | None = None,
                      callback: Callback | None = None) -> Tensor:
    """Annealed Langevin dynamics (paper Algorithm 1), sigmas from largest to smallest.

    Paper defaults for images: 10 geometric levels 1 -> 0.01, ``n_steps_each`` T = 100,
    ``step_size`` eps = 2e-5 ("paper") or step_lr = 1e-5 ("official"). ``final_denoise`` adds one
    step x + sigma_L^2 s(x, sigma_L) at the end (NCSNv2).
    """
    levels = _as_list(sigmas)
    x = _langevin_chain(score, x, levels, annealed_step_sizes(levels, step_size), n_steps_each,
                        convention, generator, callback)
    return _final_denoise(score, x, levels[-1]) if final_denoise else x


@torch.no_grad()
def inpaint(score: ScoreFn, observed: Tensor, mask: Tensor, sigmas: Tensor | list[float],
            n_steps_each: int, step_size: float, *, x_init: Tensor | None = None,
            convention: Convention = "paper", final_denoise: bool = False,
            generator: torch.Generator | None = None,
            callback: Callback | None = None) -> Tensor:
    """Inpainting by annealed Langevin dynamics (paper Appendix, Algorithm 2).

    ``mask`` is 1 on observed pixels (broadcastable to ``observed``). At level i, y~ = y + sigma_i z
    is drawn once and written over the observed pixels after every step. The returned images hold
    exactly ``observed`` on observed pixels. ``x_init`` defaults to U[0, 1) on the unknown pixels.
    """
    levels = _as_list(sigmas)
    mask = mask.to(device=observed.device, dtype=observed.dtype).expand_as(observed)
    if x_init is None:
        x_init = torch.rand(observed.shape, generator=generator, device=observed.device,
                            dtype=observed.dtype)
    noisy_observed: dict[int, Tensor] = {}

    def clamp_observed(x: Tensor, level: int) -> Tensor:
        if level not in noisy_observed:
            noisy_observed.clear()
            noisy_observed[level] = observed + levels[level] * _randn(observed, generator)
        return torch.where(mask > 0, noisy_observed[level], x)

    x = clamp_observed(x_init, 0)
    x = _langevin_chain(score, x, levels, annealed_step_sizes(levels, step_size), n_steps_each,
                        convention, generator, callback, clamp_observed)
    if final_denoise:
        x = _final_denoise(score, x, levels[-1])
    return torch.where(mask > 0, observed, x)


def _batch_norms(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1).mean()


@torch.no_grad()
def predictor_corrector(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                        n_corrector: int = 1, snr: float = 0.16,
                        generator: torch.Generator | None = None,
                        callback: Callback | None = None) -> Tensor:
    """Predictor-corrector sampling of the variance-exploding SDE (Song et al. 2021, Alg. 2-4).

    At each sigma_i: ``n_corrector`` Langevin steps with step 2 (snr ||z|| / ||s||)^2, then the
    reverse-diffusion predictor x + d s + sqrt(d) z with d = sigma_i^2 - sigma_{i+1}^2
    towards the next level (sigma_{L+1} = 0; the last predictor step adds no noise, which is the
    final denoising step). One network evaluation per predictor and per corrector step.
    """
    levels = _as_list(sigmas)
    index = 0
    for level, sigma in enumerate(levels):
        sigma_batch = torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)
        for step in range(n_corrector):
            grad, z = score(x, sigma_batch), _randn(x, generator)
            eps = 2.0 * (snr * _batch_norms(z) / _batch_norms(grad).clamp_min(1e-12)) ** 2
            x = x + eps * grad + torch.sqrt(2.0 * eps) * z
            if callback is not None:
                callback({"x": x, "level": level, "step": step, "sigma": sigma, "index": index})
            index += 1
        sigma_next = levels[level + 1] if level + 1 < len(levels) else 0.0
        var = sigma**2 - sigma_next**2
        x = x + var * score(x, sigma_batch)
        if sigma_next > 0:
            x = x + math.sqrt(var) * _randn(x, generator)
        if callback is not None:
            callback({"x": x, "level": level, "step": n_corrector, "sigma": sigma, "index": index})
        index += 1
    return x


@torch.no_grad()
def probability_flow_heun(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                          callback: Callback | None = None) -> Tensor:
    """Deterministic sampling: Heun's method on the probability-flow ODE of the VE SDE.

    dx/dsigma = -sigma grad_x log p_sigma(x) (Karras et al. 2022, Alg. 1), integrated from
    sigmas[0] through each given level and finally to sigma = 0 (an Euler step). ``x`` starts
    as a draw from N(0, sigmas[0]^2 I) (plus the data mean, if known). 2L - 1 score evaluations.
    """
    levels = _as_list(sigmas) + [0.0]
    for level, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:], strict=True)):
        sigma_batch = torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)
        slope = -sigma * score(x, sigma_batch)
        x_next = x + (sigma_next - sigma) * slope
        if sigma_next > 0:
            next_batch = torch.full_like(sigma_batch, sigma_next)
            slope_next = -sigma_next * score(x_next, next_batch)
            x_next = x + (sigma_next - sigma) * 0.5 * (slope + slope_next)
        x = x_next
        if callback is not None:
            callback({"x": x, "level": level, "step": 0, "sigma": sigma, "index": level})
    return x
