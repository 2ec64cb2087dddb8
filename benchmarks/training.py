"""Time per training step of each config on this machine (compute only: synthetic images of the
config's shape, so no data set has to be present).

    python benchmarks/training.py configs/mnist5k_cpu.yaml configs/mnist.yaml [--steps 3]
        [--batch-size 8] [--threads N]

With ``--batch-size b`` smaller than the config's batch B, the step is timed at b and the
per-step time at B is extrapolated linearly (marked "est."); this is how the paper-sized networks
are measured on a CPU. FLOPs per sample come from ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ncsn.config import Config, load_config
from ncsn.core.losses import dsm_loss
from ncsn.core.noise import geometric_sigmas
from ncsn.data import DATASETS
from ncsn.nets import build_network


def _shape(config: Config) -> tuple[int, int]:
    info = DATASETS[config.data.name]
    channels = config.data.channels or info.channels or 3
    size = config.data.image_size or info.image_size or 32
    return channels, size


def bench(path: Path, steps: int, batch_size: int | None) -> dict[str, float | str]:
    config = load_config(path)
    channels, size = _shape(config)
    noise = config.noise
    levels = noise.num_levels if noise.num_levels != "auto" else 10
    sigma_max = noise.sigma_max if noise.sigma_max != "auto" else 1.0
    sigmas = geometric_sigmas(sigma_max, noise.sigma_min, levels)
    torch.manual_seed(0)
    net = build_network(config.model, channels=channels, image_size=size, sigmas=sigmas)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, channels, size, size), sigmas[:1])
    full = config.training.batch_size
    b = min(batch_size or full, full)
    opt = torch.optim.Adam(net.parameters(), lr=config.training.lr)
    x = torch.rand(b, channels, size, size)
    times = []
    for k in range(steps + 1):
        start = time.perf_counter()
        loss = dsm_loss(net, x, sigmas, anneal_power=config.training.anneal_power)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    per_step = sorted(times)[len(times) // 2] * full / b
    return {"config": path.name, "network": config.model["name"],
            "params_M": sum(p.numel() for p in net.parameters()) / 1e6,
            "gflop_per_sample": counter.get_total_flops() / 1e9, "batch": full,
            "timed_batch": b, "s_per_step": per_step,
            "n_iters": config.training.n_iters}


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--batch-size", type=int, help="time at this batch, scale to the config's")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| config | network | params (M) | GFLOP/sample (fwd) | batch | s/step | "
          "n_iters take |")
    print("|---|---|---|---|---|---|---|")
    for path in args.configs:
        r = bench(path, args.steps, args.batch_size)
        est = "" if r["timed_batch"] == r["batch"] else f" (est. from batch {r['timed_batch']})"
        print(f"| {r['config']} | {r['network']} | {r['params_M']:.2f} | "
              f"{r['gflop_per_sample']:.3f} | {r['batch']} | {r['s_per_step']:.2f}{est} | "
              f"{_duration(r['s_per_step'] * r['n_iters'])} |", flush=True)


if __name__ == "__main__":
    main()
