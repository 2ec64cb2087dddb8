"""Samplers over one score function ``score(x, sigma)`` (see :mod:`ncsn.core`).

Every sampler has the same shape::

    sampler(score, x, sigmas, *, generator=None, callback=None, constrain=None, **settings)

``x`` is the initial draw (the caller draws it; see ``ncsn.sampling`` for each sampler's prior),
``sigmas`` the noise schedule from largest to smallest (a 1-D tensor or a list), ``generator``
feeds every random draw, ``callback(info)`` is called after every update with
``info = {"x", "level", "step", "sigma", "index"}`` (``index`` counts updates), and
``constrain(x, sigma)`` (inverse problems: :mod:`ncsn.core.inverse`) is applied to the initial
``x`` and after every update, with the noise level ``x`` is at. Samplers run without gradients
and never clamp.

Langevin step conventions (both explicit, never mixed silently):

- ``"paper"`` (Song & Ermon 2019, Algorithm 1): alpha_i = eps sigma_i^2 / sigma_L^2,
  x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z.
- ``"official"`` (the official NCSN and NCSNv2 code): a_i = step_lr sigma_i^2 / sigma_L^2,
  x <- x + a_i s(x, sigma_i) + sqrt(2 a_i) z, the same chain with eps = 2 step_lr.
  The paper's text states eps = 2e-5, but its official sampler runs step_lr = 2e-5 in this
  convention, i.e. eps = 4e-5 (docs/core.md).

What each costs in score evaluations is part of its typed settings
(:mod:`ncsn.spec.samplers`).
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
Constraint = Callable[[Tensor, float], Tensor]
"""``constrain(x, sigma) -> x`` with known values imposed on ``x`` at noise level ``sigma``."""


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


def _full(x: Tensor, sigma: float) -> Tensor:
    return torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)


def _denoised(score: ScoreFn, x: Tensor, sigma: float) -> Tensor:
    """Tweedie's estimate E[x_0 | x] = x + sigma^2 s(x, sigma)."""
    return x + sigma**2 * score(x, _full(x, sigma))


class _Updates:
    """Applies ``constrain`` and reports every update to ``callback`` with a running index."""

    def __init__(self, callback: Callback | None, constrain: Constraint | None) -> None:
        self.callback, self.constrain, self.index = callback, constrain, 0

    def start(self, x: Tensor, sigma: float) -> Tensor:
        return x if self.constrain is None else self.constrain(x, sigma)

    def __call__(self, x: Tensor, sigma_now: float, level: int, step: int, sigma: float) -> Tensor:
        if self.constrain is not None:
            x = self.constrain(x, sigma_now)
        if self.callback is not None:
            self.callback({"x": x, "level": level, "step": step, "sigma": sigma,
                           "index": self.index})
        self.index += 1
        return x


def annealed_step_sizes(sigmas: list[float], step_size: float) -> list[float]:
    """alpha_i = step_size * sigma_i^2 / sigma_L^2 (Algorithm 1, line 3)."""
    sigma_min = sigmas[-1]
    if sigma_min <= 0:
        raise ValueError("annealed Langevin needs sigma_L > 0")
    return [step_size * (s / sigma_min) ** 2 for s in sigmas]


def _langevin_levels(score: ScoreFn, x: Tensor, sigmas: list[float], alphas: list[float],
                     n_steps_each: int, convention: Convention,
                     generator: torch.Generator | None, updates: _Updates) -> Tensor:
    """``n_steps_each`` Langevin steps at each (sigma_i, alpha_i) in turn."""
    if n_steps_each < 1:
        raise ValueError(f"n_steps_each must be >= 1, got {n_steps_each}")
    for level, (sigma, alpha) in enumerate(zip(sigmas, alphas, strict=True)):
        drift, scale = _step_coefficients(alpha, convention)
        sigma_batch = _full(x, sigma)
        for step in range(n_steps_each):
            x = x + drift * score(x, sigma_batch) + scale * _randn(x, generator)
            x = updates(x, sigma, level, step, sigma)
    return x


