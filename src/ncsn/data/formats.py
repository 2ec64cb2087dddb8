"""Readers for the on-disk formats: MNIST IDX, CIFAR-10 python batches, image files.

All readers return uint8 numpy arrays of shape (N, C, H, W). CIFAR-10's batches are pickles;
they are read with a restricted unpickler that resolves only the numpy array constructors the
batches need, so a crafted file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from ncsn.errors import UserError
from ncsn.imageio import open_image, wide_grey_as_8bit

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_GREY_MODES = ("1", "L", "LA")  # 16-bit grey arrives as L (wide_grey_as_8bit)

# ---------------------------------------------------------------- MNIST IDX


def read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX3 ubyte image file (magic 2051; gzipped or not) as uint8 (N, 1, H, W)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise UserError(f"{path}: corrupt gzip file ({err}); delete it and place it "
                            "again") from err
    if len(raw) < 16 or struct.unpack(">I", raw[:4])[0] != 2051:
        magic = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
        raise UserError(f"{path}: not an IDX image file (magic {magic}, expected 2051 = "
                        "unsigned bytes, 3 dimensions)")
    n, h, w = struct.unpack(">III", raw[4:16])
    body = raw[16:]
    if len(body) != n * h * w:
        raise UserError(f"{path}: header says {n}x{h}x{w} = {n * h * w} bytes of pixels, the "
                        f"file has {len(body)}; the file is truncated or corrupt")
    return np.frombuffer(body, dtype=np.uint8).reshape(n, 1, h, w)


# ---------------------------------------------------------------- CIFAR-10 batches

_CIFAR_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,  # pickled by numpy 1
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,  # pickled by numpy 2
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # pickle protocol 5
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array/dtype constructors; any other global fails."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing global {module}.{name}: CIFAR-10 batches only need numpy arrays"
            ) from None


def read_cifar_batch(fh: IO[bytes], source: str) -> np.ndarray:
    """Read one CIFAR-10 python batch (dict with b"data": uint8 (N, 3072)) as (N, 3, 32, 32)."""
    try:
        batch = _CifarUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{source}: not a CIFAR-10 python batch ({err}); delete it and place "
                        "the original cifar-10-python.tar.gz") from err
    data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise UserError(f"{source}: expected a dict with b'data' = uint8 array (N, 3072)")
    return data.reshape(-1, 3, 32, 32)


# ---------------------------------------------------------------- image files


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """Square center crop of side ``size`` (offsets rounded as torchvision's CenterCrop)."""
    w, h = img.size
    if size > min(w, h):
        raise UserError(f"cannot center-crop {size}x{size} from a {w}x{h} image")
    top, left = round((h - size) / 2), round((w - size) / 2)
    return img.crop((left, top, left + size, top + size))


def resize(img: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size``: Pillow bilinear (antialiased when shrinking)."""
    return img if img.size == (size, size) else img.resize((size, size), Image.BILINEAR)


def decode_image(source: str | Path | bytes, *, channels: int | None, crop: int | None,
                 size: int | None, name: str = "") -> np.ndarray:
    """Decode one image file as uint8 (C, H, W).

    ``channels`` 1 or 3 converts (None: 1 for grey files, 3 otherwise); ``crop`` is a square
    center crop (0 means the largest square); ``size`` then resizes to ``size`` x ``size``.
    """
    label = name or str(source)
    img = wide_grey_as_8bit(
        open_image(io.BytesIO(source) if isinstance(source, bytes) else source, label), label)
    grey = channels == 1 or (channels is None and img.mode in _GREY_MODES)
    img = img.convert("L" if grey else "RGB")
    if crop is not None:
        img = center_crop(img, crop or min(img.size))
    if size is not None:
        img = resize(img, size)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


# ---------------------------------------------------------------- batch conversions


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(N, C, H, W) uint8 to ``channels``: grey -> RGB repeats; RGB -> grey uses Pillow's
    ITU-R 601-2 luma ``L = (19595 R + 38470 G + 7471 B + 2^15) >> 16``."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    rgb = x.astype(np.uint32)
    luma = (19595 * rgb[:, 0] + 38470 * rgb[:, 1] + 7471 * rgb[:, 2] + 0x8000) >> 16
    return luma.astype(np.uint8)[:, None]


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Resize every image of a uint8 (N, C, H, W) batch to ``size`` x ``size`` (see resize)."""
    if x.shape[-2:] == (size, size):
        return x
    out = np.empty((x.shape[0], x.shape[1], size, size), dtype=np.uint8)
    for k, img in enumerate(x):
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        arr = np.asarray(resize(pil, size))
        out[k] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return out
