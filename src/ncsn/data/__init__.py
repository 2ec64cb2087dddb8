"""Data sets as uint8 image tensors (N, C, H, W) and the training transforms (see docs/data.md).

``load_dataset(name, split, root=..., image_size=..., channels=..., download=...)`` reads
"digits8", "mnist5k", "photos32" (embedded, offline), "mnist", "cifar10", "celeba" or "folder";
``to_float`` maps to [0, 1]; ``apply_train_transforms`` adds flips, dequantization, logit.
"""

from ncsn.data.datasets import DATASETS, LABELLED, DatasetInfo, data_root, load_dataset, load_labels
from ncsn.data.transforms import (
    apply_train_transforms,
    inverse_logit_transform,
    logit_transform,
    random_hflip,
    random_shift,
    to_float,
    to_model_space,
    to_pixels,
)
from ncsn.data.transforms import uniform_dequantize as dequantize

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "LABELLED",
    "apply_train_transforms",
    "data_root",
    "dequantize",
    "inverse_logit_transform",
    "load_dataset",
    "load_labels",
    "logit_transform",
    "random_hflip",
    "random_shift",
    "to_float",
    "to_model_space",
    "to_pixels",
]
