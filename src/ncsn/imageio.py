"""Image grids, PNG folders, ``.npz`` sample files and animated GIFs (numpy + Pillow only).

Images are float tensors or arrays of shape (N, C, H, W) with values in [0, 1]; C is 1 or 3.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image

from ncsn import files
from ncsn.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# what PIL raises on a damaged or hostile file (its decoders also raise SyntaxError, EOFError,
# struct.error and zlib.error; DecompressionBombError for images of absurd size)
UNREADABLE_IMAGE = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                    Image.DecompressionBombError)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> (N, H, W, C) uint8 (values clipped, rounded)."""
    arr = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else images
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {arr.shape}")
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, padding: int = 2,
              pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one (H', W', C) uint8 array, ``nrow`` images per row (default: square)."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol_rows = math.ceil(n / nrow)
    fill = int(round(pad_value * 255))
    grid = np.full((ncol_rows * (h + padding) + padding, nrow * (w + padding) + padding, c),
                   fill, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, nrow)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[top:top + h, left:left + w] = tiles[k]
    return grid


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, nrow: int | None = None,
              scale: int = 1) -> Path:
    """Write a PNG grid of ``images``; ``scale`` enlarges it with nearest-neighbour pixels."""
    img = _pil(make_grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    with files.atomic_open(path) as fh:
        img.save(fh, format="PNG")
    return path


def save_gif(frames: Sequence[torch.Tensor | np.ndarray], path: str | Path,
             nrow: int | None = None, duration_ms: int = 80, scale: int = 1) -> Path:
    """Write an animated GIF whose frames are grids of each batch in ``frames``."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    images = []
    for frame in frames:
        img = _pil(make_grid(frame, nrow)).convert("RGB")
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        images.append(img)
    path = Path(path)
    with files.atomic_open(path) as fh:
        images[0].save(fh, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration_ms, loop=0)
    return path


def save_pngs(images: torch.Tensor | np.ndarray, folder: str | Path, start: int = 0) -> list[Path]:
    """Write each image as ``folder/000000.png`` (numbered from ``start``)."""
    folder = Path(folder)
    paths = []
    for k, tile in enumerate(to_uint8(images), start=start):
        p = folder / f"{k:06d}.png"
        with files.atomic_open(p, durable=False) as fh:  # an fsync per image: far too slow
            _pil(tile).save(fh, format="PNG")
        paths.append(p)
    return paths


WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16-bit grey PNGs open in these


def _wide_grey(img: Image.Image, channels: int | None) -> np.ndarray:
    """A 16-bit grey image as (C, H, W) float32 in [0, 1], at its full range (not clipped to
    8 bits, which turns every value above 255 white)."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.min() < 0 or arr.max() > 65535:
        raise UserError("image values are outside the 16-bit range [0, 65535]")
    arr = (arr / 65535.0).astype(np.float32)[None]
    return np.repeat(arr, 3, axis=0) if channels == 3 else arr


def open_image(source: str | Path | IO[bytes], name: str | Path) -> Image.Image:
    """Open and decode an image file (``name`` in messages); UserError for one PIL cannot
    decode, or whose pixels are floating point (mode F: Pillow's conversions to 8 bits clip
    them, so an image in [0, 1] would be read black)."""
    try:
        img = Image.open(source)
        img.load()
    except UNREADABLE_IMAGE as err:
        raise UserError(f"cannot read image {name}: {err}") from err
    if img.mode == "F":
        raise UserError(f"cannot read image {name}: its pixels are floating-point numbers, whose "
                        "range ncsn cannot know; save it as an 8- or 16-bit PNG")
    return img


def wide_grey_as_8bit(img: Image.Image, name: str | Path) -> Image.Image:
    """A 16-bit grey image as 8-bit grey at its full range (v / 65535 rounded to 255 steps),
    not clipped, as Pillow's ``convert("L")`` does (every value above 255 white); other images
    as they are."""
    if img.mode not in WIDE_GREY_MODES:
        return img
    try:
        grey = _wide_grey(img, 1)[0]
    except UserError as err:
        raise UserError(f"cannot read image {name}: {err}") from None
    return Image.fromarray(np.rint(grey * 255.0).astype(np.uint8))


def load_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read one image file as (C, H, W) float32 in [0, 1]; ``channels`` 1 or 3 converts.
    16-bit grey images are read at their full range."""
    img = open_image(path, path)
    if img.mode in WIDE_GREY_MODES:
        try:
            return _wide_grey(img, channels)
        except UserError as err:
            raise UserError(f"cannot read image {path}: {err}") from None
    if channels == 1:
        img = img.convert("L")
    elif channels == 3 or img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted); a clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist")
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as err:
        raise UserError(f"cannot read image folder {folder}: {err.strerror}") from None
    if not files:
        raise UserError(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def save_npz(images: torch.Tensor | np.ndarray, path: str | Path, **extra: np.ndarray) -> Path:
    """Save samples as ``.npz`` with key ``images``: uint8 (N, H, W, C), the usual sample format."""
    path = Path(path)
    with files.atomic_open(path) as fh:
        np.savez_compressed(fh, images=to_uint8(images), **extra)
    return path


def load_npz_images(path: str | Path) -> np.ndarray:
    """Read images from an ``.npz`` (key ``images``, or the only array) as (N, C, H, W) in [0, 1].

    Accepts uint8 (N, H, W, C) (the common sample format) or float (N, C, H, W) in [0, 1].
    """
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not an .npz file (not a zip archive); pass images saved "
                        "with numpy.savez or 'ncsn sample --format npz'")
    try:
        with np.load(path, allow_pickle=False) as data:
            key = "images" if "images" in data.files else (data.files[0] if len(data.files) == 1
                                                           else None)
            if key is None:
                raise UserError(f"{path}: no 'images' array (found {', '.join(data.files)})")
            arr = data[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise UserError(f"cannot read {path} as .npz (corrupt or truncated?): {err}") from err
    if arr.ndim != 4:
        raise UserError(f"{path}: images must be 4-D, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return arr.astype(np.float32)


class NpzStream:
    """Write one uint8 array into an ``.npz`` chunk by chunk (np.load reads it as usual), into
    a temporary file renamed over ``path`` by :meth:`close` (a link at ``path`` is replaced)."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...]) -> None:
        self.path, self.tmp = path, files.temp_path(path)
        self.shape, self.rows = shape, 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.unlink(missing_ok=True)
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise files.write_error(path, err) from None
        self.file = os.fdopen(fd, "wb")
        self.zip = zipfile.ZipFile(self.file, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        self.fh = self.zip.open(f"{name}.npy", "w", force_zip64=True)
        np.lib.format.write_array_header_2_0(
            self.fh, {"descr": "|u1", "fortran_order": False, "shape": shape})

    def append(self, rows: np.ndarray) -> None:
        if rows.shape[1:] != self.shape[1:] or rows.dtype != np.uint8:
            raise ValueError(f"expected uint8 rows of shape {self.shape[1:]}, got {rows.shape}")
        self.fh.write(np.ascontiguousarray(rows).tobytes())
        self.rows += rows.shape[0]

    def close(self, **extra: np.ndarray) -> None:
        """Finish the streamed array (all rows must have been written) and add ``extra``."""
        self.fh.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"wrote {self.rows} of {self.shape[0]} rows")
        for key, value in extra.items():
            with self.zip.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(value))
        self.zip.close()
        self.file.close()
        os.replace(self.tmp, self.path)
