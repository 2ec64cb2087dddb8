"""Linear inverse problems with any sampler: paper Algorithm 2 (inpainting) generalised.

An observation is y = M ⊙ (U x) + s ε (ε ~ N(0, I) on the observed components): ``U`` an
orthonormal change of basis (:class:`PixelBasis`, :class:`BlockDCT`, :class:`ColourDecoupling`),
``M`` a mask of observed coefficients and ``s`` the known noise std (:class:`LinearObservation`).
The tasks are instances (:func:`pixel_observation` ... :func:`denoising`): inpainting (pixels),
missing frequencies (the 2-D DCT), colorization (score_sde's colour decoupling, grey observed),
super-resolution (the mean of each f x f block: the first coefficient of the block's DCT) and
denoising (every pixel, s > 0).

:func:`observation_constraint` is the samplers' ``constrain(x, sigma)`` hook: after each update
at noise level sigma >= s the observed coefficients of U x become U y + sqrt(sigma^2 - s^2) z
(one z per level); below s, x is left to the sampler. Where that is exact, and where an
approximation:

- Noiseless (s = 0), U orthonormal: data perturbed by sigma z has observed coefficients
  U y + sigma (U z)_obs with U z ~ N(0, I), so the replacement draws them from their true law, and
  with them fixed the model's score restricted to the unobserved coefficients is the score of
  p_sigma(x_unobs | x_obs). Annealed Langevin (MCMC at each level) therefore targets
  p_sigma_L(x_unobs | x_obs = U y + sigma_L z), which tends to the posterior p(x | M U x = y) as
  sigma_L -> 0, exactly in the limit of small steps and many of them (tests/test_inverse.py).
  For the single-pass samplers (consistent annealing, predictor-corrector, the ODE samplers,
  DPM-Solver) it is the "replacement" method of Song et al. (2021): the unobserved coefficients
  follow the reverse process driven by re-drawn observed values, not the reverse process
  conditioned on y; an approximation whose error does not vanish with more steps.
- Noisy (s > 0): the observed coefficients of x + sigma z can be written y + sqrt(sigma^2 - s^2)
  z' (the observation noise is part of the perturbation), so above s the same replacement applies
  (an exact coupling). Since y is distributed as the observed part of data perturbed at s,
  p(x | y) is p(x | x_s) averaged over p_s(x_s | (U x_s)_obs = y): below s, a sampler whose
  updates follow the reverse process from the current state (ancestral / reverse-diffusion steps)
  completes the posterior (exact for denoising, where nothing is left to the replacement above
  s); a deterministic ODE sampler returns the flow of the level-s conditional (an
  approximation), and annealed Langevin or corrector steps, MCMC on the unconditional p_sigma at
  each level, forget y (refused in :mod:`ncsn.sampling`).

Measured on a Gaussian with exact scores for every sampler: ``benchmarks/restore.py``,
docs/controllable.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from torch import Tensor

from ncsn.core import ScoreFn
from ncsn.core.samplers import Callback, Constraint, annealed_langevin


class Basis(Protocol):
    """An orthonormal change of basis U of images (N, C, H, W): ``forward`` c = U x and
    ``inverse`` x = U^T c (= U^-1 c), both shape-preserving."""

    def forward(self, x: Tensor) -> Tensor: ...

    def inverse(self, c: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class PixelBasis:
    """U = I: the pixels themselves (inpainting, denoising); returns its input unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def inverse(self, c: Tensor) -> Tensor:
        return c


