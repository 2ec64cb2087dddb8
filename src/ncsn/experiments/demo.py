"""``ncsn demo``: train UNetSmall on the embedded 5,000 MNIST digits on a CPU, sample with
annealed Langevin dynamics (+ NCSNv2's final denoising step) and write a sample grid, a loss curve
and the metrics into one run directory. The recipe is ``DEMO_CONFIG`` (= configs/mnist5k_cpu.yaml).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ncsn.config import Config, load_config, validate_config
from ncsn.errors import UserError
from ncsn.imageio import save_grid
from ncsn.nets.io import load_model
from ncsn.train import plot_loss_curve, train
from ncsn.train.periodic import sample_images

DEMO_CONFIG: dict[str, Any] = {
    "data": {"name": "mnist5k", "dequantize": True},
    "model": {"name": "unet_small", "ngf": 16, "ch_mult": [1, 2, 4]},
    "noise": {"sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10},
    "training": {"batch_size": 64, "n_iters": 1500, "lr": 2e-3, "ema_rate": 0.995,
                 "snapshot_freq": 500, "keep_last": 2, "log_freq": 25, "test_freq": 250,
                 "device": "cpu", "threads": 1, "seed": 0},
    "sampling": {"n_steps_each": 100, "step_size": 4e-5, "convention": "paper",
                 "final_denoise": True, "num_samples": 64},
}
# a seconds-long end-to-end run for tests (--quick): a tiny net, a few steps and Langevin steps
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "model": {"ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2},
    "training": {"batch_size": 16, "n_iters": 6, "snapshot_freq": 3, "log_freq": 2,
                 "test_freq": 3, "test_batch_size": 32},
    "sampling": {"n_steps_each": 2, "num_samples": 16},
}


@dataclass
class DemoResult:
    """Paths and timings of one demo run."""

    run_dir: Path
    grid: Path
    loss_curve: Path
    metrics: Path
    train_seconds: float
    sample_seconds: float


def demo_config(*, steps: int | None = None, quick: bool = False) -> Config:
    """The demo recipe, optionally tiny (``quick``) and/or with ``steps`` training steps."""
    raw = copy.deepcopy(DEMO_CONFIG)
    if quick:
        for section, values in QUICK_OVERRIDES.items():
            raw[section].update(values)
    if steps is not None:
        raw["training"]["n_iters"] = steps
    return validate_config(raw, source="demo config")


def run_demo(out_dir: str | Path, *, steps: int | None = None, quick: bool = False,
             overwrite: bool = False, progress: bool = True) -> DemoResult:
    """Train, sample, and write ``samples.png``, ``loss.png``, ``metrics.jsonl``, ``demo.json``.

    An existing ``out_dir`` is resumed from its latest checkpoint (a finished run is only sampled
    again) unless ``overwrite`` starts afresh.
    """
    out_dir = Path(out_dir)
    began = time.perf_counter()
    resume = not overwrite and out_dir.is_dir() and any(out_dir.iterdir())
    if resume and not (out_dir / "config.yaml").is_file():
        raise UserError(f"{out_dir} is not empty and holds no run (no config.yaml); choose another "
                        "--out, or --overwrite to replace its contents")
    train(demo_config(steps=steps, quick=quick), out_dir, resume=resume, overwrite=overwrite,
          progress=progress)
    train_seconds = time.perf_counter() - began
    config = load_config(out_dir / "config.yaml")
    net, spec = load_model(out_dir)
    sigmas = torch.tensor(spec["sigmas"])
    n = config.sampling.num_samples
    bar = tqdm(total=sigmas.numel() * config.sampling.n_steps_each, unit="step",
               desc="sample", disable=not progress, dynamic_ncols=True)
    began = time.perf_counter()
    samples = sample_images(net, config, sigmas, n, spec["channels"], spec["image_size"],
                            torch.Generator().manual_seed(config.training.seed), net_device(net),
                            callback=lambda info: bar.update(1))
    bar.close()
    sample_seconds = time.perf_counter() - began
    grid = save_grid(samples, out_dir / "samples.png", nrow=8, scale=3)
    curve = plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss.png")
    summary = {"train_seconds": round(train_seconds, 1), "sample_seconds": round(sample_seconds, 1),
               "steps": config.training.n_iters, "num_samples": n,
               "network_evaluations": int(sigmas.numel()) * config.sampling.n_steps_each
               + int(config.sampling.final_denoise),
               "grid": grid.name, "loss_curve": curve.name}
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return DemoResult(out_dir, grid, curve, out_dir / "metrics.jsonl", train_seconds,
                      sample_seconds)


def net_device(net: torch.nn.Module) -> torch.device:
    """The device holding ``net``'s parameters."""
    return next(net.parameters()).device
