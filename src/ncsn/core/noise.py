"""Noise schedules: the paper's geometric sigmas and NCSNv2's data-driven choices.

NCSNv2 = Song & Ermon (2020), "Improved Techniques for Training Score-Based Generative Models".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> Tensor:
    """sigma_1 = sigma_max > ... > sigma_L = sigma_min with a constant ratio (paper Sec. 4.1)."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if num_levels == 1:
        return torch.tensor([float(sigma_max)])
    exps = torch.linspace(math.log(sigma_max), math.log(sigma_min), num_levels, dtype=torch.float64)
    return exps.exp().float()


def ncsnv2_sigma_max(data: Tensor, chunk: int = 1024) -> float:
    """NCSNv2 Technique 1: sigma_1 = the largest Euclidean distance between two training points."""
    flat = data.reshape(data.shape[0], -1).double()
    best = 0.0
    for start in range(0, flat.shape[0], chunk):
        dist = torch.cdist(flat[start:start + chunk], flat)
        best = max(best, float(dist.max()))
    return best


def ncsnv2_sigma_max_bounds(data: Tensor, transform: Callable[[Tensor], Tensor] | None = None,
                            chunk: int = 4096) -> tuple[float, float]:
    """Bounds on NCSNv2's sigma_1 (the largest pairwise distance) over all of ``data`` in O(N D)
    instead of O(N^2 D): with m the mean and f the point farthest from it,
    max_j ||x_j - f|| <= sigma_1 <= 2 max_j ||x_j - m|| (the lower bound is a distance between
    two data points, the upper one the triangle inequality). ``transform`` maps each chunk of
    rows (e.g. uint8 images) to the float space where distances are measured."""

    def rows() -> Iterator[Tensor]:
        for start in range(0, data.shape[0], chunk):
            part = data[start:start + chunk]
            part = transform(part) if transform is not None else part
            yield part.reshape(part.shape[0], -1).double()

    total, count = None, 0
    for part in rows():
        total = part.sum(0) if total is None else total + part.sum(0)
        count += part.shape[0]
    if total is None:
        raise ValueError("need at least one data point")
    mean = total / count
    radius, farthest = -1.0, mean
    for part in rows():
        dist = (part - mean).norm(dim=1)
        if float(dist.max()) > radius:
            radius, farthest = float(dist.max()), part[int(dist.argmax())]
    lower = max(float((part - farthest).norm(dim=1).max()) for part in rows())
    return lower, 2.0 * radius


def _std_normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def ncsnv2_ratio_criterion(gamma: float, dim: int) -> float:
    """NCSNv2 Technique 2: Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma).

    NCSNv2 picks the geometric ratio gamma = sigma_{i-1}/sigma_i so that this is about 0.5.
    """
    centre = math.sqrt(2.0 * dim) * (gamma - 1.0)
    return _std_normal_cdf(centre + 3.0 * gamma) - _std_normal_cdf(centre - 3.0 * gamma)


def ncsnv2_ratio_for_target(dim: int, target: float = 0.5) -> float:
    """The geometric ratio gamma > 1 with ``ncsnv2_ratio_criterion(gamma, dim) = target``.

    The criterion starts at Phi(3) - Phi(-3) = 0.9973 as gamma -> 1 and tends to 0 as gamma
    grows when sqrt(2D) > 3, but to 1 when D <= 4 (its lower edge sqrt(2D)(gamma-1) - 3 gamma
    then falls without bound): there no gamma reaches a target below 0.9973, and a ValueError
    says so. gamma is found by bisection.
    """
    if dim < 1:
        raise ValueError(f"the data dimension must be >= 1, got {dim}")
    start = ncsnv2_ratio_criterion(1.0, dim)
    if not 0.0 < target < start:
        raise ValueError(f"the criterion target must lie in (0, {start:.4f}) (its value as gamma "
                         f"-> 1), got {target}")
    if 2 * dim <= 9:
        raise ValueError(f"NCSNv2's ratio criterion cannot reach {target} in dimension D = {dim}: "
                         f"for D <= 4 it tends to 1 as gamma grows; choose the number of noise "
                         "levels by hand")
    lo, hi = 1.0 + 1e-12, 2.0
    while ncsnv2_ratio_criterion(hi, dim) > target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ncsnv2_ratio_criterion(mid, dim) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ncsnv2_num_levels(dim: int, sigma_max: float, sigma_min: float, target: float = 0.5) -> int:
    """The number of geometric levels whose ratio gamma meets ``ncsnv2_ratio_criterion = target``
    (NCSNv2 Technique 2): L = 1 + log(s1/sL)/log(gamma), rounded to the nearest integer, at
    least 2. A ValueError where the criterion cannot reach the target (D <= 4)."""
    gamma = ncsnv2_ratio_for_target(dim, target)
    return max(2, round(1.0 + math.log(sigma_max / sigma_min) / math.log(gamma)))