@torch.no_grad()
def langevin(score: ScoreFn, x: Tensor, step_size: float, n_steps: int, *, sigma: float = 0.0,
             convention: Convention = "paper", generator: torch.Generator | None = None,
             callback: Callback | None = None) -> Tensor:
    """Plain Langevin dynamics at one fixed noise level (paper Eq. 4).

    Paper convention: x_t = x_{t-1} + (eps/2) s(x_{t-1}, sigma) + sqrt(eps) z_t.
    ``sigma`` is passed to the score (0 = the data's own score, e.g. analytic).
    """
    return _langevin_levels(score, x, [sigma], [step_size], n_steps, convention, generator,
                            _Updates(callback, None))


@torch.no_grad()
def annealed_langevin(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float],
                      n_steps_each: int = 100, step_size: float = 2e-5, *,
                      convention: Convention = "paper", final_denoise: bool = False,
                      generator: torch.Generator | None = None,
                      callback: Callback | None = None,
                      constrain: Constraint | None = None) -> Tensor:
    """Annealed Langevin dynamics (paper Algorithm 1), sigmas from largest to smallest.

    The paper's images: 10 geometric levels 1 -> 0.01, ``n_steps_each`` T = 100 and
    ``step_size`` eps = 2e-5 in the paper's text; its official code ran step_lr = 2e-5 in the
    "official" convention (= paper eps 4e-5). ``final_denoise`` ends with one step
    x + sigma_L^2 s(x, sigma_L) (NCSNv2, Tweedie's formula).
    """
    levels = _as_list(sigmas)
    updates = _Updates(callback, constrain)
    x = updates.start(x, levels[0])
    x = _langevin_levels(score, x, levels, annealed_step_sizes(levels, step_size), n_steps_each,
                         convention, generator, updates)
    if final_denoise:
        x = updates(_denoised(score, x, levels[-1]), 0.0, len(levels) - 1, n_steps_each,
                    levels[-1])
    return x


def ancestral_eta(sigmas: Tensor | list[float]) -> float:
    """max over steps of 1 - (sigma_{i+1} / sigma_i)^2: the consistent-annealing eta of the exact
    Gaussian posterior (ancestral) step, 1 for a single level."""
    levels = _as_list(sigmas)
    return max([1.0 - (low / high) ** 2 for high, low in zip(levels[:-1], levels[1:],
                                                             strict=True)], default=1.0)


def check_consistent_eta(sigmas: Tensor | list[float], eta: float) -> None:
    """ValueError unless 1 - sigma_{i+1}/sigma_i <= eta <= 1 for every step of the schedule
    (the condition of :func:`consistent_annealed` for a non-negative noise variance)."""
    if not 0.0 < eta <= 1.0:
        raise ValueError(f"eta must lie in (0, 1], got {eta}")
    levels = _as_list(sigmas)
    for high, low in zip(levels[:-1], levels[1:], strict=True):
        if low < (1.0 - eta) * high:
            raise ValueError(f"eta = {eta} is too small for the step from sigma {high:.4g} to "
                             f"{low:.4g}: consistency needs eta >= {1 - low / high:.4g}")


@torch.no_grad()
def consistent_annealed(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float],
                        n_steps_each: int = 1, eta: float | None = None, *,
                        generator: torch.Generator | None = None,
                        callback: Callback | None = None,
                        constrain: Constraint | None = None) -> Tensor:
    """Consistent annealed sampling (Jolicoeur-Martineau et al. 2021, Algorithm 2).

    Each level is visited ``n_steps_each`` times; one update from sigma to the next level
    sigma' (sigma' = sigma while repeating, 0 after the last) is
    x <- x + eta sigma^2 s(x, sigma) + sqrt(sigma'^2 - (1 - eta)^2 sigma^2) z,
    which keeps the noise level of x at exactly sigma' if the score is exact (the paper's
    eps = eta sigma_L^2 and beta = sqrt(1 - gamma^2 (1 - eta)^2) for a geometric ratio gamma).
    Needs 1 - sigma'/sigma <= eta <= 1 (that bound is deterministic, DDIM-like); the default
    ``eta = None`` takes 1 - (sigma'/sigma)^2 of the steepest step, which for a geometric schedule
    is the exact Gaussian posterior step (ancestral sampling). eta = 1 (denoise, then add fresh
    noise) loses the mixture weights. The last update adds no noise.
    """
    if n_steps_each < 1:
        raise ValueError(f"n_steps_each must be >= 1, got {n_steps_each}")
    levels = _as_list(sigmas)
    eta = ancestral_eta(levels) if eta is None else eta
    check_consistent_eta(levels, eta)
    visits = [(level, step, s) for level, s in enumerate(levels) for step in range(n_steps_each)]
    updates = _Updates(callback, constrain)
    x = updates.start(x, levels[0])
    for k, (level, step, sigma) in enumerate(visits):
        sigma_next = visits[k + 1][2] if k + 1 < len(visits) else 0.0
        x = x + eta * sigma**2 * score(x, _full(x, sigma))
        if sigma_next > 0:
            x = x + math.sqrt(sigma_next**2 - ((1.0 - eta) * sigma) ** 2) * _randn(x, generator)
        x = updates(x, sigma_next, level, step, sigma)
    return x


