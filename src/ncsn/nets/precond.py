"""Preconditioning: a wrapper that turns a backbone ``F(x_in, sigma) -> Tensor`` (shaped like
``x``, e.g. :class:`ncsn.nets.unet.UNetSmall`) into a score network s(x, sigma), the shape of
k-diffusion's ``Denoiser``. The preconditioner decides F's input and how F's output becomes the
score; :data:`PRECONDITIONERS` names them:

- ``ncsnv2``: s = F(c_in (2x - 1), sigma) / sigma. The division by sigma is NCSNv2's technique 3
  (Song & Ermon 2020, an unconditional network's output over sigma); the input scale
  c_in = 1 / sqrt(1 + (2 sigma)^2) is ncsn's addition, keeping noisy inputs of unit order.
- ``edm`` (Karras et al. 2022, Sec. 5 and Table 1), around a data centre mu:
  D(x; sigma) = mu + c_skip (x - mu) + c_out F(c_in (x - mu), sigma),
  c_skip = sigma_d^2 / (sigma^2 + sigma_d^2), c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2),
  c_in = 1 / sqrt(sigma^2 + sigma_d^2), and the score s = (D(x; sigma) - x) / sigma^2
  (Tweedie's formula). F's target then has unit variance at every sigma; trained with DSM and
  :func:`ncsn.core.losses.dsm_weight` with ``sigma_data``, the objective is EDM's.

The wrapper has no weights of its own: its ``state_dict`` is the backbone's, under the
backbone's own names, so a model file holds the backbone's weights and the spec's network
section says how they are preconditioned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

Backbone = Callable[[Tensor, Tensor], Tensor]
BACKBONE = "backbone."


def _shaped(sigma: Tensor, x: Tensor) -> Tensor:
    return sigma.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def ncsnv2_score(backbone: Backbone, x: Tensor, sigma: Tensor, *, sigma_data: float,
                 data_mean: float) -> Tensor:
    """s = F(c_in (2x - 1), sigma) / sigma, c_in = 1 / sqrt(1 + 4 sigma^2) (pixels in [0, 1])."""
    del sigma_data, data_mean
    s = _shaped(sigma, x)
    return backbone((2.0 * x - 1.0) / torch.sqrt(1.0 + 4.0 * s**2), sigma) / s


def edm_denoiser(backbone: Backbone, x: Tensor, sigma: Tensor, *, sigma_data: float,
                 data_mean: float) -> Tensor:
    """EDM's D(x; sigma) = mu + c_skip (x - mu) + c_out F(c_in (x - mu), sigma)."""
    s = _shaped(sigma, x)
    total = s**2 + sigma_data**2
    centred = x - data_mean
    root = torch.sqrt(total)
    out = backbone(centred / root, sigma)
    return data_mean + (sigma_data**2 / total) * centred + (s * sigma_data / root) * out


def edm_score(backbone: Backbone, x: Tensor, sigma: Tensor, *, sigma_data: float,
              data_mean: float) -> Tensor:
    """s = (D(x; sigma) - x) / sigma^2 with EDM's denoiser :func:`edm_denoiser`."""
    denoised = edm_denoiser(backbone, x, sigma, sigma_data=sigma_data, data_mean=data_mean)
    return (denoised - x) / _shaped(sigma, x) ** 2


PRECONDITIONERS: dict[str, Callable[..., Tensor]] = {"ncsnv2": ncsnv2_score, "edm": edm_score}


def _drop_backbone_prefix(module: nn.Module, state: dict[str, Any], prefix: str,
                          local_metadata: Any) -> None:
    """state_dict hook: ``<prefix>backbone.k`` -> ``<prefix>k``."""
    del module, local_metadata
    inner = prefix + BACKBONE
    for key in [k for k in state if k.startswith(inner)]:
        state[prefix + key[len(inner):]] = state.pop(key)


def _add_backbone_prefix(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any
                         ) -> None:
    """load_state_dict pre-hook: ``<prefix>k`` -> ``<prefix>backbone.k``."""
    del module, args
    for key in [k for k in state if k.startswith(prefix)]:
        state[prefix + BACKBONE + key[len(prefix):]] = state.pop(key)


class Preconditioned(nn.Module):
    """A score network s(x, sigma) from ``backbone`` and the preconditioner ``kind``
    (:data:`PRECONDITIONERS`) with the data scale ``sigma_data`` and centre ``data_mean``."""

    continuous_sigma = True

    def __init__(self, backbone: nn.Module, kind: str = "ncsnv2", *, sigma_data: float = 0.5,
                 data_mean: float = 0.5) -> None:
        super().__init__()
        if kind not in PRECONDITIONERS:
            raise ValueError(f"precond must be one of {', '.join(PRECONDITIONERS)}, got {kind!r}")
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.backbone = backbone
        self.kind, self.sigma_data, self.data_mean = kind, sigma_data, data_mean
        self.register_state_dict_post_hook(_drop_backbone_prefix)
        self.register_load_state_dict_pre_hook(_add_backbone_prefix)

    @property
    def num_classes(self) -> int:
        """The backbone's number of classes (0: not class-conditional)."""
        return int(getattr(self.backbone, "num_classes", 0))

    def forward(self, x: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        """Score estimate s(x, sigma) for images ``x`` (B, C, H, W) and scales ``sigma`` (B,);
        a class-conditional backbone also takes ``labels`` (B,) (None: unconditional)."""
        backbone = self.backbone if labels is None else (
            lambda h, s: self.backbone(h, s, labels))
        return PRECONDITIONERS[self.kind](backbone, x, sigma.to(x.dtype).reshape(-1),
                                          sigma_data=self.sigma_data, data_mean=self.data_mean)
