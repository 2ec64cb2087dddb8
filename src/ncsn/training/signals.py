"""SIGINT / SIGTERM during training: the first signal asks the loop to stop at the next step
boundary (the trainer then writes a checkpoint of that step, so ``--resume`` loses nothing); a
second signal interrupts at once. The process then exits 128 + the signal number (130 / 143)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from ncsn.training.distributed import DistInfo, mean_over_ranks

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal; ``signum`` says which (the CLI exits 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopRequest:
    """Handlers of SIGINT and SIGTERM from :meth:`install` to :meth:`restore` (main thread
    only; elsewhere the signals keep their handlers)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def restore(self) -> None:
        """The handlers from before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise TrainingInterrupted(signum)
        self.signum = signum

    def agreed(self, info: DistInfo, device: torch.device) -> bool:
        """Has any process been asked to stop? (one tiny all-reduce on ``device`` per step
        under DDP, so all processes stop at the same step)."""
        if not info.enabled:
            return self.signum is not None
        asked = torch.tensor(float(self.signum is not None), device=device)
        return bool(mean_over_ranks(asked, info) > 0)

    def interrupted(self) -> TrainingInterrupted:
        return TrainingInterrupted(self.signum if self.signum is not None else signal.SIGTERM)
