"""Building blocks of NCSN++ (Song et al. 2021, "Score-Based Generative Modeling through SDEs",
Appendix H): FIR resampling (a plain-PyTorch upfirdn2d), Gaussian Fourier and sinusoidal noise
embeddings, BigGAN residual blocks, single-head attention and score_sde's initialisation.

Attribute names (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0``, ``Conv2d_0``, ``W``, ...)
are score_sde_pytorch's, so state-dict keys equal its checkpoint keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SQRT2 = math.sqrt(2.0)


def variance_scaling_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """score_sde's ``default_init`` (from DDPM): uniform with variance scale / fan_avg, where
    fan_avg = (fan_in + fan_out) / 2 over axes 0 and 1 times the receptive field; scale 0 means
    1e-10 (layers that start as an almost-zero map)."""
    scale = 1e-10 if scale == 0 else scale
    shape = weight.shape
    receptive = weight.numel() / (shape[0] * shape[1])
    fan_avg = (shape[0] + shape[1]) * receptive / 2
    bound = math.sqrt(3.0 * scale / fan_avg)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def conv2d(c_in: int, c_out: int, kernel: int = 3, init_scale: float = 1.0) -> nn.Conv2d:
    """A 'same'-padded convolution with :func:`variance_scaling_` weights and zero bias."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
    variance_scaling_(conv.weight, init_scale)
    nn.init.zeros_(conv.bias)
    return conv


def dense(d_in: int, d_out: int) -> nn.Linear:
    """A linear layer with :func:`variance_scaling_` weights and zero bias."""
    linear = nn.Linear(d_in, d_out)
    variance_scaling_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def group_norm(channels: int) -> nn.GroupNorm:
    """score_sde's GroupNorm: min(C // 4, 32) groups, eps 1e-6."""
    return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6)


# --- FIR resampling (StyleGAN2's upfirdn2d, written with torch ops) ---------------------------