@functools.lru_cache(maxsize=16)
def _dct_matrix64(n: int) -> Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    scale = torch.full((n, 1), math.sqrt(2.0 / n), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / n)
    return scale * torch.cos(math.pi * (2.0 * i + 1.0) * k / (2.0 * n))


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> Tensor:
    """The orthonormal DCT-II matrix D (n, n): D[k, i] = a_k cos(pi (2 i + 1) k / (2 n)),
    a_0 = sqrt(1 / n), a_k = sqrt(2 / n); D D^T = I, row 0 is constant (the mean times
    sqrt(n))."""
    if n < 1:
        raise ValueError(f"the DCT needs n >= 1, got {n}")
    return _dct_matrix64(n).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class BlockDCT:
    """The orthonormal 2-D DCT-II of each ``block`` x ``block`` tile, in place: for a tile T,
    C = D T D^T (D of :func:`dct_matrix`). ``block`` = the image side is the DCT of the whole
    image; coefficient (0, 0) of a tile is ``block`` times its mean (average pooling)."""

    block: int

    def _apply(self, x: Tensor, transpose: bool) -> Tensor:
        *lead, h, w = x.shape
        b = self.block
        if h % b or w % b:
            raise ValueError(f"images {h}x{w} do not split into {b}x{b} blocks")
        d = dct_matrix(b, dtype=x.dtype, device=x.device)
        d = d.T if transpose else d
        tiles = x.reshape(*lead, h // b, b, w // b, b)
        return torch.einsum("ki,...aibj,lj->...akbl", d, tiles, d).reshape(x.shape)

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(x, transpose=False)

    def inverse(self, c: Tensor) -> Tensor:
        return self._apply(c, transpose=True)


def colour_decoupling_matrix(*, dtype: torch.dtype = torch.float32,
                             device: torch.device | str = "cpu") -> Tensor:
    """score_sde's orthonormal colour-decoupling matrix M (3, 3) (``controllable_generation``,
    colorization), columns (1, 1, 1) / sqrt 3, (-2, 1, 1) / sqrt 6, (0, 1, -1) / sqrt 2; the
    decoupled channels are c_j = sum_i x_i M_ij, so c_0 = sqrt 3 x the grey (channel mean)."""
    columns = torch.tensor([[1.0, -2.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, -1.0]],
                           dtype=torch.float64)
    return (columns / columns.norm(dim=0)).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class ColourDecoupling:
    """U of colorization: RGB images (N, 3, H, W) -> decoupled channels c_j = sum_i x_i M_ij
    (:func:`colour_decoupling_matrix`); the inverse is x_i = sum_j c_j M_ij (M^-1 = M^T)."""

    def forward(self, x: Tensor) -> Tensor:
        m = colour_decoupling_matrix(dtype=x.dtype, device=x.device)
        return torch.einsum("bihw,ij->bjhw", x, m)

    def inverse(self, c: Tensor) -> Tensor:
        m = colour_decoupling_matrix(dtype=c.dtype, device=c.device)
        return torch.einsum("bjhw,ij->bihw", c, m)


@dataclass(frozen=True)
class LinearObservation:
    """y = M ⊙ (U x) + s ε: ``basis`` U, ``mask`` M (bool, broadcastable to U x, first dimension
    1 or one row per image; True = observed coefficient) and ``noise_std`` s >= 0 (ε ~ N(0, I)
    on the observed coefficients). An observation is passed around as an image whose observed
    coefficients are y (:meth:`observe`); its other coefficients are ignored."""

    basis: Basis
    mask: Tensor
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    def observed(self, coefficients: Tensor) -> Tensor:
        """M as a bool tensor shaped and placed like ``coefficients``."""
        return self.mask.to(coefficients.device).bool().expand_as(coefficients)

    def impose(self, x: Tensor, target: Tensor) -> Tensor:
        """U^T (M ⊙ target + (1 - M) ⊙ U x): ``x`` with its observed coefficients set to those
        of ``target`` (coefficients, not an image) -- Algorithm 2's overwrite, in the basis U."""
        c = self.basis.forward(x)
        return self.basis.inverse(torch.where(self.observed(c), target, c))

    def observe(self, x: Tensor, *, fill: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
        """The observation of images ``x`` as an image: U^T (M ⊙ (U x + s ε) + (1 - M) ⊙ U f)
        with f the constant image ``fill`` (0: the least-norm image; 0.5 shows hidden pixels grey,
        a super-resolution input as its block means, a colorization input as its grey)."""
        c = self.basis.forward(x)
        if self.noise_std > 0:
            c = c + self.noise_std * torch.randn(c.shape, generator=generator, device=c.device,
                                                 dtype=c.dtype)
        return self.impose(torch.full_like(x, fill), c)

    def to(self, device: torch.device | str) -> LinearObservation:
        """This observation with its mask on ``device``."""
        return replace(self, mask=self.mask.to(device))

    def rows(self, index: Tensor) -> LinearObservation:
        """This observation for the images ``index`` (selects per-image mask rows)."""
        if self.mask.shape[0] == 1:
            return self
        return replace(self, mask=self.mask[index.to(self.mask.device)])


def pixel_observation(mask: Tensor, noise_std: float = 0.0) -> LinearObservation:
    """Inpainting: the pixels where ``mask`` (broadcastable to the images) is nonzero."""
    return LinearObservation(PixelBasis(), mask > 0, noise_std)


def denoising(shape: tuple[int, int, int], noise_std: float) -> LinearObservation:
    """Denoising: every pixel of (C, H, W) images, with noise std ``noise_std`` > 0."""
    if noise_std <= 0:
        raise ValueError(f"denoising needs a noise std > 0, got {noise_std}")
    return LinearObservation(PixelBasis(), torch.ones(1, *shape, dtype=torch.bool), noise_std)


def super_resolution(shape: tuple[int, int, int], factor: int,
                     noise_std: float = 0.0) -> LinearObservation:
    """Super-resolution by ``factor``: the mean of every factor x factor block (average-pool
    downsampling), as coefficient (0, 0) of the block's DCT (:class:`BlockDCT`)."""
    _, h, w = shape
    if factor < 2 or h % factor or w % factor:
        raise ValueError(f"the factor must be >= 2 and divide the image size {h}x{w}, "
                         f"got {factor}")
    mask = torch.zeros(1, 1, h, w, dtype=torch.bool)
    mask[..., ::factor, ::factor] = True
    return LinearObservation(BlockDCT(factor), mask, noise_std)


def low_frequencies(shape: tuple[int, int, int], keep_fraction: float,
                    noise_std: float = 0.0) -> LinearObservation:
    """Missing frequencies: the ``keep_fraction`` of the 2-D DCT coefficients of lowest
    frequency (ordered by k + l, then k) observed, the rest missing."""
    _, h, w = shape
    if h != w:
        raise ValueError(f"the frequency task needs square images, got {h}x{w}")
    if not 0.0 < keep_fraction < 1.0:
        raise ValueError(f"the kept fraction must lie in (0, 1), got {keep_fraction}")
    k, l_ = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    order = torch.argsort(((k + l_) * h + k).flatten())
    mask = torch.zeros(h * w, dtype=torch.bool)
    mask[order[: max(1, round(keep_fraction * h * w))]] = True
    return LinearObservation(BlockDCT(h), mask.reshape(1, 1, h, w), noise_std)


def colorization(shape: tuple[int, int, int], noise_std: float = 0.0) -> LinearObservation:
    """Colorization: the grey channel (c_0 of :class:`ColourDecoupling`) of RGB images."""
    if shape[0] != 3:
        raise ValueError(f"colorization needs RGB images (3 channels), got {shape[0]}")
    mask = torch.zeros(1, 3, 1, 1, dtype=torch.bool)
    mask[:, 0] = True
    return LinearObservation(ColourDecoupling(), mask, noise_std)


def observation_constraint(operator: LinearObservation, y: Tensor,
                           generator: torch.Generator | None = None) -> Constraint:
    """``constrain(x, sigma)`` of Algorithm 2 generalised (module docstring): at sigma >= s the
    observed coefficients of U x become U y + sqrt(sigma^2 - s^2) z, with one z drawn per level
    (kept while sigma stays the same; U y exactly at sigma = s, e.g. sigma = 0 without noise);
    below s, x is returned unchanged."""
    target = operator.basis.forward(y)
    s = operator.noise_std
    noisy: dict[float, Tensor] = {}

    def constrain(x: Tensor, sigma: float) -> Tensor:
        if sigma < s:
            return x
        if sigma not in noisy:
            noisy.clear()
            spread = math.sqrt(sigma**2 - s**2)
            noisy[sigma] = target + spread * torch.randn(
                target.shape, generator=generator, device=target.device, dtype=target.dtype
            ) if spread > 0 else target
        return operator.impose(x, noisy[sigma])

    return constrain


@torch.no_grad()
def restore(score: ScoreFn, y: Tensor, operator: LinearObservation, sigmas: Tensor | list[float],
            *, sampler: Callable[..., Tensor] = annealed_langevin, x_init: Tensor | None = None,
            generator: torch.Generator | None = None, callback: Callback | None = None,
            **settings: Any) -> Tensor:
    """Sample x given the observation ``y`` (an image whose observed coefficients are the
    observation, see :meth:`LinearObservation.observe`) with any sampler of
    :mod:`ncsn.core.samplers`, run with :func:`observation_constraint` as its constraint.
    Without noise the result holds exactly U y's observed coefficients. ``x_init`` defaults to
    U[0, 1) (the paper's start)."""
    if x_init is None:
        x_init = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    x = sampler(score, x_init, sigmas, generator=generator, callback=callback,
                constrain=observation_constraint(operator, y, generator), **settings)
    return operator.impose(x, operator.basis.forward(y)) if operator.noise_std == 0 else x


def inpaint(score: ScoreFn, observed: Tensor, mask: Tensor, sigmas: Tensor | list[float],
            **kwargs: Any) -> Tensor:
    """Fill the pixels where ``mask`` is 0 (paper Algorithm 2 with the default
    ``annealed_langevin``): :func:`restore` with :func:`pixel_observation`; ``mask`` is 1 on
    observed pixels (broadcastable to ``observed``), the result holds ``observed`` there."""
    return restore(score, observed, pixel_observation(mask), sigmas, **kwargs)
