"""Training logs: a JSONL metrics file, TensorBoard when installed, and the loss-curve figure."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ncsn import files


def _tensorboard_writer(folder: Path) -> Any | None:
    """A SummaryWriter when the ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder))


class MetricsLog:
    """Append-only ``metrics.jsonl`` (one JSON object per line) plus optional TensorBoard
    (``run_dir/tensorboard``: the numeric fields of metric records, not of events, as scalars;
    sample grids as images).

    Resuming appends a ``{"event": "resume", "step": s}`` line; readers keep the last value
    logged for a step (see :func:`read_metrics`).
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.writer = _tensorboard_writer(run_dir / "tensorboard") if (
            enabled and tensorboard) else None

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        files.append_text(self.path, json.dumps(dict(record)) + "\n")
        if self.writer is not None and "step" in record and "event" not in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(
                        value, bool):
                    self.writer.add_scalar(key, value, int(record["step"]))

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        """Log an (H, W, C) uint8 image grid to TensorBoard (no-op without it)."""
        if self.writer is not None:
            self.writer.add_image(tag, grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in a metrics file, the last value per step, ordered by step."""
    values: dict[int, float] = {}
    for line in Path(path).read_text().splitlines():
        record = files.parse_json(line)
        if key in record and "step" in record:
            values[int(record["step"])] = float(record[key])
    steps = sorted(values)
    return steps, [values[s] for s in steps]


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path) -> Path:
    """Training loss (and test loss, when logged) against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "training loss"), ("test_loss", "test-split DSM loss")):
        steps, values = read_metrics(metrics_path, key)
        finite = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
        if finite:
            ax.plot(*zip(*finite, strict=True), label=label, marker="." if key != "loss" else "")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (sigma^2-weighted)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    with files.atomic_open(png_path) as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return png_path
