"""The trainer's own per-step costs around the network (docs/training.md, "Per-step costs"):
the EMA update, the gradient finiteness check, drawing the global batch, and a whole step.

    python benchmarks/train_step.py configs/mnist.yaml --set data.name=mnist5k \
        [--batch-size 8] [--repeats 20] [--steps 5] [--threads 1] [--channels-last]

Times are medians over ``--repeats`` calls (``--steps`` for the whole step), after one warm-up
step, on the configured device (CUDA timings synchronize before reading the clock).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from ncsn.config import load_config
from ncsn.train import Trainer


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    overrides = [*args.overrides, f"training.batch_size={args.batch_size}",
                 f"training.threads={args.threads}", "training.ema_rate=0.999",
                 "training.test_freq=0", "training.sample_freq=0", "eval.every=0",
                 f"training.channels_last={str(args.channels_last).lower()}"]
    config = load_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        tr = Trainer(config, run_dir, progress=False)
        tr.train_step()  # warm-up; leaves gradients for the check below
        assert tr.ema is not None
        rows = {
            "EMA update": median_seconds(lambda: tr.ema.update(tr.net), args.repeats, tr.device),
            "gradient finiteness check": median_seconds(lambda: bool(tr._gradients_finite()),
                                                        args.repeats, tr.device),
            "global batch draw": median_seconds(tr._global_batch, args.repeats, tr.device),
            "whole training step": median_seconds(tr.train_step, args.steps, tr.device),
        }
    params = sum(1 for _ in tr.net.parameters())
    print(f"torch {torch.__version__}, device {tr.device}, {torch.get_num_threads()} threads, "
          f"{config.model['name']}: {params} parameter tensors, batch {args.batch_size}, "
          f"channels_last={args.channels_last}")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
