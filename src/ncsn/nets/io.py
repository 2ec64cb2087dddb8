"""Self-describing model files: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (the
:class:`~ncsn.spec.model.ModelSpec`: network section, image shape, noise levels, data space,
stored sampling choice; all that is needed to rebuild the network and sample from it).

The spec records the SHA-256 of the weights file it was written with (``provenance``
``weights_sha256``); loading checks it, so a truncated, corrupt or swapped weights file is a
one-line error. ``pretrained:NAME`` names a model shipped inside the package
(:mod:`ncsn.nets.pretrained`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from ncsn import files
from ncsn.errors import UserError
from ncsn.nets.pretrained import PRETRAINED_PREFIX, pretrained_stem
from ncsn.nets.registry import build_network, check_network_section
from ncsn.spec.model import ModelSpec

MAX_LISTED = 8
HASH_KEY = "weights_sha256"

def _listing(keys: list[str]) -> str:
    more = f" (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def load_weights(net: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Copy ``state`` into ``net`` after checking that keys and shapes match exactly.

    A UserError from ``source`` names the missing, unexpected and wrongly shaped keys.
    """
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes (file vs network): {_listing(wrong)}")
    if problems:
        raise UserError(f"{source} does not fit the configured network; " + "; ".join(problems)
                        + "; check the network section, channels, image size and noise levels")
    net.load_state_dict(dict(state), strict=True)


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def save_model(path: str | Path, net: nn.Module, spec: ModelSpec) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically (a link at either name is
    replaced, not followed); returns the .safetensors path."""
    stem = _stem(path)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    data = safetensors_bytes(weights, metadata={"format": "pt"})
    weights_path = files.write_bytes(stem.with_suffix(".safetensors"), data)
    provenance = {**spec.provenance, HASH_KEY: hashlib.sha256(data).hexdigest()}
    files.write_json(stem.with_suffix(".json"),
                     spec.model_copy(update={"provenance": provenance}).to_json())
    return weights_path


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights_hash(weights_path: Path, spec: ModelSpec) -> None:
    """UserError when the spec records a weights hash and the file's differs."""
    expected = spec.provenance.get(HASH_KEY)
    if expected is None:
        return
    try:
        found = file_sha256(weights_path)
    except OSError as err:
        raise UserError(f"cannot read weights {weights_path}: {err.strerror}") from None
    if found != expected:
        raise UserError(f"weights {weights_path} do not match their spec (SHA-256 {found[:12]}, "
                        f"recorded {str(expected)[:12]}): the file is corrupt, truncated or "
                        "from another model; restore or re-create it")


def resolve_model_path(path: str | Path) -> Path:
    """The model stem for a .safetensors/.json file, their stem, a run directory (``model_ema``
    preferred over ``model``) or ``pretrained:NAME``."""
    if str(path).startswith(PRETRAINED_PREFIX):
        return pretrained_stem(str(path)[len(PRETRAINED_PREFIX):])
    path = Path(path)
    if path.is_dir():
        for name in ("model_ema", "model"):
            if (path / f"{name}.safetensors").is_file():
                return path / name
        raise UserError(f"run directory {path} holds no model_ema.safetensors or "
                        "model.safetensors; train first or pass a model file")
    stem = _stem(path)
    for suffix in (".safetensors", ".json"):
        if not stem.with_suffix(suffix).is_file():
            raise UserError(f"model file {stem.with_suffix(suffix)} not found; a model is a "
                            ".safetensors file with a .json spec beside it")
    return stem


def read_spec(path: str | Path) -> ModelSpec:
    """Read and check a model's JSON spec, of any form ncsn wrote, and its network section
    (UserError naming the file when unreadable, incomplete or out of bounds)."""
    json_path = _stem(path).with_suffix(".json")
    try:
        raw = files.parse_json(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read model spec {json_path}: {err}") from err
    source = f"model spec {json_path}"
    spec = ModelSpec.from_json(raw, source)
    check_network_section(spec.network, f"{source}: network")
    return spec


def build_from_spec(spec: ModelSpec) -> nn.Module:
    """The (untrained) network a spec describes."""
    return build_network(spec.network, channels=spec.channels, image_size=spec.image_size,
                         sigmas=spec.sigma_tensor())


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a network from its model file(s) and load its weights; returns (net, spec).

    ``path``: the .safetensors, the .json, their common stem, or a run directory. The network
    is in eval mode on ``device``.
    """
    stem = resolve_model_path(path)
    spec = read_spec(stem)
    net = build_from_spec(spec)
    weights_path = stem.with_suffix(".safetensors")
    check_weights_hash(weights_path, spec)
    try:
        state = load_file(str(weights_path))
    except (OSError, SafetensorError) as err:
        raise UserError(f"cannot read weights {weights_path}: {err}") from err
    check_float_tensors(net, state, weights_path)
    load_weights(net, state, str(weights_path))
    return net.to(device).eval(), spec


def check_float_tensors(net: nn.Module, state: Mapping[str, Tensor], source: Path) -> None:
    """UserError when a weights file holds integer or boolean tensors where ``net`` has
    floating-point ones (loading would cast them silently)."""
    expected = net.state_dict()
    wrong = [f"{k} ({v.dtype})".replace("torch.", "") for k, v in state.items()
             if k in expected and expected[k].is_floating_point() and not v.is_floating_point()]
    if wrong:
        raise UserError(f"weights {source} hold non-float tensors: {_listing(wrong)}; a model "
                        "file holds floating-point weights only (was it written by another "
                        "program?)")
