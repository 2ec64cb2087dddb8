"""``ncsn demo``: train the packaged CPU recipe ``mnist5k_cpu`` (configs/mnist5k_cpu.yaml) on the
embedded 5,000 MNIST digits, sample with the model's default sampler through
:mod:`ncsn.sampling` (any other sampler or budget on request), score the digits with the
classifier of :mod:`ncsn.eval.digits`, and write a sample grid, a loss curve and the metrics into
one run directory.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ncsn import files
from ncsn.api import load
from ncsn.config import Config, load_config
from ncsn.errors import UserError
from ncsn.imageio import save_grid
from ncsn.training import plot_loss_curve, train

DEMO_CONFIG = "mnist5k_cpu"
# a seconds-long end-to-end run for tests (--quick): a tiny net, a few steps, a few evaluations
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "model": {"ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2},
    "training": {"batch_size": 16, "n_iters": 6, "snapshot_freq": 3, "log_freq": 2,
                 "test_freq": 3, "test_batch_size": 32},
    "sampling": {"nfe": 5, "eta": None, "num_samples": 16},
}


@dataclass
class DemoResult:
    """Paths, timings, the sampling plan and the digit scores of one demo run."""

    run_dir: Path
    grid: Path
    loss_curve: Path
    metrics: Path
    train_seconds: float
    sample_seconds: float
    plan: str
    digits: dict[str, Any] = field(default_factory=dict)


def demo_config(*, steps: int | None = None, quick: bool = False) -> Config:
    """The demo recipe (the packaged ``mnist5k_cpu``), optionally tiny (``quick``) and/or with
    ``steps`` training steps."""
    overrides = [f"{section}.{key}={json.dumps(value)}"  # JSON values are YAML
                 for section, values in QUICK_OVERRIDES.items() for key, value in values.items()
                 ] if quick else []
    if steps is not None:
        overrides.append(f"training.n_iters={steps}")
    return load_config(DEMO_CONFIG, overrides)


def _digit_scores(images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, Any]:
    """The digit metric's summary for the demo's samples (empty for too few images); with the
    ``labels`` a class-conditional model drew, also the share drawn as the asked digit."""
    from ncsn.eval.digits import digit_metrics

    if images.shape[0] < 2:
        return {}
    scores = digit_metrics(images, labels=labels)
    return {k: scores[k] for k in ("digit_confident", "digit_classes", "digit_balance",
                                   "digit_kid", "digit_kid_std", "digit_asked") if k in scores}


def run_demo(out_dir: str | Path, *, steps: int | None = None, quick: bool = False,
             overwrite: bool = False, progress: bool = True, sampler: str | None = None,
             nfe: int | None = None, schedule: str | None = None,
             settings: dict[str, Any] | None = None) -> DemoResult:
    """Train, sample, and write ``samples.png``, ``loss.png``, ``metrics.jsonl``, ``demo.json``.

    An existing ``out_dir`` is resumed from its latest checkpoint (a finished run is only sampled
    again) unless ``overwrite`` starts afresh. ``sampler``, ``nfe``, ``schedule`` and sampler
    ``settings`` replace the model's default sampling choices.
    """
    out_dir = Path(out_dir)
    began = time.perf_counter()
    resume = not overwrite and out_dir.is_dir() and any(out_dir.iterdir())
    if resume and not (out_dir / "config.yaml").is_file():
        raise UserError(f"{out_dir} is not empty and holds no run (no config.yaml); choose another "
                        "--out, or --overwrite to replace its contents")
    config = demo_config(steps=steps, quick=quick)
    train(config, out_dir, resume=resume, overwrite=overwrite, progress=progress, flag="--out")
    train_seconds = time.perf_counter() - began
    config = load_config(out_dir / "config.yaml")
    model = load(out_dir)
    choices = {"sampler": sampler, "nfe": nfe, "schedule": schedule, **(settings or {})}
    plan = model.plan(**choices)
    n = config.sampling.num_samples
    began = time.perf_counter()
    samples = model.sample(n, seed=config.training.seed, batch_size=n, progress=progress,
                           **choices)
    sample_seconds = time.perf_counter() - began
    grid = save_grid(samples, out_dir / "samples.png", nrow=8, scale=3)
    curve = plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss.png")
    digits = _digit_scores(samples, model.class_labels(None, n))
    summary = {"train_seconds": round(train_seconds, 1), "sample_seconds": round(sample_seconds, 1),
               "steps": config.training.n_iters, "threads": torch.get_num_threads(),
               "num_samples": n, "network_evaluations": plan.nfe, "sampling": plan.record(),
               "digits": digits, "grid": grid.name, "loss_curve": curve.name}
    files.write_json(out_dir / "demo.json", summary)
    return DemoResult(out_dir, grid, curve, out_dir / "metrics.jsonl", train_seconds,
                      sample_seconds, plan.describe(), digits)
