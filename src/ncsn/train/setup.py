"""Everything a training run needs before its first step: run directory, data, noise levels,
sampling settings, and the compatibility check of a checkpoint against the config."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ncsn.config import Config, SamplingConfig
from ncsn.core.noise import geometric_sigmas, ncsnv2_num_levels, ncsnv2_sigma_max, ncsnv2_step_size
from ncsn.data import load_dataset, logit_transform, to_float
from ncsn.errors import UserError

AUTO_SIGMA_SUBSET = 5000  # images used for NCSNv2's sigma_1 = max pairwise distance
# config fields a resumed run must share with its checkpoint (others, e.g. n_iters, may change)
RESUME_FIELDS = {
    "model": None, "noise": None, "data": ("name", "image_size", "channels", "dequantize",
                                           "hflip", "logit"),
    "training": ("loss", "anneal_power", "ssm_projection", "ssm_variance_reduced", "batch_size",
                 "seed"),
}


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to reuse a non-empty run directory unless resuming or told to overwrite it."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} is a file; pass another --run-dir")
    if resume or not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise UserError(f"run directory {run_dir} already exists; pass --resume to continue it, "
                        "--overwrite to replace it, or another --run-dir")
    print(f"removing the existing run directory {run_dir} (--overwrite)")
    shutil.rmtree(run_dir)


def load_split(config: Config, split: str) -> Tensor:
    """uint8 images (N, C, H, W) of ``split`` of the configured data set."""
    d = config.data
    return load_dataset(d.name, split, root=d.root, image_size=d.image_size, channels=d.channels,
                        download=d.download)


def resolve_noise(config: Config, train_images: Tensor) -> tuple[Config, Tensor]:
    """Replace ``"auto"`` noise settings (NCSNv2 techniques 1-2) by numbers; return the sigmas."""
    noise = config.noise
    sigma_max = noise.sigma_max
    if sigma_max == "auto":
        gen = torch.Generator().manual_seed(config.training.seed)
        n = train_images.shape[0]
        subset = torch.randperm(n, generator=gen)[:AUTO_SIGMA_SUBSET] if n > AUTO_SIGMA_SUBSET \
            else torch.arange(n)
        data = to_float(train_images[subset])
        if config.data.logit:  # distances where the network sees the data
            data = logit_transform(data)
        sigma_max = round(ncsnv2_sigma_max(data), 4)
    num_levels = noise.num_levels
    if num_levels == "auto":
        dim = int(train_images[0].numel())
        num_levels = ncsnv2_num_levels(dim, float(sigma_max), noise.sigma_min)
    resolved = config.model_copy(update={"noise": noise.model_copy(
        update={"sigma_max": float(sigma_max), "num_levels": int(num_levels)})})
    if float(sigma_max) < noise.sigma_min:
        raise UserError(f"noise.sigma_max ({sigma_max}) came out below noise.sigma_min "
                        f"({noise.sigma_min}); set both by hand")
    return resolved, geometric_sigmas(float(sigma_max), noise.sigma_min, int(num_levels))


def resolve_step_size(sampling: SamplingConfig, sigmas: Tensor) -> float:
    """``step_size: auto`` is NCSNv2 technique 4 (Eq. 4), converted to the chosen convention
    (the paper's eps is twice the official step_lr)."""
    if sampling.step_size != "auto":
        return float(sampling.step_size)
    step_lr = ncsnv2_step_size(sigmas, sampling.n_steps_each)
    return 2.0 * step_lr if sampling.convention == "paper" else step_lr


def sampling_spec(config: Config, sigmas: Tensor) -> dict[str, Any]:
    """Sampler defaults stored with the model (``nets.io`` spec ``"sampling"``)."""
    s = config.sampling
    return {"n_steps_each": s.n_steps_each, "step_size": resolve_step_size(s, sigmas),
            "convention": s.convention, "final_denoise": s.final_denoise,
            "logit": config.data.logit}


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str,
                 fields: tuple[str, ...] | None) -> list[str]:
    keys = fields if fields is not None else sorted(set(old) | set(new))
    return [f"{prefix}.{k} is {old.get(k)!r} there, {new.get(k)!r} here" for k in keys
            if old.get(k) != new.get(k)]


def check_resume_config(saved: Mapping[str, Any], current: Mapping[str, Any],
                        path: Path) -> None:
    """UserError when the checkpoint was trained with a different model/noise/data/loss."""
    for section, fields in RESUME_FIELDS.items():
        diffs = _differences(saved.get(section) or {}, current.get(section) or {}, section,
                             fields)
        if diffs:
            raise UserError(f"checkpoint {path} was made with a different {section} config: "
                            f"field {'; '.join(diffs)}; use the run's config.yaml, another "
                            "run directory, or --overwrite to start this one afresh")
