"""UNetSmall: a CPU-sized noise-conditional score network (U-Net with aggressive downsampling).

The paper's CondRefineNetDilated costs 3.79 GFLOP per 28x28 forward pass; this net keeps full
resolution for one residual block only and does most work at 14x14 and 7x7, so the default
(``ngf=16``, ``ch_mult=(1, 2, 4)``) costs about 0.07 GFLOP per 28x28 sample.

A learned embedding of log(sigma) is added inside every residual block, so any positive sigma
is accepted. The U-Net is a backbone F(h, sigma): the network registry wraps it in
:class:`ncsn.nets.precond.Preconditioned`, which turns F into a score (the model section's
``precond``, ``sigma_data`` and ``data_mean``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _groups(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is at most ``groups`` (GroupNorm needs one)."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class SigmaEmbedding(nn.Module):
    """log(sigma) -> sinusoidal features -> 2-layer MLP (SiLU)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(100.0), half)),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: Tensor) -> Tensor:
        phase = torch.log(sigma).unsqueeze(1) * self.freqs.unsqueeze(0)
        return self.mlp(torch.cat([phase.sin(), phase.cos()], dim=1))


class ResBlock(nn.Module):
    """Pre-activation residual block: GN -> SiLU -> conv -> (+ sigma embedding) -> GN -> SiLU
    -> conv, with a 1x1 shortcut when the channel count changes."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out, groups), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.shortcut(x)


class SelfAttention(nn.Module):
    """Residual multi-head self-attention over the pixels of a feature map (GN -> 1x1 qkv ->
    softmax(q k^T / sqrt(d)) v -> 1x1 projection, initialised to zero so the block starts as the
    identity, as in Dhariwal & Nichol 2021)."""

    def __init__(self, width: int, heads: int, groups: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"attention heads ({heads}) must divide the width {width}")
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(width, groups), width)
        self.qkv = nn.Conv2d(width, 3 * width, 1)
        self.proj = nn.Conv2d(width, width, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w) \
            .transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C / heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNetSmall(nn.Module):
    """Noise-conditional U-Net for small images (28x28 -> 14x14 -> 7x7 with the defaults).

    ``ch_mult[k] * ngf`` channels at resolution level k; every level after the first halves the
    resolution (stride-2 conv, rounding up, so odd sizes work); ``num_res_blocks`` residual blocks
    per level on the way down, one per level on the way up (after concatenating the skip), and
    two at the bottom. ``patch`` > 1 folds ``patch`` x ``patch`` pixel blocks into channels
    first (pixel unshuffle; undone at the output), so the U-Net runs at 1/patch resolution: for
    28x28 digits ``patch=2`` spends the compute of a 28x28 net on four times the width.
    ``sigmas`` is accepted for the registry but not needed: the network takes any positive sigma.
    ``num_classes`` > 0 makes it class-conditional: a learned embedding of the label (classes
    0..num_classes-1, and ``num_classes`` itself for "no label", the unconditional score that
    classifier-free guidance needs; Ho & Salimans 2022) is added to the sigma embedding.
    ``forward(h, sigma, labels)`` is the raw U-Net F on a preconditioned input (see the module
    docstring).
    """

    continuous_sigma = True

    def __init__(self, *, channels: int, image_size: int, sigmas: Tensor | None = None,
                 ngf: int = 16, ch_mult: Sequence[int] = (1, 2, 4), num_res_blocks: int = 1,
                 emb_dim: int = 64, groups: int = 8, patch: int = 1, num_classes: int = 0,
                 attention_heads: int = 0) -> None:
        super().__init__()
        del sigmas
        if patch < 1 or image_size % patch:
            raise ValueError(f"patch must be >= 1 and divide image_size {image_size}, got {patch}")
        self.patch = patch
        if not ch_mult or any(int(m) < 1 for m in ch_mult):
            raise ValueError(f"ch_mult must be a non-empty list of positive ints, got {ch_mult}")
        if min(ngf, num_res_blocks, groups) < 1 or emb_dim < 2:
            raise ValueError(f"ngf, num_res_blocks and groups must be >= 1 and emb_dim >= 2, got "
                             f"{ngf}, {num_res_blocks}, {groups} and {emb_dim}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: unconditional), got {num_classes}")
        self.image_size, self.num_classes = image_size, num_classes
        widths = [ngf * int(m) for m in ch_mult]
        self.embed = SigmaEmbedding(emb_dim)
        if num_classes:
            self.label_embed = nn.Embedding(num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(channels * patch**2, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for k, width in enumerate(widths):
            if k > 0:
                self.downsample.append(nn.Conv2d(widths[k - 1], width, 3, stride=2, padding=1))
            self.down_blocks.append(nn.ModuleList(
                ResBlock(width, width, emb_dim, groups) for _ in range(num_res_blocks)))
        self.mid = nn.ModuleList(ResBlock(widths[-1], widths[-1], emb_dim, groups)
                                 for _ in range(2))
        if attention_heads < 0:
            raise ValueError(f"attention_heads must be >= 0 (0: none), got {attention_heads}")
        self.mid_attention = SelfAttention(widths[-1], attention_heads, groups) \
            if attention_heads else nn.Identity()
        self.up_blocks = nn.ModuleList(
            ResBlock(widths[k + 1] + widths[k], widths[k], emb_dim, groups)
            for k in reversed(range(len(widths) - 1)))
        self.norm_out = nn.GroupNorm(_groups(widths[0], groups), widths[0])
        self.conv_out = nn.Conv2d(widths[0], channels * patch**2, 3, padding=1)

    def forward(self, h: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        """The raw U-Net F(h, sigma, labels) on a preconditioned input ``h`` (B, C, H, W),
        sigma (B,) and, for a class-conditional net, labels (B,) (None: no label)."""
        emb = self.embed(sigma.to(h.dtype).reshape(-1))
        if self.num_classes:
            if labels is None:
                labels = torch.full((h.shape[0],), self.num_classes, device=h.device)
            emb = emb + self.label_embed(labels.to(h.device, torch.long).reshape(-1))
        elif labels is not None:
            raise ValueError("this network is not class-conditional (num_classes 0): no labels")
        h = self.conv_in(F.pixel_unshuffle(h, self.patch) if self.patch > 1 else h)
        skips = []
        for k, blocks in enumerate(self.down_blocks):
            if k > 0:
                h = self.downsample[k - 1](h)
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
        h = self.mid_attention(self.mid[0](h, emb))
        h = self.mid[1](h, emb)
        skips.pop()
        for block in self.up_blocks:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out
