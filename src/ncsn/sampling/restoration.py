"""Restoration inputs, shared by ``ncsn restore`` and :meth:`ncsn.ScoreModel.restore`: the named
tasks as linear observations (:mod:`ncsn.core.inverse`) and the checks that an observation fits
a model and a sampling plan, each failure one line (:class:`~ncsn.errors.UserError`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ncsn.core import inverse
from ncsn.errors import UserError
from ncsn.sampling.inpainting import check_masks, make_masks
from ncsn.sampling.pipeline import SamplingPlan

TASKS = ("inpaint", "colorize", "superres", "denoise", "frequencies")


def make_operator(task: str, n: int, shape: tuple[int, int, int], *, noise_std: float = 0.0,
                  factor: int = 2, keep_fraction: float = 0.25, mask: Tensor | str = "right",
                  fraction: float = 0.5, box: int | None = None,
                  seed: int = 0) -> inverse.LinearObservation:
    """The observation of ``task`` for ``n`` images of ``shape`` (C, H, W): ``inpaint`` (pixels
    of ``mask``, see :func:`~ncsn.sampling.inpainting.make_masks`), ``colorize`` (the grey of RGB
    images), ``superres`` (the means of ``factor`` x ``factor`` blocks), ``denoise`` (every
    pixel) or ``frequencies`` (the ``keep_fraction`` lowest 2-D DCT frequencies), each with
    observation noise of std ``noise_std`` (``denoise`` needs one > 0)."""
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if noise_std < 0:
        raise UserError(f"the noise std (--noise-std) must be >= 0, got {noise_std}")
    channels, size, _ = shape
    try:
        if task == "inpaint":
            masks = make_masks(mask, n, size, fraction=fraction, box=box,
                               generator=torch.Generator().manual_seed(seed)) \
                if isinstance(mask, str) else check_masks(mask, n, channels, size)
            return inverse.pixel_observation(masks, noise_std)
        if task == "colorize":
            return inverse.colorization(shape, noise_std)
        if task == "superres":
            return inverse.super_resolution(shape, factor, noise_std)
        if task == "denoise":
            return inverse.denoising(shape, noise_std)
        return inverse.low_frequencies(shape, keep_fraction, noise_std)
    except ValueError as err:
        raise UserError(f"task {task}: {err}") from None


def check_observation(y: Tensor, operator: inverse.LinearObservation, plan: SamplingPlan,
                      shape: tuple[int, int, int]) -> Tensor:
    """``y`` as float32 (N, C, H, W) on the CPU after checking that it, ``operator`` and
    ``plan`` fit a model of image ``shape``: the observation's shape, the operator's mask, a
    pixel-space model for other bases than pixels, a noise std below the largest noise level and
    a sampler that can complete a noisy observation (:mod:`ncsn.core.inverse`)."""
    expected = f"(N, {', '.join(map(str, shape))})"
    if not isinstance(y, Tensor) or y.dim() != 4 or y.shape[0] < 1 \
            or tuple(y.shape[1:]) != shape:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise UserError(f"the observation has shape {got}; the model takes {expected}")
    if not y.is_floating_point() or not bool(torch.isfinite(y).all()):
        raise UserError("the observation must hold finite floats (pixels in [0, 1] plus any "
                        "noise)")
    if not isinstance(operator, inverse.LinearObservation):
        raise UserError(f"operator must be a LinearObservation (ncsn.core.inverse; "
                        f"ScoreModel.operator builds the named tasks), got "
                        f"{type(operator).__name__}")
    mask = operator.mask
    if mask.dim() != 4 or mask.shape[0] not in (1, y.shape[0]) or any(
            m not in (1, s) for m, s in zip(mask.shape[1:], shape, strict=True)):
        raise UserError(f"the operator's mask has shape {tuple(mask.shape)}; expected (N or 1, "
                        f"1 or {shape[0]}, 1 or {shape[1]}, 1 or {shape[2]}) with N = "
                        f"{y.shape[0]}")
    pixels = isinstance(operator.basis, inverse.PixelBasis)
    if plan.logit and not (pixels and operator.noise_std == 0):
        raise UserError("this model works on logits of pixels, where only noiseless pixel "
                        "observations (inpainting) stay linear; use a model trained on pixels")
    if plan.logit and not bool(((y >= 0) & (y <= 1)).all()):
        raise UserError("observation values must lie in [0, 1]")
    s = operator.noise_std
    if s >= float(plan.sigmas[0]):
        raise UserError(f"the observation's noise std {s:g} is not below the largest noise "
                        f"level {float(plan.sigmas[0]):.4g}, so it would never be imposed")
    if s > 0 and not plan.entry.reverse_process(plan.settings):
        raise UserError(f"sampler {plan.sampler} with these settings cannot complete a noisy "
                        "observation (below the noise std its Langevin steps target the "
                        "unconditional distribution); use consistent_annealed, "
                        "predictor_corrector with n_corrector 0 or an ODE sampler (--sampler)")
    return y.detach().float().cpu()
