"""Log-likelihoods of a score model through the probability-flow ODE of the VE SDE.

Song et al. 2021 (Sec. 4.3, Appendix D.2): the VE SDE's probability-flow ODE, written in the
noise scale, is dx/dsigma = -sigma s(x, sigma). It moves p_sigma_min onto p_sigma_max, and by the
instantaneous change of variables (Chen et al. 2018, Theorem 1)
d log p_sigma(x(sigma)) / dsigma = -div(-sigma s) = sigma div_x s(x(sigma), sigma), so

    log p_sigma_min(x) = log pi(x(sigma_max)) - int_{sigma_min}^{sigma_max} sigma div s dsigma,

with the prior pi = N(prior_mean, sigma_max^2 I) standing in for p_sigma_max. The integration
variable is u = ln sigma (dx/du = -sigma^2 s, d log p/du = sigma^2 div s), which spreads the
work evenly over noise scales that span orders of magnitude.

The prior is an assumption: zero mean (score_sde's VE prior) is only close to p_sigma_max when
sigma_max is large against the data. Whatever prior is chosen, the result is the exact
log-density of a normalised model (the prior pushed through the ODE); with exact scores its
mean excess over the truth is KL(p_sigma_max || pi) <= E||x - prior_mean||^2 / (2 sigma_max^2)
(convexity of KL), see :func:`prior_gap_bound`.

The divergence is Hutchinson-Skilling's estimator E_v[v^T J v] (Rademacher or Gaussian v with
E[v v^T] = I), the probes drawn once and held fixed along the trajectory so the ODE stays smooth
for an adaptive solver (this keeps the log-density estimate unbiased), or exact: the probes
sqrt(D) e_i, i = 1..D, whose average v^T J v is the trace (D vector-Jacobian products per
evaluation). Scores must treat batch elements independently.

This module imports scipy (lazily, only for ``solver="rk45"``), the one exception to the core's
torch-only rule: ``scipy.integrate.solve_ivp``'s error-controlled Dormand-Prince RK45 is the
solver score_sde's published likelihoods use, and a re-implementation would be a second,
less-tested copy of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ncsn.core import ScoreFn

Solver = Literal["rk45", "heun"]
ProbeKind = Literal["rademacher", "gaussian", "exact"]
SOLVERS: tuple[str, ...] = ("rk45", "heun")
PROBE_KINDS: tuple[str, ...] = ("rademacher", "gaussian", "exact")


@dataclass(frozen=True)
class ODESettings:
    """How to integrate: ``solver`` rk45 (adaptive, ``rtol``/``atol``) or heun (``steps`` fixed
    steps uniform in ln sigma, 2 evaluations each); divergence by ``probes`` Hutchinson probes of
    ``probe`` kind, or exactly (``probe="exact"``; ``probes`` is then ignored)."""

    solver: Solver = "rk45"
    rtol: float = 1e-5
    atol: float = 1e-5
    steps: int = 100
    probe: ProbeKind = "rademacher"
    probes: int = 1

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.probe not in PROBE_KINDS:
            raise ValueError(f"probe must be one of {', '.join(PROBE_KINDS)}, got {self.probe!r}")
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError(f"rtol and atol must be > 0, got {self.rtol} and {self.atol}")
        if self.steps < 1 or self.probes < 1:
            raise ValueError(f"steps and probes must be >= 1, got {self.steps} and {self.probes}")


@dataclass
class ODELikelihood:
    """Result of :func:`ode_log_likelihood` for a batch of B points.

    ``log_prob`` = ``prior_log_prob`` + ``delta_log_prob``: the model's log p_sigma_min(x);
    ``delta_log_prob`` = log p_sigma_min(x) - log p_sigma_max(x_end) along the ODE;
    ``x_end`` = x(sigma_max); ``evaluations`` = batched score calls (each also costs one
    vector-Jacobian product per probe).
    """

    log_prob: Tensor
    prior_log_prob: Tensor
    delta_log_prob: Tensor
    x_end: Tensor
    evaluations: int


def draw_probes(x: Tensor, kind: ProbeKind, count: int,
                generator: torch.Generator | None = None) -> Tensor:
    """Probe vectors (K, B, ...) with E[v v^T] = I: ``count`` Rademacher or Gaussian draws, or
    for ``"exact"`` the D scaled basis vectors sqrt(D) e_i (their mean v^T J v is tr J)."""
    shape = (count, *x.shape)
    if kind == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
        return bits.to(x.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "exact":
        dims = x[0].numel()
        basis = torch.eye(dims, device=x.device, dtype=x.dtype) * math.sqrt(dims)
        return basis[:, None, :].expand(dims, x.shape[0], dims).reshape(dims, *x.shape)
    raise ValueError(f"probe kind must be one of {', '.join(PROBE_KINDS)}, got {kind!r}")


def probe_quadratic_forms(score: ScoreFn, x: Tensor, sigma: Tensor,
                          probes: Tensor) -> tuple[Tensor, Tensor]:
    """(s(x, sigma), v_k^T J v_k as (K, B)) with J = d s / d x, one vector-Jacobian product per
    probe v_k in ``probes`` (K, B, ...); their mean over k is the divergence estimate."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        out = score(x_in, sigma)
        forms = []
        for k, v in enumerate(probes):
            (vjp,) = torch.autograd.grad(out, x_in, v, retain_graph=k + 1 < len(probes))
            forms.append((vjp * v).flatten(1).sum(1))
    return out.detach(), torch.stack(forms)


def gaussian_log_prob(x: Tensor, mean: float | Tensor, std: float) -> Tensor:
    """log N(x; mean, std^2 I) per batch element (float64)."""
    dims = x[0].numel()
    sq = ((x.double() - torch.as_tensor(mean, dtype=torch.float64, device=x.device)) ** 2)
    return -0.5 * sq.flatten(1).sum(1) / std**2 - 0.5 * dims * math.log(2 * math.pi * std**2)