def ncsnv2_variance_ratio(step_lr: float, gamma: float, sigma_min: float,
                          n_steps_each: int) -> float:
    """NCSNv2 Eq. 4: s_T^2 / sigma_i^2 = a^{2T} (gamma^2 - c) + c after T steps at one level.

    a = 1 - eps / sigma_L^2 and c = 2 eps / (sigma_L^2 - sigma_L^2 a^2), with eps = ``step_lr``
    in the official convention (a_i = eps sigma_i^2 / sigma_L^2; x + a_i s + sqrt(2 a_i) z).
    """
    s2 = sigma_min**2
    a = 1.0 - step_lr / s2
    c = 2.0 * step_lr / (s2 - s2 * a * a)
    return a ** (2 * n_steps_each) * (gamma**2 - c) + c


def ncsnv2_step_size(sigmas: Tensor, n_steps_each: int, grid: int = 4000) -> float:
    """NCSNv2 Technique 4: the step eps (official convention) whose Eq. 4 ratio is closest to 1.

    Searched on a log grid over (0, sigma_L^2) (the ratio is defined for eps < sigma_L^2),
    then refined.
    """
    if sigmas.numel() < 2:
        raise ValueError("need at least two noise levels to derive a step size")
    gamma = float(sigmas[0] / sigmas[1])
    sigma_min = float(sigmas[-1])

    def gap(log_eps: float) -> float:
        return abs(ncsnv2_variance_ratio(math.exp(log_eps), gamma, sigma_min, n_steps_each) - 1.0)

    hi = math.log(sigma_min**2) - 1e-9
    lo = hi - math.log(1e8)
    grid_pts = [lo + (hi - lo) * k / grid for k in range(grid + 1)]
    k_best = min(range(len(grid_pts)), key=lambda k: gap(grid_pts[k]))
    a, b = grid_pts[max(k_best - 1, 0)], grid_pts[min(k_best + 1, grid)]
    for _ in range(100):
        m1, m2 = a + (b - a) / 3.0, b - (b - a) / 3.0
        if gap(m1) < gap(m2):
            b = m2
        else:
            a = m1
    return math.exp(0.5 * (a + b))


def karras_sigmas(sigma_max: float, sigma_min: float, num_levels: int, rho: float = 7.0) -> Tensor:
    """EDM schedule (Karras et al. 2022, Eq. 5): (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) -
    s_max^(1/rho)))^rho, i = 0..N-1; rho = 7 spends more steps at small sigma."""
    if num_levels < 2:
        raise ValueError(f"num_levels must be >= 2, got {num_levels}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, num_levels, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + ramp * (lo - hi)) ** rho).float()


SigmaDistribution = Literal["log_uniform", "log_normal"]


def draw_sigmas(batch: int, distribution: SigmaDistribution, *, sigma_min: float = 0.01,
                sigma_max: float = 1.0, p_mean: float = -1.2, p_std: float = 1.2,
                generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Tensor:
    """Per-sample noise levels for networks conditioned on continuous sigma.

    ``log_uniform``: log sigma ~ U[log sigma_min, log sigma_max] (the continuous limit of the
    paper's uniform choice among geometric levels). ``log_normal``: log sigma ~
    N(p_mean, p_std^2) (Karras et al. 2022, Sec. 5; their P_mean = -1.2, P_std = 1.2 are for data
    in [-1, 1]), not truncated.
    """
    if distribution == "log_uniform":
        if not 0 < sigma_min <= sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
        u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
        lo, hi = math.log(sigma_min), math.log(sigma_max)
        return (lo + (hi - lo) * u).exp().float()
    if distribution == "log_normal":
        if p_std <= 0:
            raise ValueError(f"p_std must be > 0, got {p_std}")
        z = torch.randn(batch, generator=generator, device=device, dtype=torch.float64)
        return (p_mean + p_std * z).exp().float()
    raise ValueError(f"distribution must be 'log_uniform' or 'log_normal', got {distribution!r}")
