"""Throughput of the FID Inception network (images per second) on this machine.

Usage: python benchmarks/inception.py [--images 16] [--batch-size 8] [--threads N] [--device cpu]
Prints one line per memory format (contiguous vs channels_last, the one ncsn uses).
"""

from __future__ import annotations

import argparse
import time

import torch

from ncsn.eval.weights import load_inception


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, source = load_inception(args.weights, args.device)
    images = torch.rand(args.images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    print(f"weights {source}; {torch.get_num_threads()} threads; {args.images} images "
          f"(32px -> 299px), batch {args.batch_size}")
    for fmt in (torch.contiguous_format, torch.channels_last):
        net = net.to(memory_format=fmt)
        with torch.inference_mode():
            net(images[:1].to(args.device))  # warm-up
            start = time.perf_counter()
            for k in range(0, args.images, args.batch_size):
                net(images[k:k + args.batch_size].to(args.device))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            took = time.perf_counter() - start
        print(f"{str(fmt).removeprefix('torch.'):>18}: {args.images / took:7.2f} images/s")


if __name__ == "__main__":
    main()