def _batch_norms(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1).mean()


@torch.no_grad()
def predictor_corrector(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                        n_corrector: int = 1, snr: float = 0.16,
                        generator: torch.Generator | None = None,
                        callback: Callback | None = None,
                        constrain: Constraint | None = None) -> Tensor:
    """Predictor-corrector sampling of the variance-exploding SDE (Song et al. 2021, Alg. 2-4).

    At each sigma_i: ``n_corrector`` Langevin steps with step 2 (snr ||z|| / ||s||)^2, then the
    reverse-diffusion predictor x + d s + sqrt(d) z with d = sigma_i^2 - sigma_{i+1}^2
    towards the next level (sigma_{L+1} = 0; the last predictor step adds no noise, which is the
    final denoising step). One network evaluation per predictor and per corrector step.
    """
    if n_corrector < 0 or snr <= 0:
        raise ValueError(f"need n_corrector >= 0 and snr > 0, got {n_corrector} and {snr}")
    levels = _as_list(sigmas)
    updates = _Updates(callback, constrain)
    x = updates.start(x, levels[0])
    for level, sigma in enumerate(levels):
        sigma_batch = _full(x, sigma)
        for step in range(n_corrector):
            grad, z = score(x, sigma_batch), _randn(x, generator)
            eps = 2.0 * (snr * _batch_norms(z) / _batch_norms(grad).clamp_min(1e-12)) ** 2
            x = updates(x + eps * grad + torch.sqrt(2.0 * eps) * z, sigma, level, step, sigma)
        sigma_next = levels[level + 1] if level + 1 < len(levels) else 0.0
        var = sigma**2 - sigma_next**2
        x = x + var * score(x, sigma_batch)
        if sigma_next > 0:
            x = x + math.sqrt(var) * _randn(x, generator)
        x = updates(x, sigma_next, level, n_corrector, sigma)
    return x


@torch.no_grad()
def edm_sampler(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                s_noise: float = 1.0, generator: torch.Generator | None = None,
                callback: Callback | None = None,
                constrain: Constraint | None = None) -> Tensor:
    """Heun's method on the probability-flow ODE of the VE SDE, with EDM's optional churn
    (Karras et al. 2022, Algorithm 2; ``s_churn = 0`` is their deterministic Algorithm 1).

    dx/dsigma = -sigma s(x, sigma) = (x - D(x; sigma)) / sigma. At each level with
    s_tmin <= sigma <= s_tmax, noise is first added to raise sigma to
    sigma^ = sigma (1 + gamma), gamma = min(s_churn / L, sqrt(2) - 1) (with ``s_noise`` scaling
    z); then a Heun step to the next level, and a final Euler step to sigma = 0 (which returns
    the denoised estimate). 2 L - 1 score evaluations. With churn, the score is also evaluated
    at sigma^, between the levels.
    """
    if min(s_churn, s_tmin, s_noise) < 0 or s_tmax < s_tmin:
        raise ValueError("need s_churn, s_tmin, s_noise >= 0 and s_tmax >= s_tmin")
    levels = _as_list(sigmas)
    gamma_max = min(s_churn / len(levels), math.sqrt(2.0) - 1.0)
    updates = _Updates(callback, constrain)
    x = updates.start(x, levels[0])
    for level, (sigma, sigma_next) in enumerate(zip(levels, levels[1:] + [0.0], strict=True)):
        gamma = gamma_max if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1.0 + gamma)
        if gamma > 0:
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * _randn(x, generator)
        slope = -sigma_hat * score(x, _full(x, sigma_hat))
        x_next = x + (sigma_next - sigma_hat) * slope
        if sigma_next > 0:
            slope_next = -sigma_next * score(x_next, _full(x, sigma_next))
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next)
        x = updates(x_next, sigma_next, level, 0, sigma)
    return x


