"""Training: the trainer loop (Adam, DSM/SSM, EMA, DDP), atomic checkpoints with exact resume,
logs. Entry point: :func:`train` (or ``ncsn train --config configs/x.yaml``)."""

from ncsn.training.checkpoint import list_checkpoints, load_checkpoint, save_atomic
from ncsn.training.ema import EMA
from ncsn.training.logs import plot_loss_curve, read_metrics
from ncsn.training.trainer import NonFiniteLossError, Trainer, TrainResult, batch_indices, train

__all__ = [
    "EMA",
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "batch_indices",
    "list_checkpoints",
    "load_checkpoint",
    "plot_loss_curve",
    "read_metrics",
    "save_atomic",
    "train",
]
