"""Benchmark the score networks: parameters, forward GFLOP per sample, forward and training-step
time per preset.

    python benchmarks/networks.py [--batch-size 8] [--repeats 3] [--threads N] [--only NAME ...]
                                  [--flops-only]

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2) on one
sample. Times are medians over ``--repeats`` after one warm-up; a training step is DSM loss
(lambda = sigma^2) + backward + Adam step. ``--flops-only`` skips the timings (for the large
NCSN++ presets). The NCSN++ presets are the packaged score_sde configs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ncsn.config import load_config
from ncsn.core.losses import dsm_loss
from ncsn.core.noise import geometric_sigmas
from ncsn.nets import build_network


@dataclass(frozen=True)
class Preset:
    """A network configuration as used for one data set."""

    label: str
    section: dict[str, Any]
    shape: tuple[int, ...]  # one sample: (C, H, W) for images, (D,) for the toy MLP
    sigmas: tuple[float, float, int] = (1.0, 0.01, 10)
    notes: str = field(default="")


def packaged(label: str, config_name: str, notes: str) -> Preset:
    """A preset from one of the packaged configs (its model section, image size, levels)."""
    config = load_config(config_name)
    size, noise = int(config.data.image_size or 32), config.noise
    return Preset(label, dict(config.model), (3, size, size),
                  (float(noise.sigma_max), noise.sigma_min, int(noise.num_levels)), notes)


PRESETS = [
    Preset("ncsn_mnist", {"name": "cond_refinenet", "ngf": 64}, (1, 28, 28),
           notes="paper, MNIST"),
    Preset("ncsn_cifar10", {"name": "cond_refinenet", "ngf": 128}, (3, 32, 32),
           notes="paper, CIFAR-10 / CelebA"),
    Preset("ncsnv2_cifar10", {"name": "ncsnv2", "ngf": 128}, (3, 32, 32), (50.0, 0.01, 232),
           notes="NCSNv2 32 px"),
    Preset("ncsnv2_celeba64", {"name": "ncsnv2", "ngf": 128}, (3, 64, 64), (90.0, 0.01, 500),
           notes="NCSNv2 deeper, 64 px"),
    Preset("unet_small_mnist", {"name": "unet_small"}, (1, 28, 28), notes="fast CPU net"),
    *(packaged(label, config, notes) for label, config, notes in (
        ("ncsnpp_cifar10", "ve_cifar10_ncsnpp_continuous", "NCSN++ VE, CIFAR-10"),
        ("ncsnpp_cifar10_deep", "ve_cifar10_ncsnpp_deep_continuous", "NCSN++ deep, CIFAR-10"),
        ("ncsnpp_celebahq256", "ve_celebahq_256_ncsnpp_continuous", "NCSN++, CelebA-HQ 256"),
        ("ncsnpp_ffhq1024", "ve_ffhq_1024_ncsnpp_continuous", "NCSN++, FFHQ 1024"))),
    Preset("ncsnpp_cifar10_nf32", {**packaged("", "ve_cifar10_ncsnpp_continuous", "").section,
                                   "nf": 32}, (3, 32, 32), (50.0, 0.01, 1000),
           notes="NCSN++ CIFAR-10 structure at nf 32"),
    Preset("ncsnpp_cifar10_deep_nf32",
           {**packaged("", "ve_cifar10_ncsnpp_deep_continuous", "").section, "nf": 32},
           (3, 32, 32), (50.0, 0.01, 1000), notes="NCSN++ deep structure at nf 32"),
    Preset("mlp_toy", {"name": "mlp"}, (2,), (20.0, 1.0, 10), notes="Figure 2 toy"),
]


def build(preset: Preset) -> tuple[torch.nn.Module, torch.Tensor]:
    sigmas = geometric_sigmas(*preset.sigmas)
    image_size = preset.shape[-1] if len(preset.shape) == 3 else 1
    net = build_network(preset.section, channels=preset.shape[0], image_size=image_size,
                        sigmas=sigmas)
    return net, sigmas


def forward_gflop(net: torch.nn.Module, preset: Preset, sigmas: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, *preset.shape), sigmas[:1])
    return counter.get_total_flops() / 1e9


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(preset: Preset, batch_size: int, repeats: int, timed: bool = True
            ) -> dict[str, Any]:
    torch.manual_seed(0)
    net, sigmas = build(preset)
    counts = {"params": sum(p.numel() for p in net.parameters()),
              "gflop": forward_gflop(net, preset, sigmas)}
    if not timed:
        return {**counts, "forward_ms": float("nan"), "train_ms": float("nan")}
    x = torch.rand(batch_size, *preset.shape)
    levels = torch.randint(len(sigmas), (batch_size,))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def forward() -> None:
        with torch.no_grad():
            net(x, sigmas[levels])

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        dsm_loss(net, x, sigmas, levels=levels).backward()
        optimizer.step()

    return {
        **counts,
        "forward_ms": 1e3 * median_seconds(forward, repeats),
        "train_ms": 1e3 * median_seconds(train_step, repeats),
    }


def _ms(value: float) -> str:
    if value != value:  # not measured
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--only", nargs="+", choices=[p.label for p in PRESETS],
                        help="benchmark only these presets")
    parser.add_argument("--flops-only", action="store_true", help="count parameters and FLOPs, "
                        "skip the timings")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, batch {args.batch_size}, fp32, "
          f"median of {args.repeats}\n")
    print("| preset | network | sample shape | levels | params | fwd GFLOP/sample "
          "| fwd ms/batch | train-step ms/batch | notes |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    for preset in PRESETS:
        if args.only and preset.label not in args.only:
            continue
        r = measure(preset, args.batch_size, args.repeats, timed=not args.flops_only)
        shape = "x".join(map(str, preset.shape))
        print(f"| {preset.label} | {preset.section['name']} | {shape} | {preset.sigmas[2]} "
              f"| {r['params']:,} | {r['gflop']:.4g} | {_ms(r['forward_ms'])} "
              f"| {_ms(r['train_ms'])} | {preset.notes} |", flush=True)


if __name__ == "__main__":
    main()
