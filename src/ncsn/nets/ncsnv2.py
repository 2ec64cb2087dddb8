"""NCSNv2 score network (Song & Ermon 2020, "Improved Techniques ...", technique 3).

Unconditional RefineNet body with instance norm++ in the residual blocks and the head, refine
blocks without normalization and max pooling in chained residual pooling; the output is divided
by sigma, so any noise scale is accepted: s(x, sigma) = f(x) / sigma.
Sizes as NCSNv2 uses them: ``depth="base"`` (4 stages, CIFAR-10 32 px) and ``"deeper"``
(5 stages, one more mean-pool and 4ngf in the dilated stages; CelebA 64 px).
"""

from __future__ import annotations

from torch import Tensor

from ncsn.errors import UserError
from ncsn.nets.layers import InstanceNorm2dPlus
from ncsn.nets.refinenet import STAGES_4, STAGES_5, RefineNetBody

DEPTHS = {"base": STAGES_4, "deeper": STAGES_5}


def resolve_depth(depth: str, image_size: int) -> str:
    """``"auto"`` picks NCSNv2's size for the image: "base" below 64 px, "deeper" from 64 px."""
    if depth == "auto":
        return "base" if image_size < 64 else "deeper"
    if depth not in DEPTHS:
        raise UserError(f"network.depth must be one of auto, {', '.join(DEPTHS)}; got {depth!r}")
    return depth


class NCSNv2(RefineNetBody):
    """NCSNv2: s(x, sigma) = RefineNet(x) / sigma (ngf 128 in NCSNv2's CIFAR-10 and CelebA)."""

    continuous_sigma = True

    def __init__(self, *, channels: int, image_size: int, ngf: int = 128,
                 depth: str = "auto") -> None:
        resolved = resolve_depth(depth, image_size)
        super().__init__(channels=channels, ngf=ngf, stages=DEPTHS[resolved],
                         norm=InstanceNorm2dPlus, refine_norm=None, pool="max")
        self.depth = resolved

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Score estimate for noise scale ``sigma`` (B,) (any positive value)."""
        sigma = sigma.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return self.body(x, None) / sigma
