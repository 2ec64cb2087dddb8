"""Preconditioning (ncsn.nets.precond), the EDM weighting of DSM and continuous noise levels."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.core.losses import dsm_loss, dsm_weight
from ncsn.core.noise import draw_sigmas, geometric_sigmas
from ncsn.nets.precond import Preconditioned, edm_denoiser, edm_score, ncsnv2_score
from ncsn.nets.unet import UNetSmall

MU0, S0 = 0.3, 0.2  # Gaussian data N(MU0, S0^2 I)
SIGMA_DATA, CENTRE = 0.5, 0.5  # the preconditioner's assumptions (deliberately not the data's)


def optimal_backbone(h: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The F that makes EDM's D the exact posterior mean of Gaussian data: from h = c_in (x - mu)
    recover x, take D* = MU0 + S0^2 / (S0^2 + sigma^2) (x - MU0), and solve
    D* = mu + c_skip (x - mu) + c_out F for F."""
    s = sigma.reshape(-1, *([1] * (h.dim() - 1)))
    total = s**2 + SIGMA_DATA**2
    x = CENTRE + h * torch.sqrt(total)
    best = MU0 + S0**2 / (S0**2 + s**2) * (x - MU0)
    c_skip, c_out = SIGMA_DATA**2 / total, s * SIGMA_DATA / torch.sqrt(total)
    return (best - CENTRE - c_skip * (x - CENTRE)) / c_out


def test_edm_denoiser_with_the_optimal_backbone_gives_the_exact_score():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64) * 3
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 80.0], dtype=torch.float64)
    score = edm_score(optimal_backbone, x, sigma, sigma_data=SIGMA_DATA, data_mean=CENTRE)
    exact = -(x - MU0) / (S0**2 + sigma.reshape(-1, 1, 1, 1) ** 2)  # N(MU0, S0^2 + sigma^2)
    torch.testing.assert_close(score, exact, rtol=1e-9, atol=1e-9)


def test_ncsnv2_preconditioning_scales_input_and_divides_by_sigma():
    seen = {}

    def backbone(h, sigma):
        seen["h"] = h
        return torch.ones_like(h)

    x, sigma = torch.full((2, 1, 2, 2), 0.75), torch.tensor([0.5, 2.0])
    s = ncsnv2_score(backbone, x, sigma, sigma_data=0.5, data_mean=0.5)
    expected_h = 0.5 / torch.sqrt(1 + 4 * sigma**2)
    torch.testing.assert_close(seen["h"][:, 0, 0, 0], expected_h)
    torch.testing.assert_close(s[:, 0, 0, 0], 1 / sigma)


def test_dsm_with_the_edm_weight_is_edms_denoiser_loss_on_fixed_noise():
    torch.manual_seed(0)
    unet = UNetSmall(channels=1, image_size=8, ngf=4, ch_mult=(1, 2), emb_dim=8, groups=2)
    net = Preconditioned(unet, "edm", sigma_data=SIGMA_DATA, data_mean=CENTRE).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 8, 8, generator=gen, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.2, 1.0, 4.0, 15.0], dtype=torch.float64)
    z = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    dsm = dsm_loss(net, x, sigma=sigma, noise=z, sigma_data=SIGMA_DATA, reduction="none")
    denoised = edm_denoiser(net.backbone, x + sigma.reshape(-1, 1, 1, 1) * z, sigma,
                            sigma_data=SIGMA_DATA, data_mean=CENTRE)
    edm_lambda = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    edm = 0.5 * edm_lambda * ((denoised - x) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(dsm, edm, rtol=1e-8, atol=1e-10)
    # and the weight is the paper's sigma^2 times (sigma^2 + sigma_data^2) / sigma_data^2
    torch.testing.assert_close(dsm_weight(sigma, 2.0, SIGMA_DATA),
                               sigma**2 * (sigma**2 + SIGMA_DATA**2) / SIGMA_DATA**2)


def test_per_sample_sigma_equals_the_level_table_form():
    torch.manual_seed(0)
    net = Preconditioned(UNetSmall(channels=1, image_size=8, ngf=4, ch_mult=(1, 2), emb_dim=8,
                                   groups=2))
    sigmas = geometric_sigmas(1.0, 0.01, 4)
    levels = torch.tensor([0, 3, 1, 2])
    x, z = torch.rand(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    by_levels = dsm_loss(net, x, sigmas, levels=levels, noise=z, reduction="none")
    by_sigma = dsm_loss(net, x, sigma=sigmas[levels], noise=z, reduction="none")
    torch.testing.assert_close(by_levels, by_sigma)
    with pytest.raises(ValueError, match="not both"):
        dsm_loss(net, x, sigmas, levels=levels, sigma=sigmas[levels])


@pytest.mark.parametrize("distribution", ["log_uniform", "log_normal"])
def test_continuous_sigma_draws_follow_their_distribution(distribution):
    gen = torch.Generator().manual_seed(0)
    s = draw_sigmas(200_000, distribution, sigma_min=0.01, sigma_max=15.0, p_mean=-0.6,
                    p_std=1.2, generator=gen).double().log()
    if distribution == "log_uniform":
        lo, hi = math.log(0.01), math.log(15.0)
        assert s.min() >= lo - 1e-6 and s.max() <= hi + 1e-6
        assert s.mean().item() == pytest.approx((lo + hi) / 2, abs=0.01)
        assert s.std().item() == pytest.approx((hi - lo) / math.sqrt(12), rel=0.01)
    else:
        assert s.mean().item() == pytest.approx(-0.6, abs=0.01)
        assert s.std().item() == pytest.approx(1.2, rel=0.01)


def test_trainer_draws_continuous_levels_with_the_edm_weight(tmp_path, monkeypatch):
    from ncsn.errors import UserError
    from ncsn.training import Trainer, train
    from test_train_support import tiny_config

    config = tiny_config(model={"precond": "edm"},
                         noise={"distribution": "log_normal", "sigma_max": "auto"},
                         training={"weighting": "edm", "n_iters": 2},
                         sampling={"sampler": "dpm_solver_2m", "nfe": 6, "n_steps_each": None,
                                   "step_size": None, "final_denoise": None})
    seen = []
    original = Trainer._draw_sigma
    monkeypatch.setattr(Trainer, "_draw_sigma",
                        lambda self, b: seen.append(original(self, b)) or seen[-1])
    train(config, tmp_path / "run", progress=False)
    drawn = torch.cat(seen)
    assert drawn.numel() == 2 * 8 and len(set(drawn.tolist())) == drawn.numel()  # continuous
    from ncsn.nets.io import load_model
    from ncsn.sampling import plan_sampling

    net, spec = load_model(tmp_path / "run")
    assert spec.sigmas[0] > 1.0  # sigma_max from the data, not the default 1
    assert plan_sampling(spec, continuous=True).sampler == "dpm_solver_2m"
    from ncsn.config import validate_config
    from test_train_support import tiny_raw

    raw = tiny_raw(noise={"distribution": "log_uniform"})
    raw["model"] = {"name": "cond_refinenet", "ngf": 4}
    discrete_net = validate_config(raw)
    with pytest.raises(UserError, match="knows only its discrete levels"):
        train(discrete_net, tmp_path / "bad", progress=False)
