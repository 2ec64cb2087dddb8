"""Layers of the RefineNet score networks: instance norm++ formula, blocks, sigma lookup."""

import pytest
import torch
import torch.nn.functional as F

from ncsn.nets.layers import (
    CondInstanceNorm2dPlus,
    CRPBlock,
    InstanceNorm2dPlus,
    ResidualBlock,
    mean_pool2x2,
    sigma_to_level,
)


def _norm_plus_reference(x, gamma, alpha, beta):
    """Conditional instance norm++ (NCSN Appendix A, docs/networks.md) written out with
    explicit loops over channels (float64)."""
    x = x.double()
    b, c = x.shape[:2]
    out = torch.empty_like(x)
    for i in range(b):
        mu = torch.stack([x[i, k].mean() for k in range(c)])
        m = mu.sum() / c
        v = ((mu - m) ** 2).sum() / (c - 1)
        for k in range(c):
            var = ((x[i, k] - mu[k]) ** 2).mean()
            h = (x[i, k] - mu[k]) / torch.sqrt(var + 1e-5)
            h = h + alpha[i, k] * (mu[k] - m) / torch.sqrt(v + 1e-5)
            out[i, k] = gamma[i, k] * h + beta[i, k]
    return out


def test_cond_instance_norm_plus_equals_formula():
    g = torch.Generator().manual_seed(0)
    norm = CondInstanceNorm2dPlus(5, num_levels=3)
    with torch.no_grad():
        norm.embed.weight.copy_(torch.randn(3, 15, generator=g))
    x = torch.randn(4, 5, 6, 7, generator=g) * 3 + torch.arange(5.0).view(1, 5, 1, 1)
    y = torch.tensor([0, 2, 1, 2])
    gamma, alpha, beta = norm.embed.weight[y].detach().double().chunk(3, dim=1)
    expected = _norm_plus_reference(x, gamma, alpha, beta)
    torch.testing.assert_close(norm(x, y).double(), expected, rtol=1e-5, atol=1e-5)


def test_instance_norm_plus_equals_formula():
    g = torch.Generator().manual_seed(1)
    norm = InstanceNorm2dPlus(4)
    with torch.no_grad():
        for p in (norm.gamma, norm.alpha, norm.beta):
            p.copy_(torch.randn(4, generator=g))
    x = torch.randn(2, 4, 5, 5, generator=g)
    rep = [p.detach().double().expand(2, 4) for p in (norm.gamma, norm.alpha, norm.beta)]
    torch.testing.assert_close(norm(x).double(), _norm_plus_reference(x, *rep),
                               rtol=1e-5, atol=1e-5)


def test_cond_norm_init():
    torch.manual_seed(0)
    norm = CondInstanceNorm2dPlus(256, num_levels=10)
    w = norm.embed.weight.detach()
    gamma_alpha, beta = w[:, :512], w[:, 512:]
    assert beta.abs().max() == 0
    assert abs(gamma_alpha.mean().item() - 1.0) < 0.005
    assert abs(gamma_alpha.std().item() - 0.02) < 0.002


def test_mean_pool_is_average_of_2x2_cells():
    x = torch.randn(2, 3, 8, 6)
    torch.testing.assert_close(mean_pool2x2(x), F.avg_pool2d(x, 2))
    assert mean_pool2x2(torch.randn(1, 1, 7, 5)).shape == (1, 1, 3, 2)


def test_residual_block_shapes():
    def norm(c):
        return CondInstanceNorm2dPlus(c, 2)

    y = torch.tensor([0, 1])
    x = torch.randn(2, 4, 8, 8)
    down = ResidualBlock(4, 6, norm, down=True)
    assert down(x, y).shape == (2, 6, 4, 4)
    assert down.conv2.conv.weight.shape == (6, 4, 3, 3)
    dilated = ResidualBlock(4, 4, norm, down=True, dilation=2)
    assert dilated(x, y).shape == (2, 4, 8, 8)
    assert dilated.shortcut.weight.shape == (4, 4, 3, 3) and dilated.shortcut.dilation == (2, 2)
    plain = ResidualBlock(4, 4, norm)
    assert plain.shortcut is None


def test_crp_avg_pool_counts_padding():
    crp = CRPBlock(1, 1, None, "avg")
    with torch.no_grad():
        crp.convs[0].weight.zero_()
        crp.convs[0].weight[0, 0, 1, 1] = 1.0
    x = torch.ones(1, 1, 6, 6)
    out = crp(x, None)
    # corner: 9 of 25 window cells are inside the image, padding counts as zeros
    assert out[0, 0, 0, 0].item() == pytest.approx(1.0 + 9 / 25)
    assert out[0, 0, 3, 3].item() == pytest.approx(2.0)


def test_sigma_to_level_matches_within_tolerance():
    sigmas = torch.tensor([1.0, 0.1, 0.01])
    levels = sigma_to_level(torch.tensor([0.01, 1.0, 0.1 * (1 + 5e-5)]), sigmas)
    assert levels.tolist() == [2, 0, 1]


def test_sigma_to_level_rejects_unknown_sigma():
    sigmas = torch.tensor([1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match=r"sigma=0\.5 .*1, 0\.1, 0\.01"):
        sigma_to_level(torch.tensor([1.0, 0.5]), sigmas)
