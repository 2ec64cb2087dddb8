"""Read and write diffusers VE pipeline folders (``model_index.json``, ``unet/`` or ``model/``
with ``config.json`` and ``diffusion_pytorch_model.safetensors`` or a ``.bin`` read with
``weights_only=True``, ``scheduler/scheduler_config.json`` of a ``ScoreSdeVeScheduler``).
The key and config mapping is :mod:`ncsn.nets.diffusers_format`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from ncsn import files
from ncsn.errors import UserError
from ncsn.nets.checkpoints import read_torch_file, tensor_state
from ncsn.nets.diffusers_format import (
    from_diffusers_state,
    section_from_unet_config,
    to_diffusers_state,
    unet_config_from_net,
)
from ncsn.nets.io import build_from_spec, load_weights
from ncsn.nets.ncsnpp import NCSNpp
from ncsn.nets.registry import network_fields
from ncsn.spec.model import ModelSpec
from ncsn.spec.samplers import PredictorCorrector

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# ScoreSdeVeScheduler's constructor defaults (diffusers 0.42).
SCHEDULER_DEFAULTS: dict[str, Any] = {"num_train_timesteps": 2000, "snr": 0.15,
                                      "sigma_min": 0.01, "sigma_max": 1348.0,
                                      "sampling_eps": 1e-5, "correct_steps": 1}


@dataclass(frozen=True)
class DiffusersModel:
    """What a folder holds: our network section, image size, weights (diffusers' names) and
    the scheduler's settings (None without a scheduler)."""

    network: dict[str, Any]
    image_size: int
    state: dict[str, Tensor]
    scheduler: dict[str, Any] | None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = files.parse_json(path.read_text())
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object")
    return value


def _component(folder: Path, index: Mapping[str, Any], class_name: str,
               fallbacks: tuple[str, ...]) -> Path | None:
    """The subfolder ``model_index.json`` names for ``class_name``, else the first fallback
    folder that exists."""
    for name, value in index.items():
        if isinstance(value, list) and value[-1:] == [class_name]:
            return folder / name
    return next((folder / n for n in fallbacks if (folder / n).is_dir()), None)


def _read_weights(unet: Path) -> dict[str, Tensor]:
    for name in WEIGHT_FILES:
        path = unet / name
        if not path.is_file():
            continue
        if name.endswith(".bin"):
            return tensor_state(read_torch_file(path), path, "the weights")
        try:
            return load_file(str(path))
        except (OSError, SafetensorError) as err:
            raise UserError(f"cannot read weights {path}: {err}") from err
    raise UserError(f"{unet} holds no {' or '.join(WEIGHT_FILES)}")


def read_diffusers_folder(folder: str | Path) -> DiffusersModel:
    """Read a diffusers VE folder safely (UserError for anything missing, corrupt or outside
    the NCSN++ variant diffusers expresses)."""
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise UserError(f"{folder} is not a diffusers folder: it has no model_index.json")
    index = _read_json(folder / "model_index.json")
    unet = _component(folder, index, "UNet2DModel", ("unet", "model"))
    if unet is None or not (unet / "config.json").is_file():
        raise UserError(f"{folder}: no UNet2DModel folder (unet/ or model/ with config.json)")
    raw = _read_json(unet / "config.json")
    if raw.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise UserError(f"{unet / 'config.json'}: _class_name is {raw['_class_name']!r}, "
                        "not UNet2DModel")
    section, size = section_from_unet_config(raw, str(unet / "config.json"))
    sched_dir = _component(folder, index, "ScoreSdeVeScheduler", ("scheduler",))
    scheduler = None
    if sched_dir is not None and (sched_dir / "scheduler_config.json").is_file():
        given = _read_json(sched_dir / "scheduler_config.json")
        if given.get("_class_name", "ScoreSdeVeScheduler") != "ScoreSdeVeScheduler":
            raise UserError(f"{sched_dir}: a {given['_class_name']}, not the VE "
                            "ScoreSdeVeScheduler; this is not a VE (NCSN++) pipeline")
        scheduler = {**SCHEDULER_DEFAULTS, **{k: given[k] for k in SCHEDULER_DEFAULTS
                                               if k in given}}
    return DiffusersModel(section, size, _read_weights(unet), scheduler)


def diffusers_config(model: DiffusersModel) -> dict[str, Any]:
    """Our raw config (data, model, noise, sampling sections) for a folder with a scheduler:
    its sigma range and step count as the levels, its predictor-corrector settings."""
    if model.scheduler is None:
        raise UserError("the diffusers folder has no scheduler/scheduler_config.json; pass "
                        "--config NAME for its noise levels and sampling")
    s = model.scheduler
    return {"data": {"name": "folder", "image_size": model.image_size, "channels": 3},
            "model": model.network,
            "noise": {"distribution": "log_uniform", "sigma_max": float(s["sigma_max"]),
                      "sigma_min": float(s["sigma_min"]),
                      "num_levels": int(s["num_train_timesteps"])},
            "sampling": {"sampler": "predictor_corrector", "snr": float(s["snr"]),
                         "n_corrector": int(s["correct_steps"])}}


def check_same_network(ours: Mapping[str, Any], theirs: Mapping[str, Any], source: str) -> None:
    """UserError naming the first field where two network sections differ (defaults filled)."""
    fields = network_fields(str(ours.get("name")))
    if ours.get("name") != theirs.get("name"):
        raise UserError(f"{source}: the config's model is {ours.get('name')!r}, the folder's "
                        f"{theirs.get('name')!r}")
    for field, default in fields.items():
        a, b = ours.get(field, default), theirs.get(field, default)
        if (list(a) if isinstance(a, (list, tuple)) else a) != (
                list(b) if isinstance(b, (list, tuple)) else b):
            raise UserError(f"{source}: the config has model.{field} = {a!r} but the diffusers "
                            f"model has {b!r}; use a config that matches it (or none)")


def load_diffusers(model: DiffusersModel, spec: ModelSpec, source: str) -> nn.Module:
    """The network ``spec`` describes, with the folder's weights (eval mode)."""
    check_same_network(spec.network, model.network, source)
    net = build_from_spec(spec)
    load_weights(net, from_diffusers_state(net, model.state), source)
    return net.eval()


def write_diffusers_folder(out: str | Path, net: nn.Module, spec: ModelSpec) -> Path:
    """Write an NCSN++ model as a diffusers ScoreSdeVePipeline folder at ``out`` (which must
    not exist or be empty); the scheduler gets the model's sigma range and level count and,
    for a predictor-corrector default, its snr and corrector steps."""
    if not isinstance(net, NCSNpp):
        raise UserError(f"only NCSN++ models export to diffusers; this is network "
                        f"{spec.network.get('name')!r}")
    config = unet_config_from_net(net, spec.image_size, spec.channels)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty folder; choose a new one")
    sigmas = list(spec.sigmas)
    stored = spec.sampling.settings
    pc = stored if isinstance(stored, PredictorCorrector) else PredictorCorrector()
    scheduler = {"_class_name": "ScoreSdeVeScheduler", "num_train_timesteps": len(sigmas),
                 "snr": pc.snr, "sigma_min": min(sigmas), "sigma_max": max(sigmas),
                 "sampling_eps": SCHEDULER_DEFAULTS["sampling_eps"],
                 "correct_steps": pc.n_corrector}
    index = {"_class_name": "ScoreSdeVePipeline", "scheduler": ["diffusers",
                                                               "ScoreSdeVeScheduler"],
             "unet": ["diffusers", "UNet2DModel"]}
    with files.atomic_dir(out) as tmp:  # the folder appears whole or not at all
        files.write_bytes(tmp / "unet" / WEIGHT_FILES[0],
                          safetensors_bytes(to_diffusers_state(net), metadata={"format": "pt"}))
        for path, value in ((tmp / "unet" / "config.json", config),
                            (tmp / "scheduler" / "scheduler_config.json", scheduler),
                            (tmp / "model_index.json", index)):
            files.write_json(path, value)
    return out
