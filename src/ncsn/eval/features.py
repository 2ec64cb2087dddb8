"""Inception features of image sets, and reference statistics cached to ``.npz``.

A statistics file holds ``mu`` (D,) and ``sigma`` (D, D) (float64, the names pytorch-fid uses,
so its files load here too), optionally ``features`` (N, D) float32 (needed for KID and for
nearest neighbours in feature space) and ``meta``: a JSON string with the cache key.
Cache files are named ``<dataset>_<split>_<size>px_<channels>c_<extractor>.npz`` (plus a hash of
``root`` when given and ``_n<N>`` for subsets); a cached
file is used only when its whole key matches (format, extractor, data set, split, resolution,
channels, image count and a SHA-1 of the image bytes), else it is recomputed and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ncsn import files
from ncsn.errors import UserError
from ncsn.eval.metrics import feature_statistics
from ncsn.eval.weights import load_inception

STATS_FORMAT = 1
EXTRACTOR_ID = "inception-2015-12-05"  # the TF-FID graph, pool_3 features, pytorch-fid input


@dataclass
class ReferenceStats:
    """Feature statistics of a reference image set (see module doc)."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return int(self.meta.get("num_images", -1 if self.features is None
                                 else len(self.features)))


def check_images(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Validate (N, 1|3, H, W) finite floats in [0, 1] (or uint8) and return float32."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise UserError(f"{what} must be a tensor of shape (N, C, H, W) with C = 1 or 3, "
                        f"got {shape}")
    if len(images) == 0:
        raise UserError(f"{what}: no images")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    images = images.float()
    lo, hi = float(images.min()), float(images.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
        raise UserError(f"{what} must hold values in [0, 1], found [{lo:.3g}, {hi:.3g}]; "
                        "clamp samples to [0, 1] (samplers do not clamp)")
    return images


class InceptionExtractor:
    """Batched TF-FID Inception-v3 features (and bias-free logits when the head is loaded)."""

    def __init__(self, weights: str | Path | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.net, self.source = load_inception(weights, device)
        self.device = torch.device(device)

    @property
    def has_logits(self) -> bool:
        return self.net.has_logits

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 50, progress: bool = False
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (N, 2048) float32 and logits (N, 1008) or None for images in [0, 1]."""
        images = check_images(images)
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        feats, logits = [], []
        starts = range(0, len(images), batch_size)
        for start in tqdm(starts, desc="inception", unit="batch", disable=not progress,
                          file=sys.stderr):
            f, lg = self.net(images[start:start + batch_size].to(self.device))
            feats.append(f.cpu().numpy())
            if lg is not None:
                logits.append(lg.cpu().numpy())
        return np.concatenate(feats), (np.concatenate(logits) if logits else None)


@functools.lru_cache(maxsize=2)
def get_extractor(weights: str | None = None,
                  device: str | torch.device = "cpu") -> InceptionExtractor:
    """A process-wide cached extractor (loading the 90 MB weights takes seconds)."""
    return InceptionExtractor(weights, device)


def stats_from_features(features: np.ndarray, meta: dict[str, Any] | None = None,
                        keep_features: bool = True) -> ReferenceStats:
    mu, sigma = feature_statistics(features)
    meta = {"num_images": len(features), **(meta or {})}
    return ReferenceStats(mu, sigma, features.astype(np.float32) if keep_features else None, meta)


def save_stats(stats: ReferenceStats, path: str | Path) -> Path:
    """Write statistics atomically (temp file + rename)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"mu": stats.mu, "sigma": stats.sigma,
                                     "meta": np.array(json.dumps(stats.meta, sort_keys=True))}
    if stats.features is not None:
        arrays["features"] = stats.features
    with files.atomic_open(path) as fh:
        np.savez(fh, **arrays)
    return path


def load_stats(path: str | Path) -> ReferenceStats:
    """Read a statistics ``.npz`` (ours or pytorch-fid's ``mu``/``sigma``), never unpickling."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"statistics file {path} does not exist; create it with 'ncsn stats'")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data.files or "sigma" not in data.files:
                raise UserError(f"{path} is not a statistics file (needs arrays 'mu' and "
                                f"'sigma', found {', '.join(data.files)}); make one with "
                                "'ncsn stats'")
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
            feats = data["features"] if "features" in data.files else None
            return ReferenceStats(data["mu"], data["sigma"], feats, meta)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read statistics {path}: {err}") from err


def default_cache_dir() -> Path:
    """``$NCSN_CACHE_DIR/fid_stats`` or ``~/.cache/ncsn/fid_stats``."""
    base = os.environ.get("NCSN_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ncsn") / "fid_stats"


def images_fingerprint(images: torch.Tensor) -> str:
    """SHA-1 of the images as uint8 bytes (floats are rounded to 1/255 first)."""
    if images.dtype != torch.uint8:
        images = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    digest = hashlib.sha1(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def cache_path(cache_dir: str | Path, dataset: str, split: str, image_size: int, channels: int,
               num_images: int | None = None, root: str | Path | None = None) -> Path:
    """``<dataset>[-<root hash>]_<split>_<size>px_<C>c[_n<N>]_<extractor>.npz``."""
    name = dataset
    if root is not None:
        name += "-" + hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:8]
    count = "" if num_images is None else f"_n{num_images}"
    return Path(cache_dir) / f"{name}_{split}_{image_size}px_{channels}c{count}_{EXTRACTOR_ID}.npz"


def subset(images: torch.Tensor, max_images: int | None, seed: int = 0) -> torch.Tensor:
    """A fixed random subset of ``max_images`` images (all when None or larger than N)."""
    if max_images is None or max_images >= len(images):
        return images
    if max_images < 2:
        raise UserError(f"need at least 2 reference images, got max_images={max_images}")
    gen = torch.Generator().manual_seed(seed)
    return images[torch.randperm(len(images), generator=gen)[:max_images].sort().values]


def dataset_stats(dataset: str, split: str = "train", *, root: str | Path | None = None,
                  image_size: int | None = None, channels: int | None = None,
                  max_images: int | None = None, cache_dir: str | Path | None = None,
                  weights: str | Path | None = None, device: str | torch.device = "cpu",
                  batch_size: int = 50, force: bool = False, progress: bool = False,
                  download: bool = False) -> tuple[ReferenceStats, Path, bool]:
    """Reference statistics of a data set split, from the cache when valid.

    Returns (stats, cache file, hit). ``max_images`` takes a fixed random subset (seed 0).
    """
    from ncsn.data import load_dataset

    images = subset(load_dataset(dataset, split, root=root, image_size=image_size,
                                 channels=channels, download=download), max_images)
    n, c, h, _ = images.shape
    meta = {"format": STATS_FORMAT, "extractor": EXTRACTOR_ID, "dataset": dataset,
            "split": split, "image_size": int(h), "channels": int(c), "num_images": int(n),
            "data_sha1": images_fingerprint(images)}
    path = cache_path(cache_dir or default_cache_dir(), dataset, split, h, c,
                      None if max_images is None else n, root)
    if path.is_file() and not force:
        try:
            cached = load_stats(path)
        except UserError:
            cached = None
        if cached is not None and cached.features is not None and all(
                cached.meta.get(k) == v for k, v in meta.items()):
            return cached, path, True
    extractor = get_extractor(None if weights is None else str(weights), str(device))
    feats, _ = extractor(images, batch_size=batch_size, progress=progress)
    stats = stats_from_features(feats, {**meta, "weights": Path(extractor.source).name})
    save_stats(stats, path)
    return stats, path, False
