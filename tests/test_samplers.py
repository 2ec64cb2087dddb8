"""Every sampler of ncsn.core.samplers on exact scores: the paper's mixture (mode weights and a
distance to exact samples), a Gaussian (mean and std), seeds, callbacks and inpainting."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from ncsn.core import samplers as S
from ncsn.core.inverse import inpaint
from ncsn.core.noise import geometric_sigmas, karras_sigmas
from ncsn.core.toy import GaussianMixture, paper_mixture
from ncsn.experiments.toy import mode_fraction, sliced_wasserstein

N = 4000
# name -> (sampler, schedule, settings, noise level of the distribution it ends at)
# Annealed Langevin runs the paper's Figure 3 setting (sigma 20 -> 1, T = 100, eps = 0.1), which
# samples the mixture perturbed at sigma_L = 1; the others anneal 40 -> 0.01 and end with a
# noise-free step (Tweedie's denoising), i.e. at the data itself.
SAMPLER_CASES = {
    "annealed_langevin": (S.annealed_langevin, geometric_sigmas(20.0, 1.0, 10),
                          {"n_steps_each": 100, "step_size": 0.1}, 1.0),
    "consistent_annealed": (S.consistent_annealed, geometric_sigmas(40.0, 0.01, 100), {}, 0.0),
    "predictor_corrector": (S.predictor_corrector, geometric_sigmas(40.0, 0.01, 100),
                            {"n_corrector": 1}, 0.0),
    "probability_flow_ode": (S.edm_sampler, karras_sigmas(40.0, 0.01, 30), {}, 0.0),
    # churn lengthens every Heun step (from sigma^ = sigma (1 + gamma)): more levels for the
    # same accuracy (with 30 levels the Gaussian's std comes out 3-5% high)
    "edm": (S.edm_sampler, karras_sigmas(40.0, 0.01, 80),
            {"s_churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0}, 0.0),
    "dpm_solver_2m": (S.dpm_solver_2m, karras_sigmas(40.0, 0.01, 30), {}, 0.0),
    "dpm_solver_3m": (S.dpm_solver_3m, karras_sigmas(40.0, 0.01, 30), {}, 0.0),
}


def _start(mix: GaussianMixture, sigmas: torch.Tensor, uniform: bool,
           gen: torch.Generator) -> torch.Tensor:
    """U[-8, 8]^2 (the paper's Figure 3 start) or exact draws of the data perturbed at sigma_1."""
    if uniform:
        return torch.rand(N, 2, generator=gen) * 16 - 8
    return mix.perturbed(float(sigmas[0])).sample(N, gen)


def _per_mode_distance(x: torch.Tensor, exact: torch.Tensor) -> float:
    """Largest sliced W1 between the two sets restricted to one mode (x + y < 0 or >= 0);
    the mode weights are checked separately, so this measures each mode's shape."""
    worst = 0.0
    for side in (True, False):
        a, b = x[(x.sum(1) < 0) == side], exact[(exact.sum(1) < 0) == side]
        n = min(len(a), len(b))
        worst = max(worst, sliced_wasserstein(a[:n], b[:n],
                                              generator=torch.Generator().manual_seed(9)))
    return worst


@pytest.mark.parametrize("name", list(SAMPLER_CASES))
def test_sampler_recovers_the_paper_mixture(name):
    fn, sigmas, settings, end_sigma = SAMPLER_CASES[name]
    mix, gen = paper_mixture(), torch.Generator().manual_seed(0)
    target = mix.perturbed(end_sigma)
    x = fn(mix, _start(mix, sigmas, name == "annealed_langevin", gen), sigmas, generator=gen,
           **settings)
    assert abs(mode_fraction(x) - 0.2) < 0.05
    # The bound: two independent exact sets of the same size are this far apart by chance
    # (mean + 4 std over 10 pairs); a sampler whose output is distributed like the target
    # stays below it (its own discretisation error is small at these step counts).
    exact = target.sample(N, gen)
    floors = [_per_mode_distance(target.sample(N, gen), exact) for _ in range(10)]
    bound = statistics.mean(floors) + 4 * statistics.stdev(floors)
    assert _per_mode_distance(x, exact) < bound


@pytest.mark.parametrize("name", list(SAMPLER_CASES))
def test_sampler_reaches_a_gaussian_mean_and_std(name):
    fn, _, settings, _ = SAMPLER_CASES[name]
    mean, std = torch.tensor([1.0, -2.0]), 0.5
    target = GaussianMixture([1.0], [mean.tolist()], std)
    # On a Gaussian every sampler can end at sigma_L = 0.01 (annealed Langevin with eps below
    # 2 sigma_L^2, so its largest-level steps stay stable, and Tweedie's final step).
    if name == "annealed_langevin":
        sigmas, settings = geometric_sigmas(20.0, 0.01, 10), {"n_steps_each": 100,
                                                                "step_size": 1e-4,
                                                                "final_denoise": True}
    else:
        sigmas = SAMPLER_CASES[name][1]
    gen = torch.Generator().manual_seed(1)
    x = fn(target, _start(target, sigmas, False, gen), sigmas, generator=gen, **settings)
    # Tweedie's last step maps N(mean, std^2 + sL^2) to std^2 / sqrt(std^2 + sL^2): 0.4999
    assert torch.allclose(x.mean(0), mean, atol=0.03)
    assert torch.allclose(x.std(0), torch.full((2,), std), rtol=0.04)


@pytest.mark.parametrize("name", list(SAMPLER_CASES))
def test_same_generator_seed_gives_the_same_samples(name):
    fn, sigmas, settings, _ = SAMPLER_CASES[name]
    mix = paper_mixture()
    start = mix.perturbed(float(sigmas[0])).sample(64, torch.Generator().manual_seed(2))

    def run(seed: int) -> torch.Tensor:
        return fn(mix, start, sigmas, generator=torch.Generator().manual_seed(seed), **settings)

    assert torch.equal(run(3), run(3))
    deterministic = name in ("probability_flow_ode", "dpm_solver_2m", "dpm_solver_3m")
    assert torch.equal(run(3), run(4)) == deterministic


def test_plain_langevin_gets_the_mixture_weights_wrong_annealed_gets_them_right():
    # Paper Figure 3: 1280 samples from U[-8, 8]^2 with exact scores.
    mix = paper_mixture()
    gen = torch.Generator().manual_seed(1)
    init = torch.rand(1280, 2, generator=gen) * 16 - 8
    plain = S.langevin(mix, init, step_size=0.1, n_steps=1000, generator=gen)
    annealed = S.annealed_langevin(mix, init, geometric_sigmas(20.0, 1.0, 10), 100, 0.1,
                                   generator=gen)
    assert abs(mode_fraction(annealed) - 0.2) < 0.05
    assert abs(mode_fraction(plain) - 0.2) > 0.1


def test_langevin_on_a_gaussian_reaches_its_mean_and_variance():
    target = GaussianMixture([1.0], [[2.0, -1.0]], 1.5)
    x = S.langevin(target, torch.zeros(4000, 2), step_size=0.05, n_steps=600,
                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.mean(0), torch.tensor([2.0, -1.0]), atol=0.08)
    assert torch.allclose(x.var(0), torch.tensor([2.25, 2.25]), rtol=0.06)


def test_official_convention_is_paper_with_double_step():
    mix = paper_mixture()
    sigmas = geometric_sigmas(5.0, 1.0, 3)
    init = torch.randn(16, 2)
    paper = S.annealed_langevin(mix, init, sigmas, 7, 0.2,
                                generator=torch.Generator().manual_seed(0))
    official = S.annealed_langevin(mix, init, sigmas, 7, 0.1, convention="official",
                                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(paper, official, atol=1e-5)
    with pytest.raises(ValueError, match="convention"):
        S.annealed_langevin(mix, init, sigmas, 1, 0.1, convention="ddpm")


def test_callback_sees_every_update_in_order():
    seen = []
    S.annealed_langevin(paper_mixture(), torch.zeros(4, 2), [1.0, 0.5, 0.25], 4, 0.01,
                        final_denoise=True, callback=lambda info: seen.append(
                            (info["index"], info["level"], info["sigma"])))
    assert [i for i, _, _ in seen] == list(range(13))  # 3 levels x 4 steps + the final step
    assert [lvl for _, lvl, _ in seen[:12]] == [0] * 4 + [1] * 4 + [2] * 4


def test_consistent_annealing_keeps_the_noise_level_it_promises():
    # From x = x0 + sigma z with the exact score of a point mass at x0, one update gives
    # x0 + sigma' z' exactly in distribution: check the std after one level change.
    x0 = torch.tensor([[0.3, -0.7]])
    point = lambda x, s: (x0 - x) / s[:, None] ** 2  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    start = x0 + 2.0 * torch.randn(20000, 2, generator=gen)
    seen = []
    S.consistent_annealed(point, start, [2.0, 1.5, 1.0], eta=0.6, generator=gen,
                          callback=lambda info: seen.append(info["x"]))
    assert torch.allclose((seen[0] - x0).std(0), torch.full((2,), 1.5), rtol=0.02)
    assert torch.allclose((seen[1] - x0).std(0), torch.full((2,), 1.0), rtol=0.02)
    with pytest.raises(ValueError, match="consistency needs eta >= 0.25"):
        S.consistent_annealed(point, start, [2.0, 1.5, 1.0], eta=0.2)


def test_inpainting_keeps_observed_pixels_at_the_current_noise_level():
    gen = torch.Generator().manual_seed(5)
    observed = torch.rand(3, 1, 6, 6, generator=gen)
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :, :3] = 1.0
    steps = []

    def score(x, s):
        return -x / (1 + s[:, None, None, None] ** 2)

    out = inpaint(score, observed, mask, geometric_sigmas(1.0, 0.1, 3), n_steps_each=5,
                    step_size=1e-3, generator=gen, callback=lambda i: steps.append(i["x"]))
    full = mask.expand_as(observed) > 0
    assert torch.equal(out[full], observed[full])
    assert not torch.allclose(out[~full], torch.zeros_like(out[~full]))
    # During a level, observed pixels hold the same noisy copy y + sigma_i z after every step.
    assert torch.equal(steps[0][full], steps[4][full])
    assert not torch.equal(steps[4][full], steps[5][full])
    noise = (steps[0][full] - observed[full]).std()
    assert 0.8 < noise.item() < 1.2  # sigma_1 = 1


def test_karras_sigmas_endpoints_and_spacing():
    s = karras_sigmas(80.0, 0.002, 18)
    assert s[0].item() == pytest.approx(80.0, rel=1e-5) and s[-1].item() == pytest.approx(0.002)
    assert (s[:-1] > s[1:]).all()
    # rho = 7: absolute steps shrink towards sigma_min while steps in log sigma grow.
    steps, ratios = s[:-1] - s[1:], s[:-1] / s[1:]
    assert (steps[:-1] > steps[1:]).all() and (ratios[:-1] < ratios[1:]).all()


def _ode_error(fn, levels: int) -> float:
    """Largest error of ``fn`` on the probability-flow ODE of N(MU, S^2) data, whose exact
    solution is x(sigma) = MU + (x - MU) sqrt((S^2 + sigma^2) / (S^2 + sigma_1^2)), from
    sigma_1 = 10 to 0.05, followed by the exact final denoising step (float64)."""
    mu, s2, top, bottom = 0.3, 0.04, 10.0, 0.05

    def score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return -(x - mu) / (s2 + sigma.reshape(-1, 1) ** 2)

    x0 = torch.linspace(-30.0, 30.0, 7, dtype=torch.float64).reshape(-1, 1)
    out = fn(score, x0, geometric_sigmas(top, bottom, levels).tolist())
    at_bottom = mu + (x0 - mu) * ((s2 + bottom**2) / (s2 + top**2)) ** 0.5
    exact = at_bottom + bottom**2 * score(at_bottom, torch.full((7,), bottom))
    return float((out - exact).abs().max())


@pytest.mark.parametrize(("fn", "order"), [(S.dpm_solver_2m, 2), (S.dpm_solver_3m, 3)])
def test_multistep_solvers_converge_at_their_order(fn, order):
    """Doubling the levels divides the error by about 2^order once the steps are small: the
    3M step integrates the parabola through three denoised values exactly."""
    errors = [_ode_error(fn, n) for n in (32, 64, 128)]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
    assert all(rate > order - 0.3 for rate in rates), rates
