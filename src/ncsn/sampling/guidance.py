"""Class-conditional sampling of a :class:`~ncsn.sampling.ScoreModel` by classifier guidance
(:mod:`ncsn.core.guidance`): a noise-conditional classifier file checked against the model, the
sampling plan and the asked class, each misfit one line (:class:`~ncsn.errors.UserError`).
The classifier sees the noisy sample (``noisy``, p(y | x, sigma)) or the score model's
denoised estimate (``denoised``: the classifier at its smallest trained sigma on
x + sigma^2 s(x, sigma), :func:`~ncsn.core.guidance.denoised_guided_score`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from ncsn.core import ScoreFn
from ncsn.core.guidance import denoised_guided_score, guided_score
from ncsn.errors import UserError
from ncsn.nets.classifier import load_classifier
from ncsn.sampling.pipeline import SamplingPlan

SIGMA_SLACK = 1e-3
"""Relative slack when comparing the plan's sigma range with the classifier's (float32 files)."""
ClassifierInput = Literal["noisy", "denoised"]
CLASSIFIER_INPUTS: tuple[ClassifierInput, ...] = ("noisy", "denoised")


def classifier_guidance(classifier: str | Path, label: int, scale: float, plan: SamplingPlan,
                        image_shape: tuple[int, int, int], device: torch.device,
                        classifier_input: ClassifierInput = "noisy"
                        ) -> Callable[[ScoreFn], ScoreFn]:
    """What turns a score into ``score`` + ``scale`` grad log p(``label`` | x, sigma) with the
    classifier file ``classifier`` seeing ``classifier_input`` (module docstring), after
    checking (now, before any sampling) its images, its classes and, for ``noisy``, that it was
    trained over every sigma the plan evaluates."""
    net, record = load_classifier(classifier)
    channels, size, _ = image_shape
    if (record["channels"], record.get("image_size")) != (channels, size):
        raise UserError(f"classifier {classifier} was trained on {record['channels']}x"
                        f"{record.get('image_size')} images ({record.get('dataset')}); the model "
                        f"takes {channels}x{size}")
    if isinstance(label, bool) or not isinstance(label, int) \
            or not 0 <= label < record["num_classes"]:
        raise UserError(f"class {label!r} is unknown to classifier {classifier}, which has "
                        f"classes 0..{record['num_classes'] - 1}")
    if scale < 0:
        raise UserError(f"the guidance scale must be >= 0, got {scale}")
    if classifier_input not in CLASSIFIER_INPUTS:
        raise UserError(f"classifier input (--classifier-input) must be one of "
                        f"{', '.join(CLASSIFIER_INPUTS)}, got {classifier_input!r}")
    net = net.to(device)
    if classifier_input == "denoised":
        clean = torch.tensor([float(record["sigma_min"])], device=device)
        return lambda score: denoised_guided_score(
            score, lambda x0: net(x0, clean.expand(x0.shape[0])), label, scale)
    low, high = float(plan.sigmas[-1]), float(plan.sigmas[0])
    if low < record["sigma_min"] * (1 - SIGMA_SLACK) or high > record["sigma_max"] * (
            1 + SIGMA_SLACK):
        raise UserError(f"classifier {classifier} was trained for sigma {record['sigma_min']:.4g}"
                        f" .. {record['sigma_max']:.4g}; this plan samples {low:.4g} .. "
                        f"{high:.4g} (train it for this model: ncsn train-classifier MODEL)")
    return lambda score: guided_score(score, net, label, scale)