def prior_gap_bound(x: Tensor, sigma_max: float, prior_mean: float | Tensor = 0.0) -> Tensor:
    """E||x - m||^2 / (2 sigma_max^2) per batch element (nats): with exact scores, the mean over
    data x of this bounds KL(p_sigma_max || N(m, sigma_max^2 I)), the prior's mean cost."""
    diff = x.double() - torch.as_tensor(prior_mean, dtype=torch.float64, device=x.device)
    return (diff**2).flatten(1).sum(1) / (2 * sigma_max**2)


class _Drift:
    """The augmented ODE right-hand side in u = ln sigma: (dx/du, d log p/du), counting calls."""

    def __init__(self, score: ScoreFn, probes: Tensor) -> None:
        self.score, self.probes, self.calls = score, probes, 0

    def __call__(self, u: float, x: Tensor) -> tuple[Tensor, Tensor]:
        sigma = math.exp(u)
        sigma_batch = torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)
        s, forms = probe_quadratic_forms(self.score, x, sigma_batch, self.probes)
        self.calls += 1
        return -sigma**2 * s, sigma**2 * forms.mean(0).double()


def _solve_heun(drift: _Drift, x: Tensor, u0: float, u1: float, steps: int
                ) -> tuple[Tensor, Tensor]:
    """Heun's method (explicit trapezoid), ``steps`` equal steps in u; returns (x_end, int)."""
    h = (u1 - u0) / steps
    integral = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for i in range(steps):
        u = u0 + i * h
        dx0, dl0 = drift(u, x)
        dx1, dl1 = drift(u + h, x + h * dx0)
        x = x + 0.5 * h * (dx0 + dx1)
        integral = integral + 0.5 * h * (dl0 + dl1)
    return x, integral


def _solve_rk45(drift: _Drift, x: Tensor, u0: float, u1: float, rtol: float, atol: float
                ) -> tuple[Tensor, Tensor]:
    """scipy's adaptive RK45 on the flattened state [x, integral] (float64)."""
    import numpy as np
    from scipy.integrate import solve_ivp

    batch, shape = x.shape[0], x.shape

    def rhs(u: float, state: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(state[:-batch]).reshape(shape).to(device=x.device, dtype=x.dtype)
        dx, dl = drift(u, xt)
        return np.concatenate([dx.detach().double().cpu().flatten().numpy(), dl.cpu().numpy()])

    start = np.concatenate([x.detach().double().cpu().flatten().numpy(), np.zeros(batch)])
    solution = solve_ivp(rhs, (u0, u1), start, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"RK45 failed on the probability-flow ODE: {solution.message}")
    end = torch.from_numpy(solution.y[:, -1])
    x_end = end[:-batch].reshape(shape).to(device=x.device, dtype=x.dtype)
    return x_end, end[-batch:].to(x.device)


@torch.no_grad()
def ode_log_likelihood(score: ScoreFn, x: Tensor, sigma_min: float, sigma_max: float,
                       settings: ODESettings | None = None, *, prior_mean: float | Tensor = 0.0,
                       generator: torch.Generator | None = None) -> ODELikelihood:
    """log p_sigma_min(x) of the model defined by ``score``'s probability-flow ODE (Song et al.
    2021, App. D.2) from ``sigma_min`` to ``sigma_max`` and the prior N(prior_mean,
    sigma_max^2 I). ``x`` (B, ...) in the model's data space; every probe draw uses
    ``generator``. The ODE state is kept in x's dtype (float64 x: float64 scores)."""
    settings = settings or ODESettings()
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    probes = draw_probes(x, settings.probe, settings.probes, generator)
    drift = _Drift(score, probes)
    u0, u1 = math.log(sigma_min), math.log(sigma_max)
    if settings.solver == "heun":
        x_end, integral = _solve_heun(drift, x, u0, u1, settings.steps)
    else:
        x_end, integral = _solve_rk45(drift, x, u0, u1, settings.rtol, settings.atol)
    prior = gaussian_log_prob(x_end, prior_mean, sigma_max)
    return ODELikelihood(log_prob=prior - integral, prior_log_prob=prior,
                         delta_log_prob=-integral, x_end=x_end, evaluations=drift.calls)


def logit_log_jacobian(x: Tensor, lam: float = 1e-6) -> Tensor:
    """log|det dy/dx| per batch element for y = logit(lam + (1 - 2 lam) x), elementwise:
    log(1 - 2 lam) - log z - log(1 - z), z = lam + (1 - 2 lam) x. Add it to log p(y) to get
    log p(x) (change of variables)."""
    z = lam + (1.0 - 2.0 * lam) * x.double()
    per_pixel = math.log(1.0 - 2.0 * lam) - torch.log(z) - torch.log1p(-z)
    return per_pixel.flatten(1).sum(1)


def bits_per_dim(log_prob: Tensor, dims: int, *, levels: int = 256,
                 data_width: float = 1.0) -> Tensor:
    """-log p(y) / (D ln 2) + log2(levels / data_width) for dequantised data y.

    ``levels``-level pixels k dequantised to y = (k + u) / levels (data in [0, 1), width 1), or
    rescaled to an interval of width ``data_width`` (score_sde's [-1, 1]: 2). The offset turns
    the density of y into the density over [0, levels)^D of k + u, whose bits/dim bound the
    discrete model's (variational dequantisation); 8 for [0, 1), 7 for [-1, 1).
    """
    return -log_prob.double() / (dims * math.log(2)) + math.log2(levels / data_width)
