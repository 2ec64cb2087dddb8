"""Import score_sde_pytorch checkpoints (``checkpoint_N.pth``, SPEC section 5).

A checkpoint is a dict ``{"model", "ema", "optimizer", "step"}``: ``model`` is the DataParallel
state dict (keys ``module.all_modules.N.*`` plus a float64 ``module.sigmas`` buffer of the
discrete levels), ``ema`` is score_sde's ExponentialMovingAverage state whose ``shadow_params``
list follows ``parameters()`` order over the parameters that require grad (so NCSN++'s fixed
Fourier ``W`` is not in it). Our NCSN++ has the same keys and parameter order
(tests/test_ncsnpp.py), so the mapping is: strip ``module.``, drop ``sigmas`` (checked against
the config), and with EMA weights (the default, what score_sde samples with) replace each
trainable parameter by its shadow. The file is read with ``weights_only=True``, allowing only
the numpy float64 scalar of the optimizer's learning rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from ncsn.errors import UserError
from ncsn.nets.checkpoints import check_stored_sigmas, read_torch_file, tensor_state
from ncsn.nets.io import build_from_spec, load_weights
from ncsn.nets.official import WEIGHTS
from ncsn.spec.model import ModelSpec


def read_score_sde_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], Tensor | None,
                                                         list[Tensor] | None]:
    """(model state dict without ``module.`` and ``sigmas``, the stored sigmas or None, the EMA
    shadow parameters or None) of a score_sde checkpoint, read safely."""
    obj = read_torch_file(path, numpy_scalars=True)
    if not isinstance(obj, Mapping) or "model" not in obj:
        raise UserError(f"{path} is not a score_sde checkpoint: expected a dict with model, ema, "
                        "optimizer and step")
    state = tensor_state(obj["model"], path, "its 'model' entry")
    sigmas = state.pop("sigmas", None)
    ema = obj.get("ema")
    if ema is None:
        return state, sigmas, None
    shadow = ema.get("shadow_params") if isinstance(ema, Mapping) else None
    if not isinstance(shadow, list) or not all(isinstance(t, Tensor) for t in shadow):
        raise UserError(f"{path}: its 'ema' entry is not score_sde's ExponentialMovingAverage "
                        "state (a dict with a shadow_params list of tensors)")
    return state, sigmas, shadow


def ema_state(net: nn.Module, state: Mapping[str, Tensor], shadow: list[Tensor],
              source: str) -> dict[str, Tensor]:
    """``state`` with each parameter of ``net`` that requires grad replaced by its EMA shadow
    (score_sde's ``shadow_params`` follow that order); UserError on a count or shape mismatch."""
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    if len(shadow) != len(trainable):
        raise UserError(f"{source}: its EMA holds {len(shadow)} tensors but the configured "
                        f"network has {len(trainable)} trainable parameters; check the config")
    out = dict(state)
    for name, average in zip(trainable, shadow, strict=True):
        if name in out and tuple(out[name].shape) != tuple(average.shape):
            raise UserError(f"{source}: EMA entry for {name} has shape {tuple(average.shape)}, "
                            f"the model {tuple(out[name].shape)}; the file is inconsistent")
        out[name] = average
    return out


def load_score_sde(checkpoint: str | Path, spec: ModelSpec,
                   weights: str = "ema") -> nn.Module:
    """The network described by ``spec`` with a score_sde checkpoint's EMA (default) or raw
    weights (eval mode). The stored levels must match the spec's: all of them for a network
    that knows only its levels, the largest and smallest for one that takes any sigma."""
    if weights not in WEIGHTS:
        raise UserError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    source = f"checkpoint {checkpoint}"
    state, sigmas, shadow = read_score_sde_checkpoint(checkpoint)
    net = build_from_spec(spec)
    if sigmas is not None:
        check_stored_sigmas(sigmas, spec.sigmas, source,
                            ends_only=bool(getattr(net, "continuous_sigma", True)))
    load_weights(net, state, source)  # names the missing/unexpected/wrongly shaped keys
    if weights == "ema":
        if shadow is None:
            raise UserError(f"{source} holds no EMA weights; use --weights raw")
        load_weights(net, ema_state(net, state, shadow, source), source)
    return net.eval()
