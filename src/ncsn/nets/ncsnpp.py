"""NCSN++ (Song et al. 2021, "Score-Based Generative Modeling through SDEs", Sec. 4 and
Appendix H), the variance-exploding network of score_sde (model name ``ncsnpp``).

A U-Net of BigGAN residual blocks with 2x FIR resampling, attention at ``attn_resolutions``,
skip rescaling by 1/sqrt 2, an image pyramid into the down path (``progressive_input``) and out
of the up path (``progressive``), conditioned on the noise level through a Gaussian Fourier
embedding of log sigma (continuous) or sinusoids of the level index (``positional``, the
discrete SMLD configs); the output is divided by sigma. Defaults are score_sde's
``ve/cifar10_ncsnpp_continuous`` (62,758,915 parameters). All layers live in one ``all_modules``
list in score_sde's order, so state-dict keys are score_sde's checkpoint keys without the
``module.`` prefix (SPEC section 5; tests/test_ncsnpp.py checks outputs against recorded ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ncsn.nets.layers import sigma_to_level
from ncsn.nets.ncsnpp_layers import (
    SQRT2,
    AttnBlock,
    BigGANBlock,
    Combine,
    GaussianFourierProjection,
    PyramidDownsample,
    conv2d,
    dense,
    fir_downsample,
    fir_upsample,
    group_norm,
    sinusoidal_embedding,
)

PROGRESSIVE = ("none", "output_skip")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
COMBINE = ("sum", "cat")
EMBEDDINGS = ("fourier", "positional")


@dataclass(frozen=True)
class Down:
    """Indices into ``all_modules`` of one down-path resolution."""

    blocks: tuple[int, ...]
    attns: tuple[int, ...]
    down: int | None
    pyramid: int | None


@dataclass(frozen=True)
class Up:
    """Indices into ``all_modules`` of one up-path resolution."""

    blocks: tuple[int, ...]
    attn: int | None
    pyramid: tuple[int, int] | None
    up: int | None


@dataclass(frozen=True)
class Layout:
    """Where each part of NCSN++ sits in ``all_modules`` (key mappings walk this)."""

    fourier: int | None
    temb: tuple[int, int]
    conv_in: int
    down: tuple[Down, ...]
    mid: tuple[int, int, int]
    up: tuple[Up, ...]
    head: tuple[int, int] | None


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


class NCSNpp(nn.Module):
    """NCSN++ score network s(x, sigma) for pixels x in [0, 1] (rescaled to 2x - 1 unless
    ``centered``) and noise scales sigma (B,)."""

    continuous_sigma = True

    def __init__(self, *, channels: int, image_size: int, sigmas: Tensor | None = None,
                 nf: int = 128, ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions: Sequence[int] = (16,), dropout: float = 0.1,
                 progressive: str = "none", progressive_input: str = "residual",
                 progressive_combine: str = "sum", embedding_type: str = "fourier",
                 fourier_scale: float = 16.0, init_scale: float = 0.0, skip_rescale: bool = True,
                 fir_kernel: Sequence[int] = (1, 3, 3, 1), centered: bool = False) -> None:
        super().__init__()
        self.progressive = _choice("progressive", progressive, PROGRESSIVE)
        self.progressive_input = _choice("progressive_input", progressive_input,
                                         PROGRESSIVE_INPUT)
        self.embedding_type = _choice("embedding_type", embedding_type, EMBEDDINGS)
        self.progressive_combine = _choice("progressive_combine", progressive_combine, COMBINE)
        if nf < 4 or num_res_blocks < 1 or not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"need nf >= 4, num_res_blocks >= 1 and positive ch_mult, got {nf}, "
                             f"{num_res_blocks}, {list(ch_mult)}")
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"image_size {image_size} must be divisible by 2^(len(ch_mult) - 1)"
                             f" = {2 ** (len(ch_mult) - 1)}")
        if embedding_type == "positional":
            if sigmas is None:
                raise ValueError("a positional embedding needs the network's noise levels")
            self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32),
                                 persistent=False)
            self.continuous_sigma = False
        self.nf, self.ch_mult, self.num_res_blocks = nf, tuple(ch_mult), num_res_blocks
        self.attn_resolutions, self.dropout = tuple(attn_resolutions), dropout
        self.skip_rescale, self.centered = skip_rescale, centered
        self.fir_kernel = tuple(fir_kernel)
        self.all_modules = nn.ModuleList()
        self.layout = self._build(channels, image_size, fourier_scale, init_scale)

    def _add(self, module: nn.Module) -> int:
        self.all_modules.append(module)
        return len(self.all_modules) - 1

    def _build(self, channels: int, image_size: int, fourier_scale: float,
               init_scale: float) -> Layout:
        """Create the layers in score_sde's order and record where each one is used."""
        add, nf, taps, dropout = self._add, self.nf, self.fir_kernel, self.dropout
        ch_mult, num_res_blocks, attn_res = self.ch_mult, self.num_res_blocks, set(
            self.attn_resolutions)
        fourier = (add(GaussianFourierProjection(nf, fourier_scale))
                   if self.embedding_type == "fourier" else None)
        temb = (add(dense(2 * nf if fourier is not None else nf, 4 * nf)),
                add(dense(4 * nf, 4 * nf)))

        def block(c_in: int, c_out: int | None = None, resample: str | None = None) -> int:
            return add(BigGANBlock(c_in, c_out, temb_dim=4 * nf, dropout=dropout,
                                   resample=resample, taps=taps, skip_rescale=self.skip_rescale,
                                   init_scale=init_scale))

        def attn(c: int) -> int:
            return add(AttnBlock(c, skip_rescale=self.skip_rescale, init_scale=init_scale))

        conv_in = add(conv2d(channels, nf))
        skips, c, pyramid_c = [nf], nf, channels
        downs: list[Down] = []
        for level, mult in enumerate(ch_mult):
            resolution, blocks, attns = image_size >> level, [], []
            for _ in range(num_res_blocks):
                blocks.append(block(c, nf * mult))
                c = nf * mult
                if resolution in attn_res:
                    attns.append(attn(c))
                skips.append(c)
            down = pyramid = None
            if level < len(ch_mult) - 1:
                down = block(c, resample="down")
                if self.progressive_input == "input_skip":
                    pyramid = add(Combine(pyramid_c, c, self.progressive_combine))
                    c = 2 * c if self.progressive_combine == "cat" else c
                elif self.progressive_input == "residual":
                    pyramid = add(PyramidDownsample(pyramid_c, c, taps))
                    pyramid_c = c
                skips.append(c)
            downs.append(Down(tuple(blocks), tuple(attns), down, pyramid))
        mid = (block(c), attn(c), block(c))
        ups: list[Up] = []
        for level in reversed(range(len(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(block(c + skips.pop(), nf * ch_mult[level]))
                c = nf * ch_mult[level]
            up_attn = attn(c) if image_size >> level in attn_res else None
            pyramid = None
            if self.progressive == "output_skip":
                pyramid = (add(group_norm(c)), add(conv2d(c, channels, init_scale=init_scale)))
            up = block(c, resample="up") if level > 0 else None
            ups.append(Up(tuple(blocks), up_attn, pyramid, up))
        head = (None if self.progressive == "output_skip" else
                (add(group_norm(c)), add(conv2d(c, channels, init_scale=init_scale))))
        return Layout(fourier, temb, conv_in, tuple(downs), mid, tuple(ups), head)

    def _embed(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(noise embedding after the two dense layers, the sigma that divides the output)."""
        m, layout = self.all_modules, self.layout
        if layout.fourier is not None:
            temb, used = m[layout.fourier](torch.log(sigma)), sigma
        else:
            level = sigma_to_level(sigma, self.sigmas)
            temb, used = sinusoidal_embedding(level, self.nf), self.sigmas[level].to(sigma)
        return m[layout.temb[1]](F.silu(m[layout.temb[0]](temb))), used

    def _rescaled(self, total: Tensor) -> Tensor:
        return total / SQRT2 if self.skip_rescale else total

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Score estimate for images ``x`` (B, C, H, W) at noise scales ``sigma`` (B,)."""
        m, layout = self.all_modules, self.layout
        temb, used_sigma = self._embed(sigma.to(x.dtype).reshape(-1))
        if not self.centered:
            x = 2 * x - 1
        image_pyramid = x
        h = m[layout.conv_in](x)
        skips = [h]
        for level in layout.down:
            for i, index in enumerate(level.blocks):
                h = m[index](h, temb)
                if level.attns:
                    h = m[level.attns[i]](h)
                skips.append(h)
            if level.down is None:
                continue
            h = m[level.down](h, temb)
            if self.progressive_input == "input_skip":
                image_pyramid = fir_downsample(image_pyramid, self.fir_kernel)
                h = m[level.pyramid](image_pyramid, h)
            elif self.progressive_input == "residual":
                image_pyramid = h = self._rescaled(m[level.pyramid](image_pyramid) + h)
            skips.append(h)
        h = m[layout.mid[0]](h, temb)
        h = m[layout.mid[2]](m[layout.mid[1]](h), temb)
        out_pyramid: Tensor | None = None
        for level in layout.up:
            for index in level.blocks:
                h = m[index](torch.cat([h, skips.pop()], dim=1), temb)
            if level.attn is not None:
                h = m[level.attn](h)
            if level.pyramid is not None:  # 'output_skip': upsampled pyramid + conv of h
                from_h = m[level.pyramid[1]](F.silu(m[level.pyramid[0]](h)))
                out_pyramid = from_h if out_pyramid is None else (
                    fir_upsample(out_pyramid, self.fir_kernel) + from_h)
            if level.up is not None:
                h = m[level.up](h, temb)
        if layout.head is not None:
            h = m[layout.head[1]](F.silu(m[layout.head[0]](h)))
        else:
            h = out_pyramid
        return h / used_sigma.reshape(-1, *([1] * (h.dim() - 1)))