def fir_kernel_2d(taps: Sequence[float]) -> Tensor:
    """The separable 2-D FIR kernel: outer product of ``taps`` with itself, summing to 1."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion (``up``), pad (before, after) on both axes, convolve each
    channel with ``kernel`` (a true convolution, i.e. the flipped kernel correlated), keep
    every ``down``-th pixel."""
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.flip(0, 1).to(x)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def fir_upsample(x: Tensor, taps: Sequence[float]) -> Tensor:
    """2x FIR upsampling (gain 4 for the zero-inserted pixels; [1, 3, 3, 1]: pad 2 and 1)."""
    p = len(taps) - 2
    return upfirdn2d(x, fir_kernel_2d(taps) * 4, up=2, pad=((p + 1) // 2 + 1, p // 2))


def fir_downsample(x: Tensor, taps: Sequence[float]) -> Tensor:
    """2x FIR downsampling ([1, 3, 3, 1]: pad 1 on each side, stride 2)."""
    p = len(taps) - 2
    return upfirdn2d(x, fir_kernel_2d(taps), down=2, pad=((p + 1) // 2, p // 2))


class FIRDownConv2d(nn.Module):
    """3x3 convolution fused with 2x FIR downsampling (StyleGAN2's ``conv_downsample_2d``):
    the FIR filter with pad 2 on each side (for [1, 3, 3, 1]), a stride-2 convolution, then
    the bias."""

    def __init__(self, c_in: int, c_out: int, taps: Sequence[float]) -> None:
        super().__init__()
        self.weight = nn.Parameter(variance_scaling_(torch.empty(c_out, c_in, 3, 3)))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.taps = tuple(taps)

    def forward(self, x: Tensor) -> Tensor:
        p = len(self.taps) - 2 + 2  # filter taps beyond the factor, plus (conv size - 1)
        x = upfirdn2d(x, fir_kernel_2d(self.taps), pad=((p + 1) // 2, p // 2))
        return F.conv2d(x, self.weight, stride=2) + self.bias.reshape(1, -1, 1, 1)


class PyramidDownsample(nn.Module):
    """The 'residual' input pyramid's resampler (key ``Conv2d_0``)."""

    def __init__(self, c_in: int, c_out: int, taps: Sequence[float]) -> None:
        super().__init__()
        self.Conv2d_0 = FIRDownConv2d(c_in, c_out, taps)

    def forward(self, x: Tensor) -> Tensor:
        return self.Conv2d_0(x)


class Combine(nn.Module):
    """'input_skip' pyramid merge: a 1x1 conv of the pyramid, then summed or concatenated."""

    def __init__(self, c_pyramid: int, c_out: int, method: str) -> None:
        super().__init__()
        self.Conv_0 = conv2d(c_pyramid, c_out, kernel=1)
        self.method = method

    def forward(self, pyramid: Tensor, h: Tensor) -> Tensor:
        p = self.Conv_0(pyramid)
        return torch.cat([p, h], dim=1) if self.method == "cat" else p + h


# --- noise-level embeddings -------------------------------------------------------------------

class GaussianFourierProjection(nn.Module):
    """[sin, cos](2 pi W log sigma) with fixed W ~ N(0, scale^2) (a Parameter that is not
    trained, as in score_sde); the product is formed in score_sde's order (phases reach ~1e3
    rad, so a reordering changes float32 outputs)."""

    def __init__(self, size: int, scale: float) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, log_sigma: Tensor) -> Tensor:
        phase = log_sigma[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([phase.sin(), phase.cos()], dim=-1)


def sinusoidal_embedding(position: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer sinusoids of a (level) index: [sin, cos](t * max_period^(-k / (dim/2 - 1)))
    for k < dim // 2, zero-padded to ``dim``."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=position.device)
                      * -(math.log(max_period) / (half - 1)))
    phase = position.float()[:, None] * freqs[None, :]
    return F.pad(torch.cat([phase.sin(), phase.cos()], dim=1), (0, dim % 2))


# --- residual and attention blocks ------------------------------------------------------------

class NIN(nn.Module):
    """Per-pixel linear map over channels ('network in network'); ``W`` is (in, out)."""

    def __init__(self, c_in: int, c_out: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.W = nn.Parameter(variance_scaling_(torch.empty(c_in, c_out), init_scale))
        self.b = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bchw,co->bohw", x, self.W) + self.b[None, :, None, None]


class AttnBlock(nn.Module):
    """Single-head self-attention over all H W positions, softmax(q^T k / sqrt(C)) v, a NIN
    output projection and a residual sum (divided by sqrt 2 with ``skip_rescale``)."""

    def __init__(self, channels: int, *, skip_rescale: bool, init_scale: float) -> None:
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor) -> Tensor:
        b, c, height, width = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = (nin(h).reshape(b, c, height * width) for nin in (self.NIN_0, self.NIN_1,
                                                                     self.NIN_2))
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c ** -0.5, dim=-1)
        h = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, height, width)
        out = x + self.NIN_3(h)
        return out / SQRT2 if self.skip_rescale else out


class BigGANBlock(nn.Module):
    """BigGAN-style residual block: SiLU(GN(x)) -> optional 2x FIR resampling of both branches
    -> conv -> + Dense(SiLU(temb)) -> SiLU(GN) -> dropout -> conv; a 1x1 shortcut whenever the
    width changes or the block resamples; sum divided by sqrt 2 with ``skip_rescale``."""

    def __init__(self, c_in: int, c_out: int | None = None, *, temb_dim: int, dropout: float,
                 resample: str | None = None, taps: Sequence[float], skip_rescale: bool,
                 init_scale: float) -> None:
        super().__init__()
        c_out = c_out or c_in
        self.GroupNorm_0 = group_norm(c_in)
        self.Conv_0 = conv2d(c_in, c_out)
        self.Dense_0 = dense(temb_dim, c_out)
        self.GroupNorm_1 = group_norm(c_out)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv2d(c_out, c_out, init_scale=init_scale)
        self.Conv_2 = conv2d(c_in, c_out, kernel=1) if c_in != c_out or resample else None
        self.resample, self.taps, self.skip_rescale = resample, tuple(taps), skip_rescale

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = F.silu(self.GroupNorm_0(x))
        if self.resample is not None:
            resample = fir_upsample if self.resample == "up" else fir_downsample
            h, x = resample(h, self.taps), resample(x, self.taps)
        h = self.Conv_0(h) + self.Dense_0(F.silu(temb))[:, :, None, None]
        h = self.Conv_1(self.Dropout_0(F.silu(self.GroupNorm_1(h))))
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return (x + h) / SQRT2 if self.skip_rescale else x + h
