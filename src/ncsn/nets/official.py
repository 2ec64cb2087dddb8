"""Import checkpoints of the official NCSN and NCSNv2 releases (docs/networks.md).

An official NCSN ``checkpoint.pth`` is a list ``[model_state_dict, optimizer_state_dict]``
written by ``torch.save``; with DataParallel the keys start with ``module.``. Our
CondRefineNetDilated uses the official module names, so the mapping is: strip ``module.``, then
check keys and shapes. ermongroup/ncsnv2 saves ``[model, optimizer, epoch, step, ema]`` (the EMA
entry, appended when ``model.ema`` is true, maps parameter names without ``module.`` to their
averages and is what its sampler uses); its network keeps the noise levels as a ``sigmas``
buffer, which is checked against the config and dropped (our NCSNv2 uses the same names
otherwise). Files are read with ``torch.load(weights_only=True)`` (no arbitrary pickles).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import Tensor, nn

from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.nets.checkpoints import check_stored_sigmas, read_torch_file, tensor_state
from ncsn.nets.io import build_from_spec, load_weights, save_model
from ncsn.spec.model import DataSpace, ModelSpec, StoredSampling
from ncsn.spec.samplers import AnnealedLangevin
from ncsn.spec.validation import user_error

WEIGHTS = ("ema", "raw")

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


def load_official_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read an official NCSN checkpoint (a [model, optimizer] list or a bare state dict) safely
    and return the model's state dict without the ``module.`` prefix."""
    obj = read_torch_file(path)
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], Mapping):
        obj = obj[0]
    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"{path} is not an official checkpoint: expected a list "
                        "[model_state_dict, optimizer_state_dict] or a state dict")
    state = tensor_state(obj, path, "the model state dict")
    if "sigmas" in state:
        raise UserError(f"{path} stores a 'sigmas' buffer like an NCSNv2 checkpoint; convert it "
                        "with: ncsn convert CKPT --from official-ncsnv2 --config NAME")
    return state


def load_ncsnv2_state_dict(path: str | Path, weights: str = "ema"
                           ) -> tuple[dict[str, Tensor], Tensor]:
    """Read an ermongroup/ncsnv2 checkpoint safely: (model state dict without ``module.`` and
    ``sigmas``, with the EMA entry's averages unless ``weights="raw"``; the stored sigmas)."""
    if weights not in WEIGHTS:
        raise UserError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    obj = read_torch_file(path)
    if not (isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], Mapping)):
        raise UserError(f"{path} is not an official NCSNv2 checkpoint: expected the list "
                        "[model, optimizer, epoch, step, ema] that ncsnv2 saves")
    state = tensor_state(obj[0], path, "its model entry (the first)")
    if weights == "ema":
        if len(obj) < 5 or not isinstance(obj[-1], Mapping):
            raise UserError(f"{path} holds no EMA weights (a list of {len(obj)} entries; ncsnv2 "
                            "appends them as the 5th when model.ema is true); use --weights raw")
        ema = tensor_state(obj[-1], path, "its EMA entry (the last)")
        unknown = [k for k in ema if k not in state or k == "sigmas"]
        if unknown:
            raise UserError(f"{path}: the EMA entry names parameters the model lacks: "
                            f"{', '.join(unknown[:8])}")
        state.update(ema)
    sigmas = state.pop("sigmas", None)
    if sigmas is None:
        raise UserError(f"{path} stores no 'sigmas' buffer, which every NCSNv2 network keeps; "
                        "for an NCSN (v1) checkpoint use --from official-ncsn")
    return state, sigmas


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


def load_official_ncsnv2(checkpoint: str | Path, spec: ModelSpec,
                         weights: str = "ema") -> nn.Module:
    """The network described by ``spec`` with an official NCSNv2 checkpoint's EMA (default) or
    raw weights (eval mode), after checking its stored sigmas against ``spec.sigmas``."""
    state, sigmas = load_ncsnv2_state_dict(checkpoint, weights)
    check_stored_sigmas(sigmas, spec.sigmas, f"checkpoint {checkpoint}")
    net = build_from_spec(spec)
    load_weights(net, state, f"checkpoint {checkpoint}")
    return net.eval()


def convert_official(checkpoint: str | Path, out: str | Path, spec: ModelSpec) -> Path:
    """Convert an official checkpoint to our model files at ``out`` (``.safetensors`` + ``.json``
    spec); returns the written ``.safetensors`` path."""
    return save_model(out, load_official(checkpoint, spec), spec)
