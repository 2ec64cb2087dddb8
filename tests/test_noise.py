import math

import pytest
import torch

from ncsn.core.noise import (
    geometric_sigmas,
    ncsnv2_num_levels,
    ncsnv2_ratio_criterion,
    ncsnv2_ratio_for_target,
    ncsnv2_sigma_max,
    ncsnv2_sigma_max_bounds,
    ncsnv2_step_size,
    ncsnv2_variance_ratio,
)


def test_geometric_sigmas_paper_schedule():
    s = geometric_sigmas(1.0, 0.01, 10)
    assert s.shape == (10,)
    assert s[0].item() == pytest.approx(1.0) and s[-1].item() == pytest.approx(0.01)
    ratios = s[:-1] / s[1:]
    assert torch.allclose(ratios, torch.full_like(ratios, 100 ** (1 / 9)), rtol=1e-5)


def test_geometric_sigmas_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sigma_min"):
        geometric_sigmas(0.01, 1.0, 10)
    with pytest.raises(ValueError, match="num_levels"):
        geometric_sigmas(1.0, 0.01, 0)


def test_sigma_max_is_largest_pairwise_distance():
    pts = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [-3.0, -4.0]])
    assert ncsnv2_sigma_max(pts, chunk=3) == pytest.approx(10.0)


def test_ratio_criterion_matches_ncsnv2_cifar10_choice():
    # NCSNv2 CIFAR-10: D = 3072, 232 levels from 50 to 0.01 -> criterion 0.567.
    gamma = (50 / 0.01) ** (1 / 231)
    assert ncsnv2_ratio_criterion(gamma, 3072) == pytest.approx(0.567, abs=1e-3)
    # Aiming at exactly 0.5 gives about 219 levels.
    assert ncsnv2_num_levels(3072, 50.0, 0.01) in range(217, 222)


def test_step_size_reproduces_ncsnv2_cifar10_ratio():
    sigmas = geometric_sigmas(50.0, 0.01, 232)
    gamma = float(sigmas[0] / sigmas[1])
    assert ncsnv2_variance_ratio(6.2e-6, gamma, 0.01, 5) == pytest.approx(1.055, abs=1e-3)
    eps = ncsnv2_step_size(sigmas, 5)
    assert eps == pytest.approx(6.2e-6, rel=0.02)
    # The chosen eps is a minimiser of |ratio - 1| on both sides.
    gap = lambda e: abs(ncsnv2_variance_ratio(e, gamma, 0.01, 5) - 1)  # noqa: E731
    assert gap(eps) <= gap(eps * 1.01) and gap(eps) <= gap(eps / 1.01)
    assert math.isfinite(eps)


def test_num_levels_refuses_targets_the_criterion_cannot_reach():
    # For D <= 4 (sqrt(2D) <= 3) the criterion rises from 0.9973 towards 1 as gamma grows.
    for dim in (1, 2, 4):
        assert ncsnv2_ratio_criterion(1e6, dim) > 0.99
        with pytest.raises(ValueError, match=f"cannot reach 0.5 in dimension D = {dim}"):
            ncsnv2_num_levels(dim, 5.0, 0.01)
    assert ncsnv2_ratio_criterion(1e6, 5) < 0.5  # D = 5 crosses every target
    gamma = ncsnv2_ratio_for_target(5, 0.5)
    assert ncsnv2_ratio_criterion(gamma, 5) == pytest.approx(0.5, abs=1e-9)
    assert ncsnv2_num_levels(5, 5.0, 0.01) >= 2
    with pytest.raises(ValueError, match=r"target must lie in \(0, 0\.9973\)"):
        ncsnv2_num_levels(3072, 50.0, 0.01, target=0.998)


def test_sigma_max_bounds_enclose_the_largest_distance():
    gen = torch.Generator().manual_seed(0)
    points = torch.randint(0, 256, (300, 2, 3, 3), generator=gen, dtype=torch.uint8)
    exact = ncsnv2_sigma_max(points.float() / 255)
    lower, upper = ncsnv2_sigma_max_bounds(points, transform=lambda p: p.float() / 255, chunk=64)
    assert lower <= exact + 1e-9 <= upper + 2e-9 and upper <= 2 * exact + 1e-9
    line = torch.tensor([[0.0], [1.0], [4.0]])  # on a line the far point gives the exact value
    assert ncsnv2_sigma_max_bounds(line) == pytest.approx((4.0, 2 * (4.0 - 5 / 3)))
