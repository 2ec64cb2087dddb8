"""ncsn: Noise Conditional Score Networks (Song & Ermon, 2019) and their follow-ups.

The functional core lives in :mod:`ncsn.core` (noise schedules, losses, samplers, analytic toy
distributions); networks, data, training, evaluation and the CLI are layers above it.

The Python API (:mod:`ncsn.api`) is at the top level: ``ncsn.load(path)`` returns a
:class:`~ncsn.api.ScoreModel` (``.sample``, ``.inpaint``, ``.score``, ``.plan``),
``ncsn.train(config, run_dir)`` trains, ``ncsn.save_grid`` / ``ncsn.save_gif`` write images.
They are imported on first use, so ``import ncsn`` alone does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ScoreModel", "__version__", "load", "save_gif", "save_grid", "train"]

if TYPE_CHECKING:
    from ncsn.api import ScoreModel, load, train
    from ncsn.imageio import save_gif, save_grid

_LAZY = {"ScoreModel": "ncsn.api", "load": "ncsn.api", "train": "ncsn.api",
         "save_grid": "ncsn.imageio", "save_gif": "ncsn.imageio"}


def __getattr__(name: str) -> Any:
    """The API names, imported on first use (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ncsn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
