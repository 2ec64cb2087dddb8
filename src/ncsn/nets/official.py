"""Import checkpoints of the official NCSN release (CondRefineNetDilated, docs/networks.md).

An official ``checkpoint.pth`` is a list ``[model_state_dict, optimizer_state_dict]`` written by
``torch.save``; with DataParallel the keys start with ``module.``. Our CondRefineNetDilated uses
the official module names, so the mapping is: strip ``module.``, then check keys and shapes.
Files are read with ``torch.load(weights_only=True)`` (no arbitrary pickles).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError, weights_only_load_reason
from ncsn.nets.io import build_from_spec, load_weights, save_model
from ncsn.spec.model import DataSpace, ModelSpec, StoredSampling
from ncsn.spec.samplers import AnnealedLangevin
from ncsn.spec.validation import user_error

PREFIX = "module."

# The official configs (anneal.yml): 10 geometric levels 1 -> 0.01 and these sizes.
OFFICIAL_PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {"ngf": 64, "channels": 1, "image_size": 28},
    "cifar10": {"ngf": 128, "channels": 3, "image_size": 32},
    "celeba": {"ngf": 128, "channels": 3, "image_size": 32},
}
OFFICIAL_SIGMAS = {"sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10}
# The official runner draws its samples with annealed Langevin dynamics, T = 100 steps per level,
# step_lr = 2e-5 in its own convention (x + a s + sqrt(2a) z, a = step_lr sigma_i^2 / sigma_L^2):
# paper-convention eps = 4e-5, twice the 2e-5 of the paper's text (docs/core.md). Converted
# checkpoints sample the same way.
OFFICIAL_SAMPLING = StoredSampling(settings=AnnealedLangevin(
    n_steps_each=100, step_size=2e-5, convention="official", final_denoise=False))


def strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the DataParallel ``module.`` prefix from every key that has it."""
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


def load_official_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read an official checkpoint (a [model, optimizer] list or a bare state dict) safely and
    return the model's state dict without the ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError,
            ValueError) as err:
        raise UserError(f"cannot read {path} as a weights-only torch checkpoint: "
                        f"{weights_only_load_reason(err)}") from err
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], Mapping):
        obj = obj[0]
    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"{path} is not an official checkpoint: expected a list "
                        "[model_state_dict, optimizer_state_dict] or a state dict")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise UserError(f"{path}: the model state dict holds non-tensor entries: "
                        f"{', '.join(not_tensors[:8])}")
    return strip_prefix(obj)


def official_spec(preset: str, *, logit: bool = False, **overrides: Any) -> ModelSpec:
    """A model spec for an official checkpoint: the preset's sizes, 10 levels 1 -> 0.01, the
    official sampler (:data:`OFFICIAL_SAMPLING`); ``overrides`` (ngf, channels, image_size,
    sigma_max, sigma_min, num_levels) that are not None replace preset values. ``logit``: the
    checkpoint was trained with the official ``logit_transform`` (its network then takes logits
    as they are, without the 2x - 1 rescaling, and samples are mapped back through a sigmoid)."""
    if preset not in OFFICIAL_PRESETS:
        raise UserError(f"unknown preset {preset!r}; allowed: {', '.join(OFFICIAL_PRESETS)}")
    values = {**OFFICIAL_PRESETS[preset], **OFFICIAL_SIGMAS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(OFFICIAL_PRESETS[preset]) - set(OFFICIAL_SIGMAS))
    if unknown:
        raise ValueError(f"unknown override(s): {', '.join(unknown)}")
    try:
        sigmas = geometric_sigmas(values["sigma_max"], values["sigma_min"], values["num_levels"])
    except ValueError as err:
        raise UserError(f"bad noise levels: {err}") from err
    network: dict[str, Any] = {"name": "cond_refinenet", "ngf": int(values["ngf"])}
    if logit:
        network["logit_input"] = True
    try:
        return ModelSpec(network=network, channels=int(values["channels"]),
                         image_size=int(values["image_size"]), sigmas=tuple(sigmas.tolist()),
                         data=DataSpace(logit=logit), sampling=OFFICIAL_SAMPLING,
                         provenance={"source": "official NCSN checkpoint"})
    except ValidationError as err:
        raise user_error(err, "official checkpoint spec: ") from None


def load_official(checkpoint: str | Path, spec: ModelSpec) -> nn.Module:
    """The network described by ``spec`` with an official checkpoint's weights (eval mode);
    a UserError names the offending keys when the checkpoint does not fit."""
    state = load_official_state_dict(checkpoint)
    net = build_from_spec(spec)
    load_weights(net, state, f"checkpoint {checkpoint}")
    return net.eval()


def convert_official(checkpoint: str | Path, out: str | Path, spec: ModelSpec) -> Path:
    """Convert an official checkpoint to our model files at ``out`` (``.safetensors`` + ``.json``
    spec); returns the written ``.safetensors`` path."""
    return save_model(out, load_official(checkpoint, spec), spec)
