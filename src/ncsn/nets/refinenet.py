"""RefineNet score networks: the paper's CondRefineNetDilated (NCSN, Song & Ermon 2019,
Appendix A; details in docs/networks.md) and the shared body that NCSNv2 reuses.

Layout (names = official state-dict keys): ``begin_conv`` -> stages ``res1..resN`` (two residual
blocks each) -> RefineNet blocks ``refine1..refineN`` from the deepest stage up -> ``normalizer``
-> ELU -> ``end_conv``. Pixel inputs in [0, 1] are rescaled to 2x - 1 first; logit-transformed
inputs (``logit_input``) are used as they are, as in the official code.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ncsn.nets.layers import (
    CondInstanceNorm2dPlus,
    NormFactory,
    RefineBlock,
    ResidualBlock,
    sigma_to_level,
)


@dataclass(frozen=True)
class Stage:
    """One stage of two residual blocks: output width ``mult * ngf``; the first block is a
    ``down`` block when ``down``; both use ``dilation``."""

    mult: int
    down: bool
    dilation: int


# NCSN (CondRefineNetDilated) and NCSNv2 for 32 px: ngf, 2ngf (mean-pool), 2ngf dil 2, 2ngf dil 4.
STAGES_4 = (Stage(1, False, 1), Stage(2, True, 1), Stage(2, True, 2), Stage(2, True, 4))
# NCSNv2 "deeper" for 64 px: one more mean-pool stage and 4ngf in the dilated stages.
STAGES_5 = (Stage(1, False, 1), Stage(2, True, 1), Stage(2, True, 1), Stage(4, True, 2),
            Stage(4, True, 4))


class RefineNetBody(nn.Module):
    """Stages of residual blocks followed by RefineNet blocks (deepest first).

    Refine block k fuses stage N+1-k with the previous refine output and outputs the width of the
    next shallower stage (``ngf`` for the last one). ``norm`` builds the residual blocks' and head's
    norms; ``refine_norm`` those inside refine blocks (None: no norms); ``pool`` is the chained
    residual pooling ("avg" for NCSN, "max" for NCSNv2). ``logit_input``: the inputs are
    logit-transformed pixels, not rescaled to 2x - 1.
    """

    def __init__(self, *, channels: int, ngf: int, stages: Sequence[Stage], norm: NormFactory,
                 refine_norm: NormFactory | None, pool: str, logit_input: bool = False) -> None:
        super().__init__()
        self.num_stages = len(stages)
        self.logit_input = logit_input
        self.begin_conv = nn.Conv2d(channels, ngf, 3, padding=1)
        widths = [s.mult * ngf for s in stages]
        in_ch = ngf
        for k, (stage, out_ch) in enumerate(zip(stages, widths, strict=True), start=1):
            blocks = [ResidualBlock(in_ch, out_ch, norm, down=stage.down, dilation=stage.dilation),
                      ResidualBlock(out_ch, out_ch, norm, dilation=stage.dilation)]
            self.add_module(f"res{k}", nn.ModuleList(blocks))
            in_ch = out_ch
        deep_first = widths[::-1]
        prev: list[int] = []
        for k, width in enumerate(deep_first, start=1):
            out = deep_first[k] if k < len(deep_first) else ngf
            self.add_module(f"refine{k}", RefineBlock([width, *prev], out, refine_norm, pool=pool,
                                                      end=k == len(deep_first)))
            prev = [out]
        self.normalizer = norm(ngf)
        self.end_conv = nn.Conv2d(ngf, channels, 3, padding=1)

    def body(self, x: Tensor, y: Tensor | None) -> Tensor:
        """The network on images ``x`` in [0, 1] (or logits); ``y`` are level indices (None:
        unconditional). Subclasses define ``forward(x, sigma)`` on top of it."""
        h = self.begin_conv(x if self.logit_input else 2.0 * x - 1.0)
        features = []
        for k in range(1, self.num_stages + 1):
            for block in getattr(self, f"res{k}"):
                h = block(h, y)
            features.append(h)
        h_prev: Tensor | None = None
        for k, feat in enumerate(reversed(features), start=1):
            xs = [feat] if h_prev is None else [feat, h_prev]
            h_prev = getattr(self, f"refine{k}")(xs, y, feat.shape[-2:])
        assert h_prev is not None
        return self.end_conv(F.elu(self.normalizer(h_prev, y)))


class CondRefineNetDilated(RefineNetBody):
    """The paper's noise-conditional score network s(x, sigma_i) (NCSN, Song & Ermon 2019, App. B).

    Conditional instance norm++ everywhere (one embedding row per noise level), average pooling
    in chained residual pooling. ``sigmas`` (L,) is kept as a non-persistent buffer, so the
    ``state_dict`` keys are exactly the official checkpoint keys; each input sigma is mapped to
    its level (a ValueError for a sigma the network was not trained on). Any channels/size.
    ``logit_input``: trained on logit-transformed pixels (the official ``logit_transform``), so
    the input is not rescaled to 2x - 1; a config with ``data.logit`` sets it by default.
    """

    continuous_sigma = False  # only the trained levels (ncsn.nets.accepts_any_sigma)

    def __init__(self, *, channels: int, sigmas: Tensor, ngf: int = 64,
                 logit_input: bool = False) -> None:
        num_levels = int(sigmas.numel())

        def norm(c: int) -> nn.Module:
            return CondInstanceNorm2dPlus(c, num_levels)

        super().__init__(channels=channels, ngf=ngf, stages=STAGES_4, norm=norm,
                         refine_norm=norm, pool="avg", logit_input=logit_input)
        self.register_buffer("sigmas", sigmas.detach().clone().float(), persistent=False)
        self._checked_sigma: tuple[weakref.ref[Tensor], int] | None = None

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Score estimate at noise scale ``sigma`` (B,), one of the trained levels."""
        return self.body(x, self._levels(sigma))

    def _levels(self, sigma: Tensor) -> Tensor:
        """Level indices of ``sigma``. The trained-level check reads a flag back from the device,
        so it runs once per sigma tensor: the samplers pass one tensor for all the steps at a
        level, a sync per level rather than per step (under torch.compile it never syncs, see
        :func:`~ncsn.nets.layers.sigma_to_level`)."""
        if torch.compiler.is_compiling():
            return sigma_to_level(sigma, self.sigmas)
        seen = self._checked_sigma
        fresh = seen is None or seen[0]() is not sigma or seen[1] != sigma._version
        levels = sigma_to_level(sigma, self.sigmas, check=fresh)
        if fresh and isinstance(sigma, Tensor):
            self._checked_sigma = (weakref.ref(sigma), sigma._version)
        return levels
