"""Models shipped inside the package: ``pretrained:NAME`` (``ncsn.load("pretrained:mnist5k")``,
``ncsn sample pretrained:mnist5k ...``) names ``<stem>.safetensors`` + ``<stem>.json`` in
``ncsn/nets/pretrained_models/``. Each spec's provenance holds the config, the commit and the
command that trained it, its measured quality and the SHA-256 of its weights (checked on load,
:func:`ncsn.nets.io.check_weights_hash`). ``ncsn pretrained`` lists them."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from ncsn.errors import UserError

PRETRAINED_PREFIX = "pretrained:"


def pretrained_dir() -> Path:
    """The folder of the shipped models."""
    return Path(str(importlib.resources.files("ncsn.nets").joinpath("pretrained_models")))


def pretrained_names() -> list[str]:
    """Names of the shipped models, sorted."""
    return sorted(p.stem for p in pretrained_dir().glob("*.json"))


def pretrained_stem(name: str) -> Path:
    """The file stem of the shipped model ``name`` (UserError listing the names otherwise)."""
    stem = pretrained_dir() / name
    if not name or "/" in name or not stem.with_suffix(".json").is_file():
        shipped = ", ".join(pretrained_names()) or "none in this installation"
        raise UserError(f"no pretrained model {name!r}; shipped: {shipped} (ncsn pretrained "
                        "lists them)")
    return stem


def pretrained_summary(name: str) -> dict[str, Any]:
    """The provenance record of a shipped model (what trained it, its quality), unchecked."""
    record = json.loads(pretrained_stem(name).with_suffix(".json").read_text())
    return dict(record.get("provenance") or {})
