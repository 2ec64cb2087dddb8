"""Inpainting inputs and batches, shared by ``ncsn inpaint`` and :meth:`ncsn.ScoreModel.inpaint`:
named masks, checks on user masks, and k completions per image in bounded batches through
:func:`ncsn.sampling.pipeline.restore_batches` with a pixel observation (paper Algorithm 2 for
annealed Langevin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from ncsn.core.inverse import pixel_observation
from ncsn.errors import UserError
from ncsn.imageio import load_image
from ncsn.sampling.pipeline import BatchScores, SamplingPlan, restore_batches

MASKS = ("right", "lower", "center", "random")


def make_masks(kind: str, n: int, size: int, *, fraction: float = 0.5, box: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """Masks (n, 1, S, S), 1 = observed pixel: ``right``/``lower`` hide that half, ``center``
    hides a centred ``box`` x ``box`` square, ``random`` hides each pixel with prob ``fraction``;
    any other ``kind`` is a mask image file (white = observed)."""
    mask = torch.ones(n, 1, size, size)
    if kind == "right":
        mask[..., size // 2:] = 0
    elif kind == "lower":
        mask[..., size // 2:, :] = 0
    elif kind == "center":
        side = size // 2 if box is None else box
        if not 1 <= side <= size:
            raise UserError(f"mask box (--box) must lie in 1..{size}, got {side}")
        lo = (size - side) // 2
        mask[..., lo: lo + side, lo: lo + side] = 0
    elif kind == "random":
        if not 0.0 <= fraction <= 1.0:
            raise UserError(f"mask fraction (--fraction) must lie in [0, 1], got {fraction}")
        mask = (torch.rand(n, 1, size, size, generator=generator) >= fraction).float()
    else:
        path = Path(kind)
        if not path.is_file():
            raise UserError(f"mask {kind!r} is not one of {', '.join(MASKS)} nor an image file")
        image = torch.from_numpy(load_image(path, channels=1))
        if image.shape[-2:] != (size, size):
            raise UserError(f"mask image {path} is {image.shape[-1]}x{image.shape[-2]}, "
                            f"the model's images {size}x{size}")
        mask = (image > 0.5).float().expand(n, 1, size, size).clone()
    return mask


def check_masks(masks: Tensor, n: int, channels: int, size: int) -> Tensor:
    """A user's masks as floats (n, 1 or C, S, S) of 0 and 1 (1 = observed); one mask
    (first dimension 1) is used for all ``n`` images. UserError for other shapes or values."""
    if not isinstance(masks, Tensor):
        raise UserError(f"mask must be a tensor or one of {', '.join(MASKS)} or an image file, "
                        f"got {type(masks).__name__}")
    shapes = f"(N or 1, 1 or {channels}, {size}, {size})"
    if masks.dim() != 4 or masks.shape[0] not in (1, n) or masks.shape[1] not in (1, channels) \
            or tuple(masks.shape[2:]) != (size, size):
        raise UserError(f"mask has shape {tuple(masks.shape)}; expected {shapes} with N = {n}")
    masks = masks.detach().float().cpu()
    if not bool(((masks == 0) | (masks == 1)).all()):
        raise UserError("mask values must be 0 (hidden) or 1 (observed)")
    return masks.expand(n, *masks.shape[1:])


def inpaint_batches(scores: BatchScores, plan: SamplingPlan, images: Tensor, masks: Tensor,
                    k: int, *, generator: torch.Generator, device: torch.device | str = "cpu",
                    batch_size: int = 64) -> Iterator[tuple[int, Tensor]]:
    """``k`` completions of each of ``images`` (N, C, H, W in [0, 1]) where ``masks`` (N, 1 or C,
    H, W) is 0, in batches of at most ``batch_size``: yields (start, completions); completion j
    of image i is number i k + j, completions start..stop drawn with the score function
    ``scores(start, stop)``. All random draws come from ``generator``, in order."""
    yield from restore_batches(scores, plan, images, pixel_observation(masks), k,
                               generator=generator, device=device, batch_size=batch_size)
