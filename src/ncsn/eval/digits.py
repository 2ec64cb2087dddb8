"""Digit quality of 28x28 samples, scored by a small CNN classifier shipped with the package.

Inception features fit 28x28 grey digits poorly; MNIST generative-model papers score samples with
a digit classifier's outputs and features instead (Binkowski et al. 2018 compute KID on MNIST in a
LeNet's features). Training adds outlier exposure (Hendrycks et al. 2019) so that non-digits
(noise, blobs) are not counted as confident digits. :func:`digit_metrics` reports:

- ``digit_confident``: share of images whose largest softmax probability is >= 0.9;
- ``digit_classes``: how many of the 10 classes get at least one confident prediction, with
  ``digit_histogram`` (confident predictions per class) and ``digit_balance``, the entropy of that
  histogram divided by log 10 (1: all classes equally often; 0: one class, or none confident);
- ``digit_kid``: unbiased KID (Binkowski et al. 2018, :func:`kernel_inception_distance`) between
  the classifier's 128-d penultimate features of the images and of a reference set, by default
  the ``mnist5k`` test split (500 digits the classifier never saw in training).

The classifier is trained on the ``mnist5k`` train split (4,500 digits) by
``python benchmarks/train_digit_classifier.py``, which writes ``digit_classifier.safetensors``
and ``digit_classifier.json`` (recipe, seed, torch version, test accuracy) beside this module.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ncsn import files
from ncsn.errors import UserError
from ncsn.eval.features import check_images
from ncsn.eval.metrics import kernel_inception_distance
from ncsn.eval.report import KID_SUBSETS, kid_subset_size

WEIGHTS_PATH = Path(__file__).with_name("digit_classifier.safetensors")
RECORD_PATH = Path(__file__).with_name("digit_classifier.json")
NUM_CLASSES = 10
FEATURE_DIM = 128
CONFIDENCE = 0.9
DEFAULT_RECIPE: dict[str, Any] = {
    "epochs": 12, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4,
    "max_shift_px": 2.0, "max_rotate_deg": 10.0, "max_scale": 0.1, "outlier_weight": 0.5,
    "seed": 0,
}


class DigitClassifier(nn.Module):
    """Three 3x3 conv blocks (32, 64, 64 channels; batch norm, ReLU, 2x2 max pool) on
    (N, 1, 28, 28) images in [0, 1], a 128-d ReLU feature layer and a 10-way linear head.

    ``feature_scale`` (set after training: 1 / RMS of the train split's features) scales the
    features given to KID, so that its kernel (x.y / d + 1)^3 sees entries of order 1, as with
    Inception features, rather than a polynomial dominated by the cubic term."""

    def __init__(self) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

        self.convs = nn.Sequential(block(1, 32), block(32, 64), block(64, 64))  # 28 -> 14 -> 7 -> 3
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, FEATURE_DIM), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d penultimate features (N, 128)."""
        return self.embed(self.convs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10)."""
        return self.head(self.dropout(self.features(x)))


def random_affine(x: torch.Tensor, generator: torch.Generator, max_shift_px: float,
                  max_rotate_deg: float, max_scale: float) -> torch.Tensor:
    """Each image shifted by up to ``max_shift_px`` pixels, rotated by up to ``max_rotate_deg``
    degrees and scaled by a factor in [1 - max_scale, 1 + max_scale] (bilinear, zero fill)."""
    n, _, h, _ = x.shape

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(max_rotate_deg))
    scale = 1 + uniform(max_scale)
    shift = torch.stack([uniform(max_shift_px), uniform(max_shift_px)], 1) * (2 / h)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    grid = F.affine_grid(torch.cat([theta, shift[:, :, None]], 2), list(x.shape),
                         align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def non_digits(digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """As many non-digit images as ``digits``, each one of: uniform noise of a random amplitude,
    smooth random blobs (box-blurred noise, rescaled to [0, 1]), or the digit with its 16 7x7
    patches shuffled (strokes without a digit's layout). Targets of outlier exposure."""
    n = len(digits)
    noise = torch.rand(digits.shape, generator=generator) * torch.rand(n, 1, 1, 1,
                                                                        generator=generator)
    blobs = F.avg_pool2d(torch.rand(digits.shape, generator=generator), 7, 1, 3)
    low, high = blobs.amin((1, 2, 3), keepdim=True), blobs.amax((1, 2, 3), keepdim=True)
    blobs = (blobs - low) / (high - low)
    patches = digits.reshape(n, 4, 7, 4, 7).transpose(2, 3).reshape(n, 16, 49)
    order = torch.rand(n, 16, generator=generator).argsort(1)
    shuffled = patches.gather(1, order[:, :, None].expand(-1, -1, 49))
    shuffled = shuffled.reshape(n, 4, 4, 7, 7).transpose(2, 3).reshape(digits.shape)
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
    return torch.where(kind == 0, noise, torch.where(kind == 1, blobs, shuffled))


def check_digit_images(images: Any, what: str) -> torch.Tensor:
    """(N, 1, 28, 28) float32 in [0, 1] from a tensor or array (floats in [0, 1] or uint8)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
    if not isinstance(images, torch.Tensor) or images.shape[1:] != (1, 28, 28) or not len(images):
        raise UserError(f"the digit metric accepts {what} of shape (N, 1, 28, 28) (grey 28x28 "
                        f"digits, floats in [0, 1] or uint8), got {shape}")
    return check_images(images, what)


@torch.no_grad()
def classify(model: DigitClassifier, images: torch.Tensor,
             batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (N, 128), times ``feature_scale``, and softmax probabilities (N, 10)
    of images in [0, 1]."""
    model.eval()
    feats, probs = [], []
    for batch in images.split(batch_size):
        f = model.features(batch.float())
        feats.append(f * model.feature_scale)
        probs.append(model.head(f).softmax(dim=1))
    return torch.cat(feats), torch.cat(probs)


def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images whose most probable class equals the label."""
    return float((classify(model, images)[1].argmax(1) == labels).float().mean())


def _mnist5k(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from ncsn.data import load_dataset
    from ncsn.data.embedded import mnist5k_labels

    images = load_dataset("mnist5k", split).float() / 255.0
    return images, torch.from_numpy(mnist5k_labels(split).astype(np.int64))


def train_digit_classifier(recipe: dict[str, Any] | None = None,
                           log: Callable[[str], None] | None = None
                           ) -> tuple[DigitClassifier, dict[str, Any]]:
    """Train the classifier on the mnist5k train split: Adam, cross-entropy, random affine
    augmentation (:func:`random_affine`), cosine learning-rate decay; fixed seed. Returns the
    model (eval mode) and a record with the recipe, torch version, time and test accuracy."""
    recipe = {**DEFAULT_RECIPE, **(recipe or {})}
    train_x, train_y = _mnist5k("train")
    test_x, test_y = _mnist5k("test")
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # leaves the caller's global RNG untouched
        torch.manual_seed(recipe["seed"])
        gen = torch.Generator().manual_seed(recipe["seed"])
        model = DigitClassifier()
        opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"],
                               weight_decay=recipe["weight_decay"])
        steps = recipe["epochs"] * math.ceil(len(train_x) / recipe["batch_size"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for epoch in range(recipe["epochs"]):
            model.train()
            order = torch.randperm(len(train_x), generator=gen)
            for idx in order.split(recipe["batch_size"]):
                x = random_affine(train_x[idx], gen, recipe["max_shift_px"],
                                  recipe["max_rotate_deg"], recipe["max_scale"])
                logits = model(torch.cat([x, non_digits(x, gen)]))
                # cross-entropy on digits + outlier exposure: cross-entropy of the non-digits'
                # predictions to the uniform distribution (Hendrycks et al. 2019, eq. 1)
                loss = (F.cross_entropy(logits[:len(x)], train_y[idx])
                        - recipe["outlier_weight"] * logits[len(x):].log_softmax(1).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if log is not None:
                log(f"epoch {epoch + 1}/{recipe['epochs']}: last batch loss {loss.item():.4f}, "
                    f"{time.perf_counter() - start:.0f} s")
    model.eval()
    model.feature_scale.fill_(1 / classify(model, train_x)[0].square().mean().sqrt())
    record = {"recipe": recipe, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "train_images": len(train_x), "test_images": len(test_x),
              "train_seconds": round(time.perf_counter() - start, 1),
              "test_accuracy": round(accuracy(model, test_x, test_y), 4),
              "feature_scale": float(model.feature_scale)}
    return model, record


def save_digit_classifier(model: DigitClassifier, record: dict[str, Any],
                          weights_path: Path = WEIGHTS_PATH,
                          record_path: Path = RECORD_PATH) -> None:
    """Write the weights (safetensors) and the JSON record, with the weights' SHA-256 in it."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in model.state_dict().items()})
    files.write_bytes(weights_path, data)
    files.write_json(record_path, {**record, "weights_sha256": hashlib.sha256(data).hexdigest()})


@functools.lru_cache(maxsize=1)
def load_digit_classifier() -> DigitClassifier:
    """The shipped classifier (eval mode), read once per process with safetensors (no pickle)."""
    from safetensors.torch import load_file

    if not WEIGHTS_PATH.is_file():
        raise UserError(f"the digit classifier's weights {WEIGHTS_PATH} are missing; rebuild "
                        "them with: python benchmarks/train_digit_classifier.py")
    model = DigitClassifier()
    model.load_state_dict(load_file(str(WEIGHTS_PATH)))
    return model.eval()


@functools.lru_cache(maxsize=1)
def _default_reference_features() -> np.ndarray:
    feats = classify(load_digit_classifier(), _mnist5k("test")[0])[0].numpy()
    feats.flags.writeable = False
    return feats


def digit_metrics(images: torch.Tensor | np.ndarray,
                  reference: torch.Tensor | np.ndarray | None = None, *,
                  seed: int = 0, labels: torch.Tensor | None = None) -> dict[str, Any]:
    """Digit quality of (N, 1, 28, 28) images in [0, 1] (or uint8), see the module docstring.

    ``reference``: real digits for ``digit_kid`` (default: the mnist5k test split, 500).
    KID uses 100 random subsets of size min(1000, N/2, M/2) (``seed``), as ``ncsn evaluate``.
    Returns floats ``digit_confident``, ``digit_balance``, ``digit_kid``, ``digit_kid_std``,
    ints ``digit_classes``, ``digit_kid_subset_size``, ``num_samples``, ``digit_num_reference``,
    ``digit_histogram`` (10 counts of confident predictions per class) and ``digit_reference``
    (what the reference was, for reports); with the ``labels`` (N,) a class-conditional model
    was asked for, ``digit_asked``: the share of images classified as their asked class.
    """
    images = check_digit_images(images, "images")
    model = load_digit_classifier()
    feats, probs = classify(model, images)
    if reference is None:
        ref_feats = _default_reference_features()
    else:
        ref_feats = classify(model, check_digit_images(reference, "reference images"))[0].numpy()
    if len(images) < 2 or len(ref_feats) < 2:
        raise UserError(f"the digit KID needs at least 2 images and 2 reference images, got "
                        f"{len(images)} and {len(ref_feats)}")
    top_prob, top_class = probs.max(dim=1)
    confident = top_prob >= CONFIDENCE
    histogram = torch.bincount(top_class[confident], minlength=NUM_CLASSES)
    shares = histogram[histogram > 0].double() / max(int(histogram.sum()), 1)
    size = kid_subset_size(len(images), len(ref_feats))
    kid, kid_std = kernel_inception_distance(feats.numpy(), ref_feats, num_subsets=KID_SUBSETS,
                                             subset_size=size, seed=seed)
    asked = {} if labels is None else {
        "digit_asked": float((top_class == labels.reshape(-1).cpu()).float().mean())}
    return {**asked, "num_samples": len(images), "digit_num_reference": len(ref_feats),
            "digit_reference": "mnist5k test split" if reference is None else "given images",
            "digit_confident": int(confident.sum()) / len(images),
            "digit_classes": int((histogram > 0).sum()),
            "digit_balance": float((shares * -shares.log()).sum() / math.log(NUM_CLASSES)),
            "digit_histogram": histogram.tolist(),
            "digit_kid": kid, "digit_kid_std": kid_std, "digit_kid_subset_size": size}
