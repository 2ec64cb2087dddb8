"""Everything a training run needs before its first step: run directory, data, noise levels,
sampling settings, and the compatibility check of a checkpoint against the config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ncsn.config import Config, TrainingConfig
from ncsn.core.noise import geometric_sigmas, ncsnv2_num_levels, ncsnv2_sigma_max
from ncsn.data import load_dataset, to_float, to_model_space
from ncsn.errors import UserError
from ncsn.files import RUN_MARKER, RunLock, is_run_dir, mark_run_dir, remove_run_dir

AUTO_SIGMA_SUBSET = 5000  # images used for NCSNv2's sigma_1 = max pairwise distance
# config fields a resumed run must share with its checkpoint (others, e.g. n_iters, may change)
RESUME_FIELDS = {
    "model": None, "noise": None, "data": ("name", "image_size", "channels", "dequantize",
                                           "hflip", "logit"),
    "training": ("loss", "anneal_power", "ssm_projection", "ssm_variance_reduced", "batch_size",
                 "seed"),
}


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool,
                    flag: str = "--run-dir") -> None:
    """Refuse to reuse a non-empty run directory unless resuming or told to overwrite it, and
    a run directory another live process is writing; ``overwrite`` deletes only a run directory
    ncsn made (:func:`ncsn.files.remove_run_dir`); messages name ``flag``, the option the user
    passed the directory with."""
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} is a file; pass another {flag}")
    RunLock.check_free(run_dir)
    if not any(run_dir.iterdir()):
        return
    if resume:
        if not (is_run_dir(run_dir) or (run_dir / "config.yaml").is_file()):
            raise UserError(f"--resume: {run_dir} holds no ncsn run (no {RUN_MARKER} nor "
                            "config.yaml); pass the run directory of an earlier run")
        return
    if not overwrite:
        raise UserError(f"run directory {run_dir} already exists; pass --resume to continue it, "
                        f"--overwrite to replace it, or another {flag}")
    remove_run_dir(run_dir, flag)


def claim_run_dir(run_dir: Path) -> RunLock:
    """Create ``run_dir`` (checked by :func:`prepare_run_dir`), mark it as ncsn's and lock it
    for this process."""
    mark_run_dir(run_dir)
    return RunLock.acquire(run_dir)


def check_device_options(training: TrainingConfig, device: torch.device) -> None:
    """Refuse option combinations that would fail or crawl on the first step: bf16 autocast off
    CUDA, and ``compile`` with SSM (its loss differentiates the network twice, which
    torch.compile's aot_autograd does not support: "does not currently support double
    backward")."""
    if training.amp and device.type != "cuda":
        raise UserError("training.amp (bf16) needs a CUDA device; it is far slower on a CPU; "
                        "set training.amp=false")
    if training.compile and training.loss == "ssm":
        raise UserError("training.compile cannot train loss ssm (torch.compile does not support "
                        "the double backward of sliced score matching); set "
                        "training.compile=false or training.loss=dsm")


def load_split(config: Config, split: str) -> Tensor:
    """uint8 images (N, C, H, W) of ``split`` of the configured data set."""
    d = config.data
    return load_dataset(d.name, split, root=d.root, image_size=d.image_size, channels=d.channels,
                        download=d.download)


def sigma_max_sample(config: Config, train_images: Tensor) -> Tensor:
    """The images ``sigma_max: auto`` measures (NCSNv2 technique 1): all of them, or a fixed
    random subset of ``AUTO_SIGMA_SUBSET`` seeded by ``training.seed``, in network space."""
    n = train_images.shape[0]
    if n <= AUTO_SIGMA_SUBSET:
        return to_model_space(to_float(train_images), config.data.logit)
    gen = torch.Generator().manual_seed(config.training.seed)
    subset = train_images[torch.randperm(n, generator=gen)[:AUTO_SIGMA_SUBSET]]
    return to_model_space(to_float(subset), config.data.logit)


def resolve_noise(config: Config, train_images: Tensor) -> tuple[Config, Tensor]:
    """Replace ``"auto"`` noise settings (NCSNv2 techniques 1-2) by numbers; return the sigmas."""
    noise = config.noise
    sigma_max = noise.sigma_max
    if sigma_max == "auto":
        sigma_max = round(ncsnv2_sigma_max(sigma_max_sample(config, train_images)), 4)
    num_levels = noise.num_levels
    if num_levels == "auto":
        dim = int(train_images[0].numel())
        try:
            num_levels = ncsnv2_num_levels(dim, float(sigma_max), noise.sigma_min)
        except ValueError as err:
            raise UserError(f"noise.num_levels: auto: {err}") from None
    resolved = config.model_copy(update={"noise": noise.model_copy(
        update={"sigma_max": float(sigma_max), "num_levels": int(num_levels)})})
    if float(sigma_max) < noise.sigma_min:
        raise UserError(f"noise.sigma_max ({sigma_max}) came out below noise.sigma_min "
                        f"({noise.sigma_min}); set both by hand")
    return resolved, geometric_sigmas(float(sigma_max), noise.sigma_min, int(num_levels))


def check_noise_model(config: Config, net: torch.nn.Module) -> float | None:
    """Check that the network can be trained with the configured noise levels and loss weight;
    returns the sigma_data of the EDM weighting (None for the plain sigma^power weight), the
    data scale of the network's preconditioning."""
    from ncsn.nets.precond import Preconditioned
    from ncsn.nets.registry import accepts_any_sigma

    name = config.model["name"]
    if config.noise.distribution != "discrete" and not accepts_any_sigma(net):
        raise UserError(f"noise.distribution {config.noise.distribution} draws continuous "
                        f"sigmas, but network {name!r} knows only its discrete levels; use "
                        "noise.distribution=discrete or a network such as unet_small or ncsnv2")
    if config.training.weighting == "power":
        return None
    if not isinstance(net, Preconditioned):
        raise UserError(f"training.weighting edm needs the sigma_data of a preconditioned "
                        f"backbone, and network {name!r} is not one; use "
                        "training.weighting=power or a backbone such as unet_small")
    return float(net.sigma_data)


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
