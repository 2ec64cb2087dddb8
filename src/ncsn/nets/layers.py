"""Building blocks of the RefineNet score networks (NCSN Appendix A, docs/networks.md; NCSNv2).

Module attribute names follow the official release, so a network's ``state_dict`` keys are the
official checkpoint keys (``normalize1``, ``conv2.conv``, ``1_2_norm``, ``crp.convs.0``, ...).
Every block's ``forward`` takes ``(x, y)``; ``y`` is the noise-level index (B,) for conditional
networks and ``None`` for unconditional ones (NCSNv2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIGMA_REL_TOL = 1e-4
NORM_EPS = 1e-5

NormFactory = Callable[[int], nn.Module]


def sigma_to_level(sigma: Tensor, sigmas: Tensor, rel_tol: float = SIGMA_REL_TOL, *,
                   check: bool = True) -> Tensor:
    """Map each noise scale in ``sigma`` (B,) to the index of the nearest trained level.

    A match must lie within relative distance ``rel_tol`` of a level in ``sigmas`` (L,);
    otherwise a ValueError names the offending sigma and the trained levels. That test reads a
    flag back to the host (a sync on a GPU): ``check=False`` skips it for a tensor the caller
    has already checked. While ``torch.compile`` traces, it is a device-side assert instead
    (no host sync, no graph break; a failure raises without the levels listed).
    """
    sigma = torch.as_tensor(sigma, dtype=sigmas.dtype, device=sigmas.device)
    rel = (sigma.reshape(-1, 1) - sigmas.reshape(1, -1)).abs() / sigmas.reshape(1, -1)
    best, level = rel.min(dim=1)
    if torch.compiler.is_compiling():
        torch._assert_async((best <= rel_tol).all(), "sigma is not one of the network's trained "
                            "noise levels; sample with the sigmas it was trained on")
    elif check:
        bad = best > rel_tol
        if bool(bad.any()):
            wrong = sigma.reshape(-1)[bad][0].item()
            levels = ", ".join(f"{s:.6g}" for s in sigmas.tolist())
            raise ValueError(
                f"sigma={wrong:.6g} is not one of the network's trained noise levels [{levels}] "
                f"(relative tolerance {rel_tol:g}); sample with the sigmas the network was "
                "trained on")
    return level.reshape(sigma.shape)


def _channels_last(x: Tensor) -> bool:
    """True for a 4-d tensor laid out NHWC (and not also NCHW, as when H = W = 1)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous()


