import torch

from ncsn.core.losses import dsm_loss, exact_sm_loss, ssm_loss


def gaussian_optimal_score(s0: float):
    """The exact score of N(0, s0^2 I) perturbed by sigma: -x / (s0^2 + sigma^2)."""
    return lambda x, sigma: -x / (s0**2 + sigma.reshape(-1, 1) ** 2)


def test_dsm_with_fixed_noise_equals_hand_computation():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=gen)
    z = torch.randn(6, 3, generator=gen)
    sigmas = torch.tensor([2.0, 0.5, 0.1])
    levels = torch.tensor([0, 1, 2, 2, 1, 0])
    a = torch.randn(3, 3, generator=gen)
    score = lambda y, s: y @ a.T + s[:, None]  # noqa: E731
    expected = []
    for k in range(6):
        s = sigmas[levels[k]]
        xt = x[k] + s * z[k]
        r = xt @ a.T + s + z[k] / s
        expected.append(0.5 * (r**2).sum() * s**2)
    got = dsm_loss(score, x, sigmas, levels=levels, noise=z, reduction="none")
    assert torch.allclose(got, torch.stack(expected), atol=1e-5)
    mean = dsm_loss(score, x, sigmas, levels=levels, noise=z)
    assert torch.allclose(mean, torch.stack(expected).mean(), atol=1e-5)
    # anneal_power = 0 drops the sigma^2 weight.
    unweighted = dsm_loss(score, x, sigmas, levels=levels, noise=z, anneal_power=0.0,
                          reduction="none")
    assert torch.allclose(unweighted * sigmas[levels] ** 2, got, atol=1e-5)


def test_dsm_is_zero_for_the_exact_score_of_a_point_mass():
    x = torch.zeros(50, 4)
    sigmas = torch.tensor([1.0, 0.3])
    score = lambda y, s: -y / s.reshape(-1, 1) ** 2  # noqa: E731
    assert dsm_loss(score, x, sigmas).abs().item() < 1e-10


def test_dsm_minimum_matches_closed_form_for_gaussian_data():
    # Data N(0, s0^2 I_D): at the optimal score the loss is D s0^2 / (2 (s0^2 + sigma^2)).
    gen = torch.Generator().manual_seed(1)
    s0, dim, sigma = 0.8, 5, 0.5
    x = torch.randn(200000, dim, generator=gen, dtype=torch.float64) * s0
    sigmas = torch.tensor([sigma], dtype=torch.float64)
    best = dsm_loss(gaussian_optimal_score(s0), x, sigmas, generator=gen).item()
    assert abs(best - dim * s0**2 / (2 * (s0**2 + sigma**2))) < 0.01
    worse = dsm_loss(gaussian_optimal_score(1.2), x, sigmas, generator=gen).item()
    assert worse > best + 0.05


def linear_score(dim: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    b = torch.randn(dim, generator=gen, dtype=torch.float64)
    return a, b, (lambda x, s: x @ a.T + b)


def test_exact_sm_equals_closed_form_for_linear_score():
    a, b, score = linear_score(4, 0)
    x = torch.randn(16, 4, dtype=torch.float64)
    expected = torch.trace(a) + 0.5 * ((x @ a.T + b) ** 2).sum(1)
    assert torch.allclose(exact_sm_loss(score, x, reduction="none"), expected, atol=1e-10)


def test_ssm_agrees_with_exact_sm_in_expectation():
    a, b, score = linear_score(3, 1)
    x = torch.randn(8, 3, dtype=torch.float64)
    exact = exact_sm_loss(score, x, reduction="none")
    gen = torch.Generator().manual_seed(2)
    for projection in ("gaussian", "rademacher"):
        for vr in (True, False):
            est = ssm_loss(score, x, n_particles=40000, projection=projection,
                           variance_reduced=vr, generator=gen, reduction="none")
            scale = 1 + exact.abs()
            assert ((est - exact).abs() / scale).max() < 0.06, (projection, vr)


def test_ssm_with_fixed_projection_equals_hand_formula():
    a, b, score = linear_score(3, 3)
    x = torch.randn(5, 3, dtype=torch.float64)
    v = torch.randn(1, 5, 3, dtype=torch.float64)
    s = x @ a.T + b
    jac = torch.einsum("bi,ij,bj->b", v[0], a, v[0])
    vr = ssm_loss(score, x, projections=v, reduction="none")
    plain = ssm_loss(score, x, projections=v, variance_reduced=False, reduction="none")
    assert torch.allclose(vr, jac + 0.5 * (s**2).sum(1), atol=1e-10)
    assert torch.allclose(plain, jac + 0.5 * (v[0] * s).sum(1) ** 2, atol=1e-10)


def test_ssm_on_a_nonlinear_network_matches_exact_sm():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Softplus(), torch.nn.Linear(16, 2))
    net = net.double()
    score = lambda x, s: net(x)  # noqa: E731
    x = torch.randn(4, 2, dtype=torch.float64)
    exact = exact_sm_loss(score, x).item()
    est = ssm_loss(score, x, n_particles=20000, generator=torch.Generator().manual_seed(4)).item()
    assert abs(est - exact) < 0.03 * (1 + abs(exact))


def test_annealed_ssm_gradients_reach_the_model():
    net = torch.nn.Linear(2, 2)
    score = lambda x, s: net(x) / s[:, None]  # noqa: E731
    loss = ssm_loss(score, torch.randn(16, 2), torch.tensor([1.0, 0.5]),
                    generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
