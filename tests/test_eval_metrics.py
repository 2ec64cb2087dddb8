"""FID / KID / IS / nearest neighbours against closed forms and brute force (no Inception)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from ncsn.eval.metrics import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    nearest_neighbours,
)


def _random_rotation(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def test_frechet_distance_commuting_covariances_closed_form():
    # Same eigenvectors: W2^2 = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(0)
    d = 6
    q = _random_rotation(d, rng)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_frechet_distance_non_commuting_2d_closed_form():
    # For 2x2 M with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.9], [0.9, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_and_is_symmetric():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((200, 30)), rng.standard_normal((200, 30)) * 1.3 + 0.2
    (m1, s1), (m2, s2) = feature_statistics(x), feature_statistics(y)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(m2, s2, m1, s1) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_singular_covariances_stay_real_and_zero_on_self():
    # 10 samples in 50 dimensions: rank-9 covariances (sqrtm of S1 S2 is ill-conditioned).
    rng = np.random.default_rng(2)
    mu, sigma = feature_statistics(rng.standard_normal((10, 50)))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    mu2, sigma2 = feature_statistics(rng.standard_normal((10, 50)))
    value = frechet_distance(mu, sigma, mu2, sigma2)
    assert np.isfinite(value) and value > 0


@pytest.mark.parametrize("n", [5, 30, 80])
def test_frechet_distance_from_features_equals_the_covariance_route(n):
    # n - 1 < D takes the N x N route; n - 1 >= D the D x D one.
    rng = np.random.default_rng(7)
    feats = rng.standard_normal((n, 40)) * rng.uniform(0.5, 2, 40)
    mu2, sigma2 = feature_statistics(rng.standard_normal((60, 40)) + 0.3)
    expected = frechet_distance(*feature_statistics(feats), mu2, sigma2)
    assert frechet_distance_from_features(feats, mu2, sigma2) == pytest.approx(expected,
                                                                               rel=1e-9)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_mmd2_unbiased_equals_brute_force_sum():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 4)), rng.standard_normal((5, 4)) + 0.5

    def k(a, b):
        return (a @ b / 4 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / (7 * 5)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_unbiased_on_identical_distributions():
    # E[unbiased MMD^2] = 0 when both sets come from one distribution; the biased (V-statistic)
    # estimator with the diagonal kept is clearly positive on the same draws.
    rng = np.random.default_rng(4)
    unbiased, biased = [], []
    for _ in range(300):
        x, y = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
        unbiased.append(mmd2_unbiased(x, y))
        kxx, kyy, kxy = ((a @ b.T / 8 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())
    unbiased, biased = np.array(unbiased), np.array(biased)
    se = unbiased.std() / np.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 3 * se
    assert biased.mean() > 10 * se


def test_kid_detects_a_shift_and_reports_subset_spread():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((100, 8))
    same, same_std = kernel_inception_distance(x, rng.standard_normal((100, 8)),
                                               num_subsets=20, subset_size=50)
    shifted, _ = kernel_inception_distance(x, rng.standard_normal((100, 8)) + 1.0,
                                           num_subsets=20, subset_size=50)
    assert shifted > 0.1 > abs(same)
    assert same_std > 0


def test_inception_score_closed_forms():
    k = 10
    confident = np.full((100, k), -1e4)
    confident[np.arange(100), np.arange(100) % k] = 0.0  # one-hot, classes balanced per split
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0, abs=1e-6)
    same = np.tile(np.random.default_rng(6).standard_normal(k), (50, 1))
    assert inception_score(same, splits=5)[0] == pytest.approx(1.0, abs=1e-12)


def test_inception_score_needs_enough_samples():
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.zeros((5, 3)), splits=10)


def test_nearest_neighbours_match_brute_force_across_chunks():
    gen = torch.Generator().manual_seed(0)
    queries, keys = torch.rand(6, 1, 4, 4, generator=gen), torch.rand(50, 1, 4, 4, generator=gen)
    idx, dist = nearest_neighbours(queries, keys, k=3, chunk=7)
    full = torch.cdist(queries.reshape(6, -1).double(), keys.reshape(50, -1).double())
    ref_d, ref_i = full.topk(3, largest=False)
    assert torch.equal(idx, ref_i)
    assert torch.allclose(dist, ref_d.float())


def test_feature_statistics_need_two_samples():
    with pytest.raises(ValueError):
        feature_statistics(np.zeros((1, 3)))
