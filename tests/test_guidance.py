"""Classifier guidance with the exact noise-conditional classifier of a 2-D Gaussian mixture:
guided sampling recovers the class-conditional component weights, with any sampler. Guidance
through the denoiser (the exact clean classifier of the Tweedie estimate x + sigma^2 s) has its
closed-form gradient on a Gaussian and draws only the asked class, but not its weights."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.core import samplers as S
from ncsn.core.guidance import class_log_prob_grad, denoised_guided_score, guided_score
from ncsn.core.noise import geometric_sigmas
from ncsn.core.toy import GaussianMixture

N = 4000
MEANS = [[-5.0, -5.0], [5.0, 5.0], [5.0, -5.0]]
WEIGHTS = [0.1, 0.3, 0.6]
CLASSES = [[0, 1], [2]]  # class 0: components 0 and 1 (conditional weights 0.25, 0.75)
MIXTURE = GaussianMixture(WEIGHTS, MEANS, 1.0)


def exact_logits(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log p(y, x) at sigma, i.e. logits of the exact p(y | x, sigma): log of the class's total
    weight plus the log density of its (normalised) sub-mixture perturbed at sigma."""
    columns = []
    for members in CLASSES:
        w = torch.tensor([WEIGHTS[k] for k in members], dtype=torch.float64)
        sub = GaussianMixture(w, [MEANS[k] for k in members], 1.0)
        columns.append(math.log(float(w.sum())) + sub.log_prob(x, sigma).double())
    return torch.stack(columns, dim=1)


def _components(x: torch.Tensor) -> torch.Tensor:
    """Share of samples nearest to each component mean."""
    nearest = torch.cdist(x.double(), torch.tensor(MEANS, dtype=torch.float64)).argmin(1)
    return torch.bincount(nearest, minlength=3).double() / x.shape[0]


SAMPLERS = pytest.mark.parametrize("sampler, sigmas, settings", [
    (S.annealed_langevin, geometric_sigmas(20.0, 1.0, 10), {"n_steps_each": 100,
                                                            "step_size": 0.1}),
    (S.consistent_annealed, geometric_sigmas(40.0, 0.01, 100), {}),
    (S.dpm_solver_2m, geometric_sigmas(40.0, 0.01, 30), {}),
], ids=["annealed_langevin", "consistent_annealed", "dpm_solver_2m"])


def clean_logits(x0: torch.Tensor) -> torch.Tensor:
    """The exact classifier of the clean mixture (``exact_logits`` at sigma = 0)."""
    return exact_logits(x0, torch.zeros(x0.shape[0]))


def _start(sampler, sigmas, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(N, 2, generator=gen) * 16 - 8 if sampler is S.annealed_langevin else \
        MIXTURE.perturbed(float(sigmas[0])).sample(N, gen)


@SAMPLERS
def test_guidance_with_the_exact_classifier_recovers_the_conditional_weights(sampler, sigmas,
                                                                            settings):
    """w = 1: the guided score is the exact score of p_sigma(x | y), so samples of class 0 put
    0.25 / 0.75 / 0 on the components. Bound: the binomial standard error is at most
    sqrt(0.25 / N) = 0.008; the samplers' own error on mixture weights is below 0.05 on the
    paper's mixture (tests/test_samplers.py), so 0.05 here."""
    gen = torch.Generator().manual_seed(0)
    start = _start(sampler, sigmas, gen)
    for label, want in [(0, [0.25, 0.75, 0.0]), (1, [0.0, 0.0, 1.0])]:
        x = sampler(guided_score(MIXTURE, exact_logits, label), start, sigmas, generator=gen,
                    **settings)
        assert (_components(x) - torch.tensor(want, dtype=torch.float64)).abs().max() < 0.05


def test_guidance_gradient_is_the_conditional_score_minus_the_score():
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1)) * 4
    sigma = torch.full((64,), 2.0)
    sub = GaussianMixture([0.1, 0.3], MEANS[:2], 1.0)
    grad = class_log_prob_grad(exact_logits, x, sigma, torch.zeros(64, dtype=torch.long))
    assert torch.allclose(grad, sub.score(x, sigma) - MIXTURE.score(x, sigma), atol=1e-5)
    assert torch.allclose(guided_score(MIXTURE, exact_logits, 0, scale=0.0)(x, sigma),
                          MIXTURE.score(x, sigma))
    with pytest.raises(ValueError, match="scale must be >= 0"):
        guided_score(MIXTURE, exact_logits, 0, scale=-1.0)


@SAMPLERS
def test_guidance_through_the_denoiser_draws_only_the_asked_class(sampler, sigmas, settings):
    """The exact clean classifier of x0_hat = x + sigma^2 s(x, sigma) (exact score) guides every
    sampler into the asked class's components (>= 0.98 of samples; the bound is the samplers'
    own leakage between components, 0.012 at most measured), at w = 1."""
    gen = torch.Generator().manual_seed(0)
    start = _start(sampler, sigmas, gen)
    for label, members in enumerate(CLASSES):
        x = sampler(denoised_guided_score(MIXTURE, clean_logits, label), start, sigmas,
                    generator=gen, **settings)
        assert float(_components(x)[members].sum()) >= 0.98


def test_guidance_through_the_denoiser_is_not_the_conditional_inside_a_class():
    """p(y | E[x0 | x]) is not p(y | x, sigma): at large sigma x0_hat is near the mixture mean
    (4, -2), nearer component 1 (5, 5) than component 0 (-5, -5), so class 0 falls short of
    its conditional weight 0.25 on component 0 by more than the sampler's error (0.05)."""
    sigmas = geometric_sigmas(40.0, 0.01, 100)
    gen = torch.Generator().manual_seed(0)
    x = S.consistent_annealed(denoised_guided_score(MIXTURE, clean_logits, 0),
                              _start(S.consistent_annealed, sigmas, gen), sigmas, generator=gen)
    assert float(_components(x)[0]) < 0.25 - 0.05


def test_denoised_guidance_gradient_on_a_gaussian_is_the_shrunk_classifier_gradient():
    """For data N(mu, s0^2 I), x0_hat = (s0^2 x + sigma^2 mu) / (s0^2 + sigma^2), so with linear
    logits x0 A + b the guidance is w s0^2 / (s0^2 + sigma^2) (A_y - A softmax(x0_hat A + b))."""
    gen = torch.Generator().manual_seed(2)
    mu, s0 = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.7
    data = GaussianMixture([1.0], mu.reshape(1, 2), s0)
    weights, bias = torch.randn(2, 3, generator=gen, dtype=torch.float64), torch.randn(3)
    x = torch.randn(32, 2, generator=gen, dtype=torch.float64) * 3
    sigma = torch.rand(32, generator=gen, dtype=torch.float64) * 4 + 0.01
    shrink = (s0**2 / (s0**2 + sigma**2)).reshape(-1, 1)
    denoised = shrink * x + (1 - shrink) * mu
    probs = torch.softmax(denoised @ weights + bias, dim=1)
    labels = torch.arange(32) % 3
    want = 2.5 * shrink * (weights.T[labels] - probs @ weights.T)
    got = denoised_guided_score(data, lambda x0: x0 @ weights + bias, labels, scale=2.5)(x, sigma)
    assert torch.allclose(got - data.score(x, sigma), want, atol=1e-9)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        denoised_guided_score(data, lambda x0: x0 @ weights, 0, scale=-1.0)
