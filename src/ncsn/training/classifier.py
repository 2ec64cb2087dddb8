"""Training a noise-conditional classifier p(y | x, sigma) for classifier guidance: cross-entropy
on data perturbed at sigma, with log sigma ~ U[log sigma_min, log sigma_max] over the score
model's range (the continuous limit of the paper's uniform choice among geometric levels, and
the levels a geometric sampling schedule visits)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from ncsn.core.noise import draw_sigmas
from ncsn.errors import UserError
from ncsn.nets.classifier import NoiseConditionalClassifier
from ncsn.spec.validation import user_error
from ncsn.spec.values import FINITE, MAX_BATCH, MAX_SEED, MAX_STEPS, MAX_WIDTH

PACKAGED = "digit_classifier_mnist5k"  # the packaged config (src/ncsn/configs), the default


class ClassifierRecipe(BaseModel):
    """The ``classifier`` section of a classifier config; the defaults are the packaged
    recipe for the embedded digits (mnist5k): about 7 minutes on one CPU thread (6000 steps;
    1500 left the mid-level accuracy, and guidance, short: docs/controllable.md)."""

    model_config = ConfigDict(extra="forbid", **FINITE)

    dataset: Literal["mnist5k"] = "mnist5k"
    steps: int = Field(default=6000, ge=1, le=MAX_STEPS)
    batch_size: int = Field(default=64, ge=1, le=MAX_BATCH)
    lr: float = Field(default=2e-3, gt=0)
    width: int = Field(default=32, ge=1, le=MAX_WIDTH)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class _ClassifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classifier: ClassifierRecipe


RECIPE = ClassifierRecipe()


def load_classifier_config(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None
                           ) -> tuple[Path, ClassifierRecipe]:
    """The file and the validated recipe of a classifier config (a YAML file or a packaged
    name: one section ``classifier``), with ``overrides`` (field: value) applied; UserError
    naming the field (``classifier.steps: must be >= 1``)."""
    from ncsn.config import read_config_mapping

    path, raw = read_config_mapping(name_or_path)
    if not isinstance(raw.get("classifier"), Mapping):
        raise UserError(f"{path}: a classifier config holds one section, classifier (e.g. "
                        f"ncsn configs {PACKAGED}); ncsn train takes score-model configs")
    raw["classifier"] = {**raw["classifier"], **(overrides or {})}
    try:
        return path, _ClassifierConfig.model_validate(raw).classifier
    except ValidationError as err:
        raise user_error(err, f"{path}: ") from None


def train_classifier(images: Tensor, labels: Tensor, sigma_min: float, sigma_max: float, *,
                     num_classes: int = 10, steps: int = RECIPE.steps,
                     batch_size: int = RECIPE.batch_size, lr: float = RECIPE.lr,
                     width: int = RECIPE.width, seed: int = RECIPE.seed,
                     log: Callable[[str], None] | None = None) -> NoiseConditionalClassifier:
    """A classifier of ``images`` (N, C, H, W in [0, 1]) by ``labels`` (N,) trained ``steps``
    Adam steps of cross-entropy on x + sigma z, log sigma uniform over [sigma_min, sigma_max]."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = NoiseConditionalClassifier(images.shape[1], num_classes, width)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        pick = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        sigma = draw_sigmas(batch_size, "log_uniform", sigma_min=sigma_min, sigma_max=sigma_max,
                            generator=gen)
        x = images[pick] + sigma.reshape(-1, 1, 1, 1) * torch.randn(
            images[pick].shape, generator=gen)
        loss = F.cross_entropy(net(x, sigma), labels[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None and (step + 1) % max(1, steps // 10) == 0:
            log(f"step {step + 1}/{steps}: cross-entropy {loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def accuracy_per_level(net: NoiseConditionalClassifier, images: Tensor, labels: Tensor,
                       sigmas: list[float], seed: int = 0) -> dict[str, float]:
    """Share of ``images`` perturbed at each sigma that ``net`` classifies as ``labels``,
    keyed by sigma (4 significant digits)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for s in sigmas:
        sigma = torch.full((images.shape[0],), float(s))
        x = images + s * torch.randn(images.shape, generator=gen)
        out[f"{s:.4g}"] = float((net(x, sigma).argmax(1) == labels).float().mean())
    return out
