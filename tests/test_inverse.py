"""ncsn.core.inverse on exact scores: the bases are orthonormal and observe what they claim; on a
Gaussian, conditional samples follow the exact posterior (mean and covariance within bounds
justified below) for a pixel mask, changes of basis (the DCT, block means, score_sde's colour
decoupling on an RGB Gaussian) and a noisy observation; the observed components are kept
exactly; Algorithm 2's noisy copies at each level."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ncsn.core import inverse as inv
from ncsn.core import samplers as S
from ncsn.core.noise import geometric_sigmas
from ncsn.core.toy import Gaussian, smooth_image_gaussian

SIDE, N = 4, 4000
D = SIDE * SIDE
GREY = (1, SIDE, SIDE)
COLOUR = (3, 2, 2)


def _colour_gaussian() -> Gaussian:
    """A Gaussian on 3x2x2 RGB images: strongly correlated channels (correlations 0.8, 0.6)
    times the 2x2 smooth spatial covariance, plus 0.1 I; mean 0.5."""
    rgb = 0.5 * torch.tensor([[1.0, 0.8, 0.6], [0.8, 1.0, 0.8], [0.6, 0.8, 1.0]],
                             dtype=torch.float64)
    cov = torch.kron(rgb, smooth_image_gaussian(2).cov) + 0.1 * torch.eye(12, dtype=torch.float64)
    return Gaussian(torch.full((12,), 0.5, dtype=torch.float64), cov)


GAUSSIANS = {GREY: smooth_image_gaussian(SIDE), COLOUR: _colour_gaussian()}


def _basis_matrix(basis: inv.Basis, shape: tuple[int, int, int]) -> torch.Tensor:
    """U as a (D, D) matrix: column j is U applied to the j-th pixel image."""
    d = math.prod(shape)
    return basis.forward(torch.eye(d, dtype=torch.float64).reshape(d, *shape)).reshape(d, d).T


def _check_gaussian(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor,
                    bias: float) -> None:
    """Whitened by the exact law, samples have mean 0 (each component's sample mean is
    N(0, 1/N): 5 standard errors) and covariance I (entry standard errors at most sqrt(2/N):
    5 of them, plus ``bias``, the sampler's own discretisation bias, bounded by each test)."""
    chol = torch.linalg.cholesky(cov)
    w = torch.linalg.solve_triangular(chol, (samples - mean).T, upper=False).T
    assert w.mean(0).abs().max().item() < 5.0 / math.sqrt(N)
    eye = torch.eye(w.shape[1], dtype=w.dtype)
    assert (torch.cov(w.T) - eye).abs().max().item() < 5.0 * math.sqrt(2.0 / N) + bias


def _restore(operator: inv.LinearObservation, shape: tuple[int, int, int], sampler, sigmas,
             **settings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """N posterior draws given one observation of one exact draw, flattened to their
    coefficients (N, D); the observation's coefficients (D,), U and the observed components."""
    gaussian = GAUSSIANS[shape]
    truth = gaussian.sample(1, torch.Generator().manual_seed(0)).reshape(1, *shape)
    y = operator.observe(truth, generator=torch.Generator().manual_seed(2))
    out = inv.restore(gaussian, y.expand(N, *shape).clone(), operator, sigmas, sampler=sampler,
                      generator=torch.Generator().manual_seed(1), **settings)
    u = _basis_matrix(operator.basis, shape)
    obs = operator.observed(torch.zeros(1, *shape)).flatten()
    return out.reshape(N, -1) @ u.T, u @ y.flatten(), u, obs


SIGMA_L = 0.05
MASK = torch.zeros(1, 1, SIDE, SIDE)
MASK[..., :, :2] = 1.0


@pytest.mark.parametrize("operator, shape", [
    (inv.pixel_observation(MASK), GREY), (inv.low_frequencies(GREY, 0.25), GREY),
    (inv.super_resolution(GREY, 2), GREY), (inv.colorization(COLOUR), COLOUR),
], ids=["pixel-mask", "dct", "block-means", "colorization"])
def test_annealed_langevin_samples_the_exact_posterior_without_noise(operator, shape):
    """Annealed Langevin with the constraint targets, at its last level, the Gaussian perturbed at
    sigma_L with its observed coefficients at U y + sigma_L z (module docstring): the
    conditional N(m + K (y - m_o), C~_u|o + sigma_L^2 K K^T), C~ = U C U^T + sigma_L^2 I. Its
    bias: unadjusted Langevin with step a on a Gaussian of variance v has stationary variance
    v / (1 - a / (4 v)), at most 1.3% here (a = 2 sigma_L^2, v >= 0.1), bounded by 0.02. That
    target is the exact posterior p(x | M U x = y) as sigma_L -> 0, within 0.05 here."""
    coefficients, observed, u, obs = _restore(
        operator, shape, S.annealed_langevin, geometric_sigmas(3.0, SIGMA_L, 10),
        n_steps_each=100, step_size=2 * SIGMA_L**2)
    assert torch.allclose(coefficients[:, obs], observed[obs].expand(N, -1), atol=1e-12)
    prior = GAUSSIANS[shape].transformed(u)
    mean, cov, gain = prior.perturbed(SIGMA_L).condition(obs, observed[obs])
    cov = cov + SIGMA_L**2 * gain @ gain.T
    _check_gaussian(coefficients[:, ~obs], mean[~obs], cov[~obs][:, ~obs], bias=0.02)
    clean_mean, clean_cov, _ = prior.condition(obs, observed[obs])
    assert (torch.linalg.eigvalsh(cov[~obs][:, ~obs]) / torch.linalg.eigvalsh(
        clean_cov[~obs][:, ~obs]) - 1).abs().max() < 0.05
    assert (mean - clean_mean).abs().max() < 0.05


def test_noisy_observation_follows_the_exact_posterior():
    """Denoising, s = 0.3: above s the observation fixes x at y + sqrt(sigma^2 - s^2) z (an exact
    coupling), below s ancestral steps (consistent annealing, eta of the exact Gaussian step)
    sample p(x | x_s) from x_s = y, i.e. p(x | y) = N(m + K (y - m), C - K C), K = C (C + s^2)^-1.
    Bias: the ancestral step's noise variance differs from the exact step's by O(step); with
    200 geometric levels 5 -> 0.01 it stays below 0.05 of the whitened covariance."""
    operator = inv.denoising(GREY, 0.3)
    samples, observed, _, _ = _restore(operator, GREY, S.consistent_annealed,
                                       geometric_sigmas(5.0, 0.01, 200))
    mean, cov, _ = GAUSSIANS[GREY].condition(torch.ones(D, dtype=torch.bool), observed, 0.09)
    _check_gaussian(samples, mean, cov, bias=0.05)


def test_bases_are_orthonormal_and_observe_what_they_claim():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    for basis in (inv.PixelBasis(), inv.BlockDCT(2), inv.BlockDCT(8), inv.ColourDecoupling()):
        c = basis.forward(x)
        assert torch.allclose(basis.inverse(c), x, atol=1e-12)
        assert torch.allclose(c.norm(), x.norm(), atol=1e-12)
    d = inv.dct_matrix(5, dtype=torch.float64)
    assert torch.allclose(d @ d.T, torch.eye(5, dtype=torch.float64), atol=1e-12)
    # score_sde's decoupling matrix, as printed in its controllable_generation.py
    score_sde = torch.tensor([[5.7735014e-01, -8.1649649e-01, 4.7008697e-08],
                              [5.7735026e-01, 4.0824834e-01, 7.0710671e-01],
                              [5.7735026e-01, 4.0824822e-01, -7.0710683e-01]])
    assert torch.allclose(inv.colour_decoupling_matrix(), score_sde, atol=1e-6)
    # super-resolution observes factor x the block means; colorization sqrt 3 x the grey
    sr = inv.super_resolution((3, 8, 8), 2)
    seen = sr.basis.forward(x)[sr.observed(x)].reshape(2, 3, 4, 4)
    assert torch.allclose(seen, 2 * F.avg_pool2d(x, 2), atol=1e-12)
    assert torch.allclose(sr.observe(x, fill=0.5), F.interpolate(F.avg_pool2d(x, 2),
                                                                 scale_factor=2), atol=1e-12)
    col = inv.colorization((3, 8, 8))
    seen = col.basis.forward(x)[col.observed(x)].reshape(2, 1, 8, 8)
    assert torch.allclose(seen, math.sqrt(3) * x.mean(1, keepdim=True), atol=1e-12)
    assert torch.allclose(col.observe(x), x.mean(1, keepdim=True).expand_as(x), atol=1e-12)
    freq = inv.low_frequencies((1, 8, 8), 0.25)
    assert int(freq.mask.sum()) == 16 and bool(freq.mask[0, 0, 0, 0])


def test_observed_coefficients_hold_the_noisy_copy_of_each_level():
    """At sigma >= s the observed coefficients are U y + sqrt(sigma^2 - s^2) z, the same z
    during a level; below s the constraint leaves x alone."""
    operator = inv.low_frequencies((1, 8, 8), 0.5, noise_std=0.3)
    y = torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    constrain = inv.observation_constraint(operator, y, torch.Generator().manual_seed(5))
    x = torch.zeros_like(y)
    target = operator.basis.forward(y)
    mask = operator.observed(target)
    first, again = constrain(x, 0.5), constrain(x + 1, 0.5)
    spread = (operator.basis.forward(first) - target)[mask]
    assert abs(spread.std().item() - 0.4) < 0.02  # sqrt(0.5^2 - 0.3^2)
    assert torch.allclose(operator.basis.forward(again)[mask], operator.basis.forward(first)[mask])
    assert torch.allclose(operator.basis.forward(constrain(x, 0.3))[mask], target[mask])
    assert torch.equal(constrain(x, 0.2), x)


def test_unknown_sizes_are_value_errors():
    with pytest.raises(ValueError, match="divide the image size"):
        inv.super_resolution((1, 28, 28), 3)
    with pytest.raises(ValueError, match="RGB"):
        inv.colorization((1, 28, 28))
    with pytest.raises(ValueError, match="noise std > 0"):
        inv.denoising((1, 28, 28), 0.0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        inv.low_frequencies((1, 28, 28), 1.5)
