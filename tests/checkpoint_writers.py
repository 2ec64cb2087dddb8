"""Randomised checkpoints in the real third-party formats, written the way their code writes
them (facts in src/ncsn/nets/score_sde.py and official.py), for the import tests."""

from __future__ import annotations

import math
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ncsn.nets.ncsnpp import NCSNpp

TINY_NCSNPP: dict[str, Any] = {"nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
                               "attn_resolutions": [4]}
TINY_YAML = ("data: {name: folder, image_size: 8, channels: 3}\n"
             "model: {name: ncsnpp, nf: 8, ch_mult: [1, 2], num_res_blocks: 1, "
             "attn_resolutions: [4]}\n"
             "noise: {distribution: log_uniform, sigma_max: SIGMA_MAX, sigma_min: 0.01, "
             "num_levels: 1000}\n"
             "sampling: {sampler: predictor_corrector, snr: 0.16}\n")


def tiny_config(tmp_path: Path, sigma_max: float = 50.0, name: str = "tiny.yaml") -> Path:
    """A config for an 8x8 NCSN++ (CIFAR-10 structure at nf 8, two resolutions)."""
    path = tmp_path / name
    path.write_text(TINY_YAML.replace("SIGMA_MAX", str(sigma_max)))
    return path


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """``net`` with every tensor redrawn (the init has zero biases and ~1e-10 layers)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("all_modules.0.W"):
                continue
            fan_in = math.prod(t.shape[1:]) if t.dim() > 1 else 10
            t.copy_(torch.randn(t.shape, generator=gen) / math.sqrt(fan_in))
    return net


def tiny_ncsnpp(seed: int = 0) -> NCSNpp:
    torch.manual_seed(seed)
    return randomised(NCSNpp(channels=3, image_size=8, **TINY_NCSNPP), seed).eval()


def write_score_sde_checkpoint(path: Path, net: nn.Module, *, sigma_max: float = 50.0,
                               num_scales: int = 1000, ema_offset: float = 0.5) -> list[Any]:
    """A score_sde ``checkpoint_N.pth`` of ``net``: DataParallel keys with the float64 sigmas
    buffer first, an EMA whose shadows are the trainable parameters + ``ema_offset``, and an
    Adam state whose warm-up lr is a numpy float64. Returns the shadow list."""
    model: OrderedDict[str, torch.Tensor] = OrderedDict()
    model["module.sigmas"] = torch.tensor(np.exp(np.linspace(
        np.log(sigma_max), np.log(0.01), num_scales)))
    model.update((f"module.{k}", v.clone()) for k, v in net.state_dict().items())
    trainable = [p for p in net.parameters() if p.requires_grad]
    shadow = [p.detach().clone() + ema_offset for p in trainable]
    optimizer = torch.optim.Adam(trainable, lr=2e-4)
    for group in optimizer.param_groups:
        group["lr"] = 2e-4 * np.minimum(7 / 5000, 1.0)
    torch.save({"optimizer": optimizer.state_dict(), "model": model,
                "ema": {"decay": 0.999, "num_updates": 7, "shadow_params": shadow},
                "step": 7}, path)
    return shadow


def as_numpy1_file(src: Path, dst: Path) -> Path:
    """``src`` rewritten as numpy 1 pickles it (``numpy.core`` instead of ``numpy._core``)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
            zout.writestr(name, data)
    return dst


class RunsCommand:
    """An object whose unpickling would run a shell command (a malicious checkpoint)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return os.system, (self.command,)
