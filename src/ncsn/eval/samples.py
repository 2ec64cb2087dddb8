"""Sample sets to evaluate: a folder of images, an ``.npz``, or a model plus sampler settings.

Generation from a model is resumable: samples are drawn in shards of ``shard_size`` images,
each written as ``<dir>/shard_<k:05d>.npz`` (uint8, :func:`ncsn.imageio.save_npz`) as soon as it
is finished, with its own seed (``seed * 1_000_003 + k``); a rerun skips the shards that exist,
so an interrupted run continues where it stopped and yields the same images (temporary files
that a killed write left are removed). Under torchrun the processes share the shards out
(k mod world size), and rank 0 reads them all back.
``<dir>/settings.json`` records the weights (by the SHA-256 their model file records, not by
their path: new weights at the same path are other samples) and the sampler settings; a rerun
with other weights or settings is refused rather than mixing samples.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from ncsn import files
from ncsn.errors import UserError
from ncsn.imageio import list_images, load_image, load_npz_images, save_npz
from ncsn.seeding import derived_seed
from ncsn.training.distributed import DistInfo, together

if TYPE_CHECKING:
    from ncsn.sampling import SamplingPlan, ScoreModel


def load_samples(source: str | Path, channels: int | None = None,
                 max_images: int | None = None) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] from a folder of image files or an ``.npz``."""
    path = Path(source)
    if path.is_dir():
        files = list_images(path)[:max_images]
        arrays = [load_image(f, channels) for f in files]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise UserError(f"images in {path} differ in shape ({sorted(shapes)[:3]}); "
                            "samples must all have one size")
        return torch.from_numpy(np.stack(arrays))
    if path.suffix == ".npz" and path.is_file():
        images = torch.from_numpy(load_npz_images(path))[:max_images]
        if images.shape[1] not in (1, 3):
            raise UserError(f"{path}: images must have 1 or 3 channels, got shape "
                            f"{tuple(images.shape)} (expected uint8 (N, H, W, C) or float "
                            "(N, C, H, W))")
        if len(images) == 0:
            raise UserError(f"{path} holds no images")
        return images
    raise UserError(f"sample source {path} is neither a folder of images nor an .npz file")


def _write_settings(out_dir: Path, record: dict[str, Any]) -> None:
    path = out_dir / "settings.json"
    diff = files.compare_record(path, record)
    if diff is None:
        files.write_json(path, record, sort_keys=True)
    elif diff:
        old = files.parse_json(path.read_text())
        hint = (f"; they were drawn on {old.get('device')}, whose random streams differ "
                f"from {record.get('device')}'s" if "device" in diff else "")
        raise UserError(f"{out_dir} holds samples made with other settings (differs in "
                        f"{', '.join(diff)}{hint}); use another --samples-dir or delete it")


def weights_key(model: ScoreModel) -> str:
    """What identifies the samples' weights: the SHA-256 their model file records, else (a
    model file from before ncsn recorded it, or an in-memory network) its path."""
    digest = model.spec.provenance.get("weights_sha256")
    if digest:
        return f"sha256:{digest}"
    return str(model.path.resolve()) if model.path is not None else "(in memory)"


def generate_samples(model: ScoreModel, plan: SamplingPlan, out_dir: str | Path,
                     num_samples: int, *, shard_size: int = 100, seed: int = 0,
                     progress: bool = False, ranks: DistInfo | None = None) -> torch.Tensor | None:
    """Draw ``num_samples`` images from a loaded ``model`` with ``plan`` (from
    :meth:`~ncsn.sampling.ScoreModel.plan`) in resumable shards under ``out_dir``; returns them
    in [0, 1]. The record in ``settings.json`` includes the device type: random streams differ
    between CPU and CUDA, so a rerun on another device type is refused.

    Under torchrun (``ranks`` from :func:`~ncsn.training.distributed.init_distributed`) each
    process draws the shards k = rank mod world size into ``out_dir`` (one folder all see);
    rank 0 returns all the images, the others None. A UserError on any process raises on all.
    """
    if num_samples < 1 or shard_size < 1:
        raise UserError(f"num_samples and shard_size must be >= 1, got {num_samples}, "
                        f"{shard_size}")
    ranks = ranks or DistInfo()
    out_dir = Path(out_dir)
    with together(ranks, model.device):
        if ranks.is_main:  # before any process writes a shard
            _write_settings(out_dir, {"weights": weights_key(model), "shard_size": shard_size,
                                      "seed": seed, "device": model.device.type,
                                      **plan.record()})
            files.remove_partial_writes(out_dir)
    num_shards = -(-num_samples // shard_size)
    paths = [out_dir / f"shard_{k:05d}.npz" for k in range(num_shards)]
    counts = [min(shard_size, num_samples - k * shard_size) for k in range(num_shards)]
    bar = tqdm(total=num_shards, desc="sampling", unit="shard", file=sys.stderr,
               disable=not (progress and ranks.is_main))
    with together(ranks, model.device):
        for k in range(ranks.rank, num_shards, ranks.world_size):
            if _read_shard(paths[k], counts[k]) is None:
                labels = model.class_labels(None, shard_size, start=k * shard_size)
                save_npz(model.sample(shard_size, plan=plan, seed=derived_seed(seed, k),
                                      batch_size=shard_size, labels=labels), paths[k])
            if not bar.disable:  # every process's shards: those on disk
                bar.update(sum(p.is_file() for p in paths) - bar.n)
    bar.update(num_shards - bar.n)
    bar.close()
    if not ranks.is_main:
        return None
    shards = [_read_shard(path, count) for path, count in zip(paths, counts, strict=True)]
    missing = [path.name for path, shard in zip(paths, shards, strict=True) if shard is None]
    if missing:
        raise UserError(f"{out_dir} lacks {missing[0]} ({len(missing)} shard(s)), drawn by "
                        "another process: under torchrun every process must write the same "
                        "--samples-dir (a shared file system)")
    return torch.cat(shards)


def _read_shard(path: Path, count: int) -> torch.Tensor | None:
    """The first ``count`` images of the shard at ``path``; None when it is not there."""
    if not path.is_file():
        return None
    images = torch.from_numpy(load_npz_images(path))
    return images[:count] if len(images) >= count else None