def probability_flow_ode(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                         generator: torch.Generator | None = None,
                         callback: Callback | None = None,
                         constrain: Constraint | None = None) -> Tensor:
    """Heun's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1): the
    deterministic :func:`edm_sampler`, without churn; ``generator`` is unused."""
    return edm_sampler(score, x, sigmas, s_churn=0.0, generator=generator, callback=callback,
                       constrain=constrain)


@torch.no_grad()
def dpm_solver_multistep(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                         order: int = 2, generator: torch.Generator | None = None,
                         callback: Callback | None = None,
                         constrain: Constraint | None = None) -> Tensor:
    """DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++") of ``order`` 2 (their
    Algorithm 2, "2M") or 3 ("3M") on the VE probability-flow ODE, in lambda = -log sigma with
    the denoiser D = x + sigma^2 s. One score evaluation per level; ``generator`` is unused.

    dx/dlambda = D - x, so a step of h = log(sigma / sigma') is exactly
    x' = e^{-h} x + int_0^h e^{-(h - v)} D(lambda + v) dv.
    - 2M: D in the integral is (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1} / h.
    - 3M: D = D0 + v D1 + v^2 D2 / 2 with D1, D2 the derivatives at lambda of the parabola
      through the last three denoised values (divided differences); the integral is
      (1 - e^{-h}) D0 + (h - 1 + e^{-h}) D1 + (h^2 / 2 - h + 1 - e^{-h}) D2.
    The first step is first order (D constant), the second of 3M is a 2M step; the last step,
    to sigma = 0, returns D.
    """
    del generator
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3, got {order}")
    levels = _as_list(sigmas)
    updates = _Updates(callback, constrain)
    x = updates.start(x, levels[0])
    history: list[tuple[Tensor, float]] = []  # (D, h of the step that led there), newest first
    previous_h = 0.0
    for level, (sigma, sigma_next) in enumerate(zip(levels, levels[1:] + [0.0], strict=True)):
        denoised = _denoised(score, x, sigma)
        history = [(denoised, previous_h), *history][:order]
        if sigma_next == 0:
            x_next = denoised
        else:
            h = math.log(sigma / sigma_next)
            if order == 3 and len(history) == 3:
                x_next = _third_order_step(x, h, history)
            else:
                blend = denoised
                if len(history) >= 2:
                    r = history[0][1] / h
                    blend = (1.0 + 0.5 / r) * denoised - (0.5 / r) * history[1][0]
                x_next = (sigma_next / sigma) * x + (1.0 - sigma_next / sigma) * blend
            previous_h = h
        x = updates(x_next, sigma_next, level, 0, sigma)
    return x


def _third_order_step(x: Tensor, h: float, history: list[tuple[Tensor, float]]) -> Tensor:
    """One 3M step of size ``h`` from the last three (D, step into it) pairs, newest first."""
    (d0, h1), (d1, h2), (d2, _) = history
    slope01, slope12 = (d0 - d1) / h1, (d1 - d2) / h2
    curvature = (slope01 - slope12) / (h1 + h2)  # the divided difference f[x0, x1, x2]
    decay = math.exp(-h)
    return (decay * x + (1.0 - decay) * d0 + (h - 1.0 + decay) * (slope01 + curvature * h1)
            + (h * h / 2.0 - h + 1.0 - decay) * 2.0 * curvature)


def dpm_solver_2m(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                  generator: torch.Generator | None = None,
                  callback: Callback | None = None,
                  constrain: Constraint | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): :func:`dpm_solver_multistep`, order 2."""
    return dpm_solver_multistep(score, x, sigmas, order=2, generator=generator,
                                callback=callback, constrain=constrain)


def dpm_solver_3m(score: ScoreFn, x: Tensor, sigmas: Tensor | list[float], *,
                  generator: torch.Generator | None = None,
                  callback: Callback | None = None,
                  constrain: Constraint | None = None) -> Tensor:
    """DPM-Solver++(3M): :func:`dpm_solver_multistep` of order 3."""
    return dpm_solver_multistep(score, x, sigmas, order=3, generator=generator,
                                callback=callback, constrain=constrain)
