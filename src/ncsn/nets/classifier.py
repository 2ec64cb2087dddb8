"""A small noise-conditional classifier p(y | x, sigma) for classifier guidance
(:mod:`ncsn.core.guidance`), and its self-describing files (``<stem>.safetensors`` +
``<stem>.json``: architecture, the sigma range it was trained on, data set, accuracy per level).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from ncsn import files
from ncsn.errors import UserError

KIND = "noise_conditional_classifier"


class NoiseConditionalClassifier(nn.Module):
    """Logits of p(y | x, sigma) for images x perturbed at any sigma: the input is scaled by
    c_in = 1 / sqrt(sigma_data^2 + sigma^2) (unit variance at every level, as EDM's
    preconditioning), three 3x3 conv blocks (``width``, 2 ``width``, 2 ``width`` channels; each
    SiLU, a per-channel scale and shift from log sigma, 2x2 average pooling), global average
    pooling and a linear head."""

    continuous_sigma = True

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 32,
                 sigma_data: float = 0.5) -> None:
        super().__init__()
        self.sigma_data = sigma_data
        sizes = [channels, width, 2 * width, 2 * width]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                   for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.films = nn.ModuleList(nn.Linear(16, 2 * b) for b in sizes[1:])
        self.register_buffer("frequencies", torch.arange(1, 9, dtype=torch.float32) * math.pi / 8)
        self.head = nn.Linear(sizes[-1], num_classes)

    def _embedding(self, sigma: Tensor) -> Tensor:
        phase = torch.log(sigma).reshape(-1, 1) * self.frequencies
        return torch.cat([phase.sin(), phase.cos()], dim=1)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        c_in = (self.sigma_data**2 + sigma**2).rsqrt().reshape(-1, 1, 1, 1)
        h, emb = (x - 0.5) * c_in, self._embedding(sigma)
        for conv, film in zip(self.convs, self.films, strict=True):
            scale, shift = film(emb)[:, :, None, None].chunk(2, dim=1)
            h = nn.functional.avg_pool2d(nn.functional.silu(conv(h) * (1 + scale) + shift), 2)
        return self.head(h.mean(dim=(2, 3)))


def save_classifier(stem: str | Path, net: NoiseConditionalClassifier,
                    record: dict[str, Any]) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` (``record`` plus the architecture)."""
    stem = Path(stem)
    weights = files.write_bytes(stem.with_suffix(".safetensors"), safetensors_bytes(
        {k: v.contiguous() for k, v in net.state_dict().items()}))
    architecture = {"channels": net.convs[0].in_channels, "num_classes": net.head.out_features,
                    "width": net.convs[0].out_channels, "sigma_data": net.sigma_data}
    files.write_json(stem.with_suffix(".json"), {"kind": KIND, **architecture, **record})
    return weights


def classifier_stem(path: str | Path) -> Path:
    """The classifier's stem from its stem, ``.json`` or ``.safetensors``."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def load_classifier(path: str | Path) -> tuple[NoiseConditionalClassifier, dict[str, Any]]:
    """The classifier (eval mode) and its record from its stem, ``.json`` or ``.safetensors``;
    UserError for a missing, foreign or unreadable file."""
    stem = classifier_stem(path)
    try:
        record = files.parse_json(stem.with_suffix(".json").read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read classifier {stem}.json: {err}") from None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise UserError(f"{stem}.json is not a noise-conditional classifier (train one with "
                        "ncsn train-classifier)")
    net = NoiseConditionalClassifier(record["channels"], record["num_classes"], record["width"],
                                     record["sigma_data"])
    try:
        net.load_state_dict(load_file(str(stem.with_suffix(".safetensors"))))
    except (OSError, SafetensorError, RuntimeError) as err:
        raise UserError(f"cannot load classifier weights {stem}.safetensors: "
                        f"{str(err).splitlines()[0]}") from None
    return net.eval(), record
