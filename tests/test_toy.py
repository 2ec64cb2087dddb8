import torch

from ncsn.core.toy import GaussianMixture, paper_mixture


def test_score_equals_autograd_of_log_prob():
    mix = GaussianMixture([0.3, 0.5, 0.2], [[-2.0, 1.0], [3.0, 0.0], [0.0, -4.0]], [0.5, 1.0, 2.0])
    x = torch.randn(64, 2, dtype=torch.float64) * 4
    for sigma in (0.0, 0.7, torch.rand(64, dtype=torch.float64) * 3):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(mix.log_prob(xr, sigma).sum(), xr)
        assert torch.allclose(mix.score(x, sigma), grad, atol=1e-10)


def test_perturbed_mixture_is_convolution_with_gaussian():
    mix = paper_mixture()
    x = torch.randn(32, 2, dtype=torch.float64) * 6
    assert torch.allclose(mix.perturbed(2.0).log_prob(x), mix.log_prob(x, 2.0), atol=1e-12)
    # Density integrates to one on a fine grid (2-D Riemann sum).
    g = torch.linspace(-14, 14, 561, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    mass = mix.log_prob(pts, 1.0).exp().sum() * (g[1] - g[0]) ** 2
    assert abs(mass.item() - 1.0) < 1e-3


def test_samples_have_the_mixture_weights_and_means():
    gen = torch.Generator().manual_seed(0)
    x, labels = paper_mixture().sample(20000, gen, return_labels=True)
    frac = (labels == 0).double().mean().item()
    assert abs(frac - 0.2) < 0.015
    assert torch.allclose(x[labels == 0].mean(0), torch.tensor([-5.0, -5.0]), atol=0.05)
    assert torch.allclose(x[labels == 1].std(0), torch.tensor([1.0, 1.0]), atol=0.03)
