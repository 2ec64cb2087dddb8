import pytest
import torch

from ncsn.core.noise import geometric_sigmas
from ncsn.core.samplers import annealed_langevin, inpaint, langevin
from ncsn.core.toy import GaussianMixture, paper_mixture


def test_langevin_on_a_gaussian_reaches_its_mean_and_variance():
    target = GaussianMixture([1.0], [[2.0, -1.0]], 1.5)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(4000, 2)
    x = langevin(target, x0, step_size=0.05, n_steps=600, generator=gen)
    assert torch.allclose(x.mean(0), torch.tensor([2.0, -1.0]), atol=0.08)
    assert torch.allclose(x.var(0), torch.tensor([2.25, 2.25]), rtol=0.06)


def _mode_fraction(x: torch.Tensor) -> float:
    return (x.sum(1) < 0).float().mean().item()


def test_annealed_langevin_recovers_mixture_weights_plain_langevin_does_not():
    # Paper Figure 3: 1280 samples from U[-8, 8]^2 with exact scores.
    mix = paper_mixture()
    gen = torch.Generator().manual_seed(1)
    init = torch.rand(1280, 2, generator=gen) * 16 - 8
    plain = langevin(mix, init, step_size=0.1, n_steps=1000, generator=gen)
    sigmas = geometric_sigmas(20.0, 1.0, 10)
    annealed = annealed_langevin(mix, init, sigmas, 100, 0.1, generator=gen)
    assert abs(_mode_fraction(annealed) - 0.2) < 0.05
    assert abs(_mode_fraction(plain) - 0.2) > 0.1


def test_fixed_generator_gives_identical_samples():
    mix = paper_mixture()
    sigmas = geometric_sigmas(5.0, 1.0, 3)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return annealed_langevin(mix, torch.zeros(8, 2), sigmas, 5, 0.1, generator=g)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_official_convention_is_paper_with_double_step():
    mix = paper_mixture()
    sigmas = geometric_sigmas(5.0, 1.0, 3)
    init = torch.randn(16, 2)
    paper = annealed_langevin(mix, init, sigmas, 7, 0.2, generator=torch.Generator().manual_seed(0))
    official = annealed_langevin(mix, init, sigmas, 7, 0.1, convention="official",
                                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(paper, official, atol=1e-5)
    with pytest.raises(ValueError, match="convention"):
        annealed_langevin(mix, init, sigmas, 1, 0.1, convention="ddpm")


def test_callback_sees_every_step_and_final_denoise_is_tweedie_at_sigma_l():
    # N(mu, 0.5^2 I) perturbed with sigma has the score -(x - mu) / (0.25 + sigma^2), so the
    # denoising step x + sigma^2 s(x, sigma) differs between sigma_L and sigma_1 (for a point
    # mass, x + sigma^2 s = mu at every sigma and the test could not tell them apart).
    mu, var = torch.tensor([0.3, -0.7]), 0.25
    target = GaussianMixture([1.0], [mu.tolist()], var**0.5)
    seen = []
    out = annealed_langevin(target, torch.zeros(4, 2), [2.0, 1.0, 0.5], 4, 0.01,
                            final_denoise=True, generator=torch.Generator().manual_seed(0),
                            callback=seen.append)
    assert [info["index"] for info in seen] == list(range(len(seen)))
    langevin_steps = [info for info in seen if info["step"] < 4]
    assert [(i["level"], i["step"]) for i in langevin_steps] == [(k, t) for k in range(3)
                                                                  for t in range(4)]
    last = langevin_steps[-1]["x"]
    tweedie = last - 0.5**2 * (last - mu) / (var + 0.5**2)  # x + sigma_L^2 s(x, sigma_L)
    torch.testing.assert_close(out, tweedie, rtol=0, atol=1e-6)
    at_sigma_1 = last - 2.0**2 * (last - mu) / (var + 2.0**2)
    assert float((out - at_sigma_1).abs().max()) > 0.1


def test_inpainting_never_changes_observed_pixels():
    gen = torch.Generator().manual_seed(5)
    observed = torch.rand(3, 1, 6, 6, generator=gen)
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :, :3] = 1.0
    steps = []

    def score(x, s):
        return -x / (1 + s[:, None, None, None] ** 2)

    def check(info):
        steps.append(info["x"].clone())

    out = inpaint(score, observed, mask, geometric_sigmas(1.0, 0.1, 3), 5, 1e-3, generator=gen,
                  callback=check)
    full = mask.expand_as(observed) > 0
    assert torch.equal(out[full], observed[full])
    assert not torch.allclose(out[~full], torch.zeros_like(out[~full]))
    # During a level, observed pixels hold the same noisy copy y + sigma_i z after every step.
    assert torch.equal(steps[0][full], steps[4][full])
    assert not torch.equal(steps[4][full], steps[5][full])


def test_probability_flow_heun_maps_the_prior_onto_a_gaussian():
    from ncsn.core.noise import karras_sigmas
    from ncsn.core.samplers import probability_flow_heun

    target = GaussianMixture([1.0], [[1.0, -2.0]], 0.5)
    sigmas = karras_sigmas(30.0, 0.01, 40)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.0, -2.0]) + torch.randn(20000, 2, generator=gen, dtype=torch.float64) \
        * (30.0**2 + 0.25) ** 0.5
    x = probability_flow_heun(target, x0, sigmas)
    assert torch.allclose(x.mean(0), torch.tensor([1.0, -2.0], dtype=torch.float64), atol=0.02)
    assert torch.allclose(x.std(0), torch.tensor([0.5, 0.5], dtype=torch.float64), rtol=0.03)


def test_fast_samplers_recover_mixture_weights():
    from ncsn.core.noise import karras_sigmas
    from ncsn.core.samplers import predictor_corrector, probability_flow_heun

    mix = paper_mixture()
    gen = torch.Generator().manual_seed(2)
    start = torch.randn(4000, 2, generator=gen) * 40.0
    ode = probability_flow_heun(mix, start, karras_sigmas(40.0, 0.01, 30))
    pc = predictor_corrector(mix, start, geometric_sigmas(40.0, 0.01, 100), generator=gen)
    for x in (ode, pc):
        assert abs(_mode_fraction(x) - 0.2) < 0.03
        lower = x[x.sum(1) < 0]
        assert torch.allclose(lower.mean(0), torch.tensor([-5.0, -5.0]), atol=0.15)


def test_karras_sigmas_endpoints_and_spacing():
    from ncsn.core.noise import karras_sigmas

    s = karras_sigmas(80.0, 0.002, 18)
    assert s[0].item() == pytest.approx(80.0, rel=1e-5) and s[-1].item() == pytest.approx(0.002)
    assert (s[:-1] > s[1:]).all()
    # rho = 7: absolute steps shrink towards sigma_min while steps in log sigma grow.
    steps, ratios = s[:-1] - s[1:], s[:-1] / s[1:]
    assert (steps[:-1] > steps[1:]).all() and (ratios[:-1] < ratios[1:]).all()
