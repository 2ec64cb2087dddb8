"""The trainer's own per-step costs around the network (docs/training.md, "Per-step costs"):
the EMA update, the gradient finiteness check, drawing the global batch, and a whole step in the
NCHW and the channels_last layout.

    python benchmarks/train_step.py configs/mnist.yaml --set data.name=mnist5k \
        [--batch-size 8] [--repeats 20] [--steps 5] [--threads 1]

Times are medians over ``--repeats`` calls after one warm-up step, on the configured device
(CUDA timings synchronize before reading the clock). The whole step is timed ``--steps`` times in
each layout, alternating between the two, so a machine shared with other jobs slows both alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ncsn.config import load_config
from ncsn.training import Trainer


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
    args = parser.parse_args()
    overrides = [*args.overrides, f"training.batch_size={args.batch_size}",
                 f"training.threads={args.threads}", "training.ema_rate=0.999",
                 "training.test_freq=0", "training.sample_freq=0", "eval.every=0"]
    layouts = {"NCHW": "false", "channels_last": "true"}
    with tempfile.TemporaryDirectory() as run_dir:
        trainers = {name: Trainer(load_config(args.config, [*overrides,
                                                            f"training.channels_last={flag}"]),
                                  Path(run_dir, name), progress=False)
                    for name, flag in layouts.items()}
        for tr in trainers.values():
            tr.train_step()  # warm-up; leaves gradients for the check below
        tr = trainers["NCHW"]
        assert tr.ema is not None
        rows = {
            "EMA update": median_seconds(lambda: tr.ema.update(tr.net), args.repeats, tr.device),
            "gradient finiteness check": median_seconds(lambda: bool(tr._gradients_finite()),
                                                        args.repeats, tr.device),
            "global batch draw": median_seconds(tr._global_batch, args.repeats, tr.device),
        }
        steps: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(args.steps):
            for name, each in trainers.items():
                steps[name].append(median_seconds(each.train_step, 1, each.device))
        rows.update({f"whole training step, {name}": statistics.median(times)
                     for name, times in steps.items()})
    params = sum(1 for _ in tr.net.parameters())
    print(f"torch {torch.__version__}, device {tr.device}, {torch.get_num_threads()} threads, "
          f"{tr.config.model['name']}: {params} parameter tensors, batch {args.batch_size}")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
