"""Training-time image transforms (pure functions; every random draw takes a ``torch.Generator``).

Song & Ermon (2019), Section 5 / Appendix B.1: pixels in [0, 1], uniform dequantization
``x * 255/256 + U/256`` and, for CIFAR-10 and CelebA, random horizontal flips. The optional
logit transform is the one of the official code: ``y = logit(lam + (1 - 2 lam) x)``.
"""

from __future__ import annotations

import torch


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (values 0..255) -> float32 in [0, 1] (``x / 255``)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {x.dtype}")
    return x.to(torch.float32) / 255.0


def uniform_dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization ``x * 255/256 + U/256``, U ~ U[0, 1) per pixel (paper, App. B.1).

    ``x`` holds floats ``k/255``; the result lies in [k/256, (k+1)/256), i.e. in [0, 1).
    """
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x * (255.0 / 256.0) + noise / 256.0


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image of the batch (N, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def random_shift(x: torch.Tensor, max_shift: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of the batch (N, C, H, W) by its own (dy, dx), each uniform in
    [-max_shift, max_shift], filling the vacated border with the nearest edge pixel."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator, device=x.device)
    rows = torch.arange(h, device=x.device) + offsets[:, :1]  # (N, H)
    cols = torch.arange(w, device=x.device) + offsets[:, 1:]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def logit_transform(x: torch.Tensor, lam: float = 1e-6) -> torch.Tensor:
    """``logit(lam + (1 - 2 lam) x)``: maps [0, 1] to the real line (finite at 0 and 1)."""
    y = lam + (1.0 - 2.0 * lam) * x
    return torch.log(y) - torch.log1p(-y)


def inverse_logit_transform(y: torch.Tensor, lam: float = 1e-6) -> torch.Tensor:
    """Inverse of :func:`logit_transform`: ``(sigmoid(y) - lam) / (1 - 2 lam)``."""
    return (torch.sigmoid(y) - lam) / (1.0 - 2.0 * lam)


def to_model_space(pixels: torch.Tensor, logit: bool) -> torch.Tensor:
    """Images in [0, 1] -> the space the network models (their logits under ``logit``)."""
    return logit_transform(pixels) if logit else pixels


def to_pixels(x: torch.Tensor, logit: bool) -> torch.Tensor:
    """Model space -> images in [0, 1] (inverse logit under ``logit``, then clamped)."""
    return (inverse_logit_transform(x) if logit else x).clamp(0.0, 1.0)


def apply_train_transforms(x: torch.Tensor, *, dequantize: bool, hflip: bool, logit: bool,
                           max_shift: int = 0,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Training transforms on float images in [0, 1], in order: flip, shift, dequantize,
    logit."""
    if hflip:
        x = random_hflip(x, generator)
    x = random_shift(x, max_shift, generator)
    if dequantize:
        x = uniform_dequantize(x, generator)
    return to_model_space(x, logit)
