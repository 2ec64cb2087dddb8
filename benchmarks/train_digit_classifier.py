"""Train the digit classifier behind ``ncsn.eval.digits.digit_metrics`` and ship its weights.

    python benchmarks/train_digit_classifier.py            # writes src/ncsn/eval/digit_classifier.*
    python benchmarks/train_digit_classifier.py --out-dir /tmp/dc --epochs 4   # a trial elsewhere

Trains on the embedded mnist5k train split (4,500 digits) with the fixed recipe
``ncsn.eval.digits.DEFAULT_RECIPE`` (seed 0) and prints the accuracy on the 500-digit test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ncsn.eval.digits import (
    DEFAULT_RECIPE,
    RECORD_PATH,
    WEIGHTS_PATH,
    save_digit_classifier,
    train_digit_classifier,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="write the two files here instead of into the package")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: "
                        "reproducible, and not slowed by busy-waiting on a shared machine)")
    for key, value in DEFAULT_RECIPE.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = {key: getattr(args, key) for key in DEFAULT_RECIPE}
    model, record = train_digit_classifier(recipe, log=print)
    weights, rec = WEIGHTS_PATH, RECORD_PATH
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        weights, rec = args.out_dir / WEIGHTS_PATH.name, args.out_dir / RECORD_PATH.name
    save_digit_classifier(model, record, weights, rec)
    print(json.dumps(record, indent=2))
    print(f"test accuracy {record['test_accuracy']:.4f} on {record['test_images']} digits; "
          f"written {weights} and {rec}")


if __name__ == "__main__":
    main()