def instance_norm_plus(x: Tensor, gamma: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """Instance norm++ (NCSN, Song & Ermon 2019, Appendix A.1, Eq. 5).

    mu_c = spatial mean per channel; m, v = mean and unbiased variance of mu over channels;
    out = gamma_c * (IN(x)_c + alpha_c * (mu_c - m) / sqrt(v + 1e-5)) + beta_c.
    ``gamma``, ``alpha``, ``beta`` have shape (B, C) or (C,).

    Computed in (at least) fp32 also under bf16/fp16 autocast: mu_c - m is a difference of nearly
    equal means, mostly rounding error in bf16. The result has ``x``'s dtype. A channels_last
    input stays channels_last (``F.instance_norm`` returns an NCHW tensor, which would undo the
    layout before every convolution; docs/training.md, "channels_last").
    """
    with torch.autocast(x.device.type, enabled=False):
        h = x.to(torch.promote_types(x.dtype, torch.float32))
        if _channels_last(h):
            var, mu = torch.var_mean(h, dim=(2, 3), unbiased=False)
            normed = (h - mu[..., None, None]) * torch.rsqrt(var[..., None, None] + NORM_EPS)
        else:
            mu = h.mean(dim=(2, 3))
            normed = F.instance_norm(h, eps=NORM_EPS)
        m = mu.mean(dim=1, keepdim=True)
        v = mu.var(dim=1, keepdim=True, unbiased=True)
        shift = (mu - m) / torch.sqrt(v + NORM_EPS)
        h = normed + (alpha * shift)[..., None, None]
        out = gamma.reshape(*gamma.shape, 1, 1) * h + beta.reshape(*beta.shape, 1, 1)
    return out.to(x.dtype)


class CondInstanceNorm2dPlus(nn.Module):
    """Conditional instance norm++: one (gamma | alpha | beta) row per noise level in ``embed``.

    Init (NCSN): gamma, alpha ~ N(1, 0.02), beta = 0.
    """

    def __init__(self, num_features: int, num_levels: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.embed = nn.Embedding(num_levels, 3 * num_features)
        with torch.no_grad():
            self.embed.weight[:, : 2 * num_features].normal_(1.0, 0.02)
            self.embed.weight[:, 2 * num_features :].zero_()

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("a conditional norm needs the noise-level indices y")
        gamma, alpha, beta = self.embed(y).chunk(3, dim=-1)
        return instance_norm_plus(x, gamma, alpha, beta)


class InstanceNorm2dPlus(nn.Module):
    """Unconditional instance norm++ (NCSNv2): learned per-channel gamma, alpha, beta."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.gamma = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return instance_norm_plus(x, self.gamma, self.alpha, self.beta)


def mean_pool2x2(x: Tensor) -> Tensor:
    """2x2 mean pooling as the average of the four strided sub-grids (odd sizes: last row/col
    dropped)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return (x[..., ::2, ::2] + x[..., 1::2, ::2] + x[..., ::2, 1::2] + x[..., 1::2, 1::2]) / 4.0


class ConvMeanPool(nn.Module):
    """Convolution (same padding) followed by 2x2 mean pooling."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return mean_pool2x2(self.conv(x))


def conv3x3(in_ch: int, out_ch: int, *, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution keeping the spatial size (padding = dilation)."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=bias)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: norm1 -> ELU -> conv1 -> norm2 -> ELU -> conv2, + shortcut.

    ``down`` blocks: without dilation, conv2 and the 1x1 shortcut end in 2x2 mean pooling; with
    dilation (stages 3, 4) they keep the size, with conv1 in->in and a dilated 3x3 shortcut.
    A shortcut conv exists when channels change or the block is a ``down`` block.
    """

    def __init__(self, in_ch: int, out_ch: int, norm: NormFactory, *, down: bool = False,
                 dilation: int = 1) -> None:
        super().__init__()
        mid = in_ch if down else out_ch
        self.normalize1 = norm(in_ch)
        self.conv1 = conv3x3(in_ch, mid, dilation=dilation)
        self.normalize2 = norm(mid)
        self.shortcut: nn.Module | None
        if down and dilation == 1:
            self.conv2 = ConvMeanPool(mid, out_ch, 3)
            self.shortcut = ConvMeanPool(in_ch, out_ch, 1)
        else:
            self.conv2 = conv3x3(mid, out_ch, dilation=dilation)
            if dilation > 1 and (down or in_ch != out_ch):
                self.shortcut = conv3x3(in_ch, out_ch, dilation=dilation)
            elif in_ch != out_ch:
                self.shortcut = nn.Conv2d(in_ch, out_ch, 1)
            else:
                self.shortcut = None

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.conv1(F.elu(self.normalize1(x, y)))
        h = self.conv2(F.elu(self.normalize2(h, y)))
        return h + (x if self.shortcut is None else self.shortcut(x))


class RCUBlock(nn.Module):
    """Residual conv unit: ``n_blocks`` residual sub-blocks of ``n_stages`` x [norm -> ELU ->
    3x3 conv without bias]; ``norm=None`` drops the norms (NCSNv2). Layers ``{i}_{j}_conv``."""

    def __init__(self, features: int, n_blocks: int, n_stages: int,
                 norm: NormFactory | None) -> None:
        super().__init__()
        self.n_blocks, self.n_stages = n_blocks, n_stages
        self.has_norm = norm is not None
        for i in range(1, n_blocks + 1):
            for j in range(1, n_stages + 1):
                if norm is not None:
                    self.add_module(f"{i}_{j}_norm", norm(features))
                self.add_module(f"{i}_{j}_conv", conv3x3(features, features, bias=False))

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        for i in range(1, self.n_blocks + 1):
            residual = x
            for j in range(1, self.n_stages + 1):
                if self.has_norm:
                    x = getattr(self, f"{i}_{j}_norm")(x, y)
                x = getattr(self, f"{i}_{j}_conv")(F.elu(x))
            x = x + residual
        return x


class MSFBlock(nn.Module):
    """Multi-resolution fusion: per input [norm ->] 3x3 conv (bias) -> bilinear resize
    (align_corners=True) to the output size; the results are summed."""

    def __init__(self, in_planes: Sequence[int], features: int,
                 norm: NormFactory | None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(c, features) for c in in_planes)
        self.norms = nn.ModuleList(norm(c) for c in in_planes) if norm is not None else None

    def forward(self, xs: Sequence[Tensor], y: Tensor | None, size: Sequence[int]) -> Tensor:
        total: Tensor | None = None
        for k, x in enumerate(xs):
            h = self.norms[k](x, y) if self.norms is not None else x
            h = F.interpolate(self.convs[k](h), size=tuple(size), mode="bilinear",
                              align_corners=True)
            total = h if total is None else total + h
        assert total is not None
        return total


class CRPBlock(nn.Module):
    """Chained residual pooling: ELU, then ``n_stages`` x [norm -> 5x5 pool (stride 1, padding 2)
    -> 3x3 conv without bias], each stage's output added to the running sum.

    ``pool="avg"`` (NCSN, zero padding counted) or ``"max"`` (NCSNv2, no norms)."""

    def __init__(self, features: int, n_stages: int, norm: NormFactory | None,
                 pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.convs = nn.ModuleList(conv3x3(features, features, bias=False)
                                   for _ in range(n_stages))
        self.norms = (nn.ModuleList(norm(features) for _ in range(n_stages))
                      if norm is not None else None)

    def _pool(self, x: Tensor) -> Tensor:
        if self.pool == "avg":
            return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True)
        return F.max_pool2d(x, 5, stride=1, padding=2)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        x = F.elu(x)
        path = x
        for k, conv in enumerate(self.convs):
            if self.norms is not None:
                path = self.norms[k](path, y)
            path = conv(self._pool(path))
            x = path + x
        return x


class RefineBlock(nn.Module):
    """RefineNet block: adaptive RCUs per input (2x2), fusion when there are two inputs, chained
    residual pooling, output RCU (3 blocks in the last refine block, 1 otherwise)."""

    def __init__(self, in_planes: Sequence[int], features: int, norm: NormFactory | None, *,
                 pool: str, end: bool = False) -> None:
        super().__init__()
        self.adapt_convs = nn.ModuleList(RCUBlock(c, 2, 2, norm) for c in in_planes)
        self.msf = MSFBlock(in_planes, features, norm) if len(in_planes) > 1 else None
        self.crp = CRPBlock(features, 2, norm, pool)
        self.output_convs = RCUBlock(features, 3 if end else 1, 2, norm)

    def forward(self, xs: Sequence[Tensor], y: Tensor | None, size: Sequence[int]) -> Tensor:
        hs = [adapt(x, y) for adapt, x in zip(self.adapt_convs, xs, strict=True)]
        h = self.msf(hs, y, size) if self.msf is not None else hs[0]
        return self.output_convs(self.crp(h, y), y)
