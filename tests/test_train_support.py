"""Shared tiny training setup for the trainer tests (8x8 digits, a 4-channel UNetSmall) and a
launcher of ``ncsn`` commands as gloo ranks; no tests here, only helpers other modules import."""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from ncsn.config import Config, validate_config
from ncsn.training import Trainer, list_checkpoints, load_checkpoint

KILLED_PID = 4_194_305  # above Linux's largest pid: a temporary file's writer that is gone

TINY: dict[str, Any] = {
    "data": {"name": "digits8"},
    "model": {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2},
    "noise": {"sigma_max": 1.0, "sigma_min": 0.05, "num_levels": 4},
    "training": {"batch_size": 8, "n_iters": 8, "snapshot_freq": 4, "log_freq": 2,
                 "ema_rate": 0.9, "device": "cpu"},
    "sampling": {"n_steps_each": 2, "num_samples": 4, "step_size": "auto",
                 "final_denoise": True},
}


def tiny_raw(**sections: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(TINY)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def tiny_config(**sections: dict[str, Any]) -> Config:
    return validate_config(tiny_raw(**sections))


def final_state(run_dir: Path) -> dict[str, Any]:
    """The latest checkpoint of ``run_dir``."""
    return load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1][1])


def assert_same_training_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Bit-exact equality of weights, EMA weights and Adam moments."""
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for pid, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][name]), f"adam {pid}.{name}"


def write_image_folder(root: Path, n_train: int = 48, n_test: int = 16, size: int = 8) -> Path:
    """A deterministic folder data set (train/ and test/ PNGs): loads without scikit-learn, so
    subprocess tests start fast."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        pixels = (torch.rand(n, size, size, generator=gen) * 255).to(torch.uint8).numpy()
        for k in range(n):
            Image.fromarray(pixels[k], mode="L").save(root / split / f"{k:03d}.png")
    return root


def folder_raw(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """``tiny_raw`` on an image folder written by :func:`write_image_folder`."""
    raw = tiny_raw(**sections)
    raw["data"] = {"name": "folder", "root": str(root), "channels": 1}
    return raw


def free_port() -> int:
    """A TCP port that is free now (for a test's process group)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_rank(rank: int, argvs: list[list[str]], port: int, report: str) -> None:
    from ncsn.cli import main

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(len(argvs))})
    torch.set_num_threads(1)
    with open(Path(report, f"rank{rank}.out"), "w") as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):
        code = main(argvs[rank])
    Path(report, f"rank{rank}").write_text(str(code))


def run_ranks(argvs: list[list[str]], report: Path, timeout: float = 120) -> list[tuple[int, str]]:
    """Run ``ncsn argvs[r]`` as gloo rank r of ``len(argvs)`` processes, as torchrun would (none
    may hang); each rank's exit code and what it printed (files in ``report``)."""
    report.mkdir()
    ctx = mp.spawn(_cli_rank, args=(argvs, free_port(), str(report)), nprocs=len(argvs),
                   join=False)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):  # True once all ended
        assert time.monotonic() < deadline, "a rank did not finish in time"
    return [(int((report / f"rank{r}").read_text()), (report / f"rank{r}.out").read_text())
            for r in range(len(argvs))]


def record_steps(monkeypatch: Any) -> list[int]:
    """The step each ``Trainer.train_step`` call starts from, from now on in this process: a
    resume that silently restarted at step 0 (and happened to end in the same state) shows."""
    steps: list[int] = []
    real_step = Trainer.train_step

    def recorded(self: Trainer) -> float:
        steps.append(self.step)
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", recorded)
    return steps
