"""The EMA profiles of ncsn.training.ema: a constant rate and the power function of Karras et
al. 2024, against their closed forms."""

from __future__ import annotations

import pytest
import torch

from ncsn.training.ema import EMA, power_ema_rate, warmup_ema_rate


def _average_of(values: list[float], init: float | None = None, **profile: float) -> float:
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(values[0] if init is None else init)
    ema = EMA(net, **profile)
    for step, value in enumerate(values, start=1):
        with torch.no_grad():
            net.weight.fill_(value)
        ema.update(net, step)
    return float(ema.model.weight)


@pytest.mark.parametrize("gamma", [0.5, 6.94, 16.97])
def test_power_ema_weights_iterate_i_by_the_telescoping_power_law(gamma: float) -> None:
    """After t steps the average is sum_i w_i theta_i with w_i = (i^(g+1) - (i-1)^(g+1)) /
    t^(g+1): weights that sum to one and grow like i^g, so a long run forgets its start."""
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(200, generator=gen, dtype=torch.float64).tolist()
    t = len(values)
    i = torch.arange(1, t + 1, dtype=torch.float64)
    weights = (i ** (gamma + 1) - (i - 1) ** (gamma + 1)) / t ** (gamma + 1)
    assert float(weights.sum()) == pytest.approx(1.0)
    expected = float((weights * torch.tensor(values, dtype=torch.float64)).sum())
    assert _average_of(values, gamma=gamma) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_power_ema_first_step_copies_the_network_and_rate_rises_to_one() -> None:
    assert power_ema_rate(1, 7.0) == 0.0
    rates = [power_ema_rate(t, 7.0) for t in (2, 10, 100, 10_000)]
    assert rates == sorted(rates) and 0.99 < rates[-1] < 1.0
    assert _average_of([3.0], gamma=7.0) == 3.0


def test_constant_ema_is_the_exponential_moving_average() -> None:
    # 0.75 * (0.75 * 1 + 0.25 * 5) + 0.25 * 9 = 3.75
    assert _average_of([1.0, 5.0, 9.0], rate=0.75) == pytest.approx(3.75)


def test_warmed_up_ema_forgets_the_initial_weights_by_the_product_of_its_rates() -> None:
    """beta_t = min(rate, (1 + t) / (10 + t)): after t steps the initial weights keep
    prod_j beta_j, each iterate i gets (1 - beta_i) prod_{j > i} beta_j."""
    values = [1.0, -2.0, 4.0, 0.5, 3.0, -1.0]
    betas = [min(0.999, (1 + t) / (10 + t)) for t in range(1, len(values) + 1)]
    assert betas[0] == pytest.approx(2 / 11) and warmup_ema_rate(10_000, 0.999) == 0.999
    expected, kept = 0.0, 1.0
    for beta, value in zip(reversed(betas), reversed(values), strict=True):
        expected += (1 - beta) * kept * value
        kept *= beta
    expected += kept * 100.0
    assert _average_of(values, init=100.0, rate=0.999, warmup=True) == pytest.approx(expected)
    # without the warm-up the initial weights keep 0.999^6 of the average
    assert _average_of(values, init=100.0, rate=0.999) > 99.0


@pytest.mark.parametrize("profile", [{}, {"rate": 0.9, "gamma": 7.0}, {"rate": 1.0},
                                     {"gamma": 0.0}, {"gamma": 7.0, "warmup": True}])
def test_an_ema_needs_exactly_one_valid_profile(profile: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EMA(torch.nn.Linear(1, 1), **profile)
