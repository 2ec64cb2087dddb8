"""The Python API: load a model, then sample, inpaint or evaluate its score; train from a config.

    import ncsn

    model = ncsn.load("runs/demo")
    images = model.sample(16, sampler="dpm_solver_2m", nfe=20)   # (16, C, H, W) in [0, 1]
    ncsn.save_grid(images, "samples.png")

``load`` and :class:`ScoreModel` live in :mod:`ncsn.sampling.model`: ``ncsn sample``,
``ncsn inpaint`` and ``ncsn evaluate --model`` are built on the same object, so the same seed
and settings give the same images as the command line.
Mistakes in the arguments raise :class:`ncsn.errors.UserError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ncsn.config import Config, apply_overrides, config_to_dict, load_config, validate_config
from ncsn.errors import UserError
from ncsn.sampling.model import ScoreModel, load
from ncsn.training.trainer import TrainResult
from ncsn.training.trainer import train as train_config

__all__ = ["ScoreModel", "load", "resolve_config", "train"]

def resolve_config(config: Config | Mapping[str, Any] | str | Path,
                   overrides: Sequence[str] = ()) -> Config:
    """A validated config from a :class:`~ncsn.config.Config`, a plain mapping of sections, a
    YAML file or a packaged config name (``ncsn configs``), with ``key.sub=value`` overrides
    (values parsed as YAML, as ``ncsn train --set``)."""
    if isinstance(overrides, str):
        raise UserError(f"overrides must be a list of 'key=value' strings, got the string "
                        f"{overrides!r}; wrap it in a list")
    if isinstance(config, str | Path):
        return load_config(config, overrides)
    if isinstance(config, Config):
        return validate_config(apply_overrides(config_to_dict(config), overrides))
    if isinstance(config, Mapping):
        return validate_config(apply_overrides(config, overrides))
    raise UserError(f"config must be a Config, a mapping, a YAML path or a packaged config name, "
                    f"got {type(config).__name__}")


def train(config: Config | Mapping[str, Any] | str | Path, run_dir: str | Path, *,
          overrides: Sequence[str] | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> TrainResult:
    """Train a score network as ``ncsn train`` does: ``config`` is a Config, a mapping, a YAML
    file or a packaged config name (``"mnist5k_cpu"``), changed by ``overrides`` such as
    ``["training.n_iters=300"]``. ``run_dir`` receives config.yaml, checkpoints, metrics.jsonl
    and the model files (``load(run_dir)`` reads them). ``resume`` continues from the latest
    checkpoint (pass the run's ``config.yaml``); ``overwrite`` starts an existing ``run_dir``
    afresh. The top-level ``ncsn.train``."""
    return train_config(resolve_config(config, overrides or ()), run_dir, resume=resume,
                        overwrite=overwrite, progress=progress)
