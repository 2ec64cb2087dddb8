"""Data-loading timings: embedded sets and CelebA-style decode + crop + resize.

Run: .venv/bin/python benchmarks/data_load.py [--celeba-images N]
Prints one line per measurement; the CelebA figure uses synthetic 178x218 JPEGs written to a
temporary folder in the real layout (img_align_celeba/ + list_eval_partition.txt).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CELEBA_TRAIN = 162_770


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.3f} s")
    return seconds


def write_fake_celeba(root: Path, n: int) -> None:
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:218, 0:178]
    base = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    lines = []
    for k in range(n):
        Image.fromarray(np.roll(base, k, 0)).save(folder / f"{k:06d}.jpg", quality=90)
        lines.append(f"{k:06d}.jpg 0")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--celeba-images", type=int, default=300)
    args = parser.parse_args()
    from ncsn.data import load_dataset

    timed("digits8 train, first load (includes importing scikit-learn)",
          lambda: load_dataset("digits8"))
    timed("mnist5k train", lambda: load_dataset("mnist5k"))
    timed("mnist5k train resized to 32x32", lambda: load_dataset("mnist5k", image_size=32))
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_celeba(Path(tmp), args.celeba_images)
        seconds = timed(f"celeba decode+crop+resize to 32, {args.celeba_images} images",
                        lambda: load_dataset("celeba", root=tmp))
        per_image = seconds / args.celeba_images
        print(f"  = {per_image * 1e3:.2f} ms/image, ~{per_image * CELEBA_TRAIN / 60:.1f} min for "
              f"the {CELEBA_TRAIN:,} CelebA training images (first load only)")
        timed("celeba again, from the processed cache", lambda: load_dataset("celeba", root=tmp))


if __name__ == "__main__":
    main()
