"""Network registry: build any score network from its config section.

A section is a mapping with ``name`` (a registry name) and that network's hyper-parameters.
Every network class has a keyword-only constructor
``Cls(*, channels: int, image_size: int, sigmas: Tensor, **hyper_parameters)``; a class may omit
any of ``channels``, ``image_size``, ``sigmas`` (only those its signature names are passed).
Classes are imported lazily from their import path, so a missing module fails only when used.

A *backbone* network (:data:`BACKBONES`, e.g. ``unet_small``) outputs F(h, sigma), not a score:
its section also takes the preconditioning fields :data:`PRECOND_FIELDS` and it is built wrapped
in :class:`ncsn.nets.precond.Preconditioned`. Every network class says whether it accepts any
sigma (``continuous_sigma``; :func:`accepts_any_sigma`).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from ncsn.core import ScoreFn
from ncsn.errors import UserError
from ncsn.spec.values import MAX_WIDTH, shown

NETWORKS: dict[str, str] = {
    "cond_refinenet": "ncsn.nets.refinenet:CondRefineNetDilated",
    "ncsnv2": "ncsn.nets.ncsnv2:NCSNv2",
    "unet_small": "ncsn.nets.unet:UNetSmall",
    "mlp": "ncsn.nets.mlp:ToyMLP",
    "resnet_score": "ncsn.nets.resnet:ResNetScore",
    "ncsnpp": "ncsn.nets.ncsnpp:NCSNpp",
}
CONTEXT_ARGS = ("channels", "image_size", "sigmas")
# backbones and their default preconditioner (ncsn.nets.precond.PRECONDITIONERS)
BACKBONES: dict[str, str] = {"unet_small": "ncsnv2"}
PRECOND_FIELDS: dict[str, Any] = {"precond": "ncsnv2", "sigma_data": 0.5, "data_mean": 0.5}


def accepts_any_sigma(net: nn.Module) -> bool:
    """Whether ``net`` is conditioned on continuous sigma: its class says so with
    ``continuous_sigma = True`` (False, the default, for networks that know only their trained
    levels, like the paper's CondRefineNetDilated)."""
    return bool(getattr(net, "continuous_sigma", False))


def class_count(net: nn.Module) -> int:
    """The number of classes a class-conditional ``net`` takes labels of (``num_classes``; 0
    for an unconditional network, the default)."""
    return int(getattr(net, "num_classes", 0))


def labelled(net: Callable[..., Tensor], labels: Tensor) -> ScoreFn:
    """The score function x, sigma -> net(x, sigma, labels) of a class-conditional ``net``
    for one batch's ``labels`` (B,)."""
    return lambda x, sigma: net(x, sigma, labels)


def network_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (UserError listing the allowed names otherwise)."""
    if name not in NETWORKS:
        raise UserError(f"unknown network name {name!r}; allowed: {', '.join(NETWORKS)}")
    module_name, _, attr = NETWORKS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise UserError(f"network {name!r} is not available: module {module_name} is missing "
                        "from this installation") from err
    return getattr(module, attr)


def network_fields(name: str) -> dict[str, Any]:
    """Hyper-parameters of network ``name`` with their defaults (``inspect.Parameter.empty``
    for required ones); ``channels``, ``image_size`` and ``sigmas`` are not fields."""
    params = inspect.signature(network_class(name)).parameters
    fields = {p.name: p.default for p in params.values()
              if p.name not in CONTEXT_ARGS and p.kind == inspect.Parameter.KEYWORD_ONLY}
    if name in BACKBONES:
        fields.update({**PRECOND_FIELDS, "precond": BACKBONES[name]})
    return fields


# a real-valued hyper-parameter beyond this is a typo (no network has one above 20)
MAX_NETWORK_NUMBER = 1e6
# real-valued fields with a narrower meaning: (low, high, whether low itself is allowed)
NUMBER_RANGES: dict[str, tuple[float, float, bool]] = {
    "dropout": (0.0, 1.0, True), "sigma_data": (0.0, MAX_NETWORK_NUMBER, False)}


def _number_problem(value: Any, default: Any, field: str = "") -> str | None:
    """Why a number fits no network: NaN or infinite, an integer outside [1, MAX_WIDTH]
    ([0, MAX_WIDTH] where the default is 0, e.g. ``num_classes``), a real number outside its
    :data:`NUMBER_RANGES` entry or [-MAX_NETWORK_NUMBER, MAX_NETWORK_NUMBER]; None when it
    fits."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if isinstance(default, float):
        low, high, closed = NUMBER_RANGES.get(
            field, (-MAX_NETWORK_NUMBER, MAX_NETWORK_NUMBER, True))
        if not (low <= value if closed else low < value) or value > high:
            return f"must be a number in {'[' if closed else '('}{low:g}, {high:g}], got {value!r}"
    if isinstance(value, int) and isinstance(default, int):
        low = 0 if default == 0 else 1
        if not low <= value <= MAX_WIDTH:
            return f"must be an integer in [{low}, {MAX_WIDTH}], got {value!r}"
    return None


def _value_problem(value: Any, default: Any, field: str = "") -> str | None:
    """Why ``value`` does not fit a field whose default is ``default``: another type (ints pass
    for floats), a number out of bounds (:func:`_number_problem`), a list of other than at most
    MAX_WIDTH finite numbers in [0, MAX_WIDTH]; None when it fits or the field has no typed
    default."""
    if default is inspect.Parameter.empty or default is None:
        return None
    expected: tuple[type, ...]
    if isinstance(default, bool):
        expected = (bool,)
    elif isinstance(default, int):
        expected = (int,)
    elif isinstance(default, float):
        expected = (int, float)
    elif isinstance(default, (list, tuple)):
        expected = (list, tuple)
    else:
        expected = (type(default),)
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        return f"must be {type(default).__name__} (like the default {default!r}), got {value!r}"
    if isinstance(value, (list, tuple)):
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v) and 0 <= v <= MAX_WIDTH for v in value)
        if not numbers or len(value) > MAX_WIDTH:
            return f"must be a list of numbers in [0, {MAX_WIDTH}], got {value!r}"
        return None
    return None if isinstance(value, bool) else _number_problem(value, default, field)


def check_network_section(section: Mapping[str, Any], path: str = "network") -> None:
    """The one check of a network section: a registered ``name``, no unknown fields, every
    required field, values typed like the defaults and within bounds. UserError
    ``<path>.<field>: problem``."""
    name = section.get("name")
    if not isinstance(name, str):
        raise UserError(f"{path}.name: required, a network registry name; allowed: "
                        f"{', '.join(NETWORKS)}")
    if name not in NETWORKS:
        raise UserError(f"{path}.name: unknown network name {name!r}; allowed: "
                        f"{', '.join(NETWORKS)}")
    fields = network_fields(name)
    unknown = sorted(set(section) - set(fields) - {"name"}, key=str)
    if unknown:
        raise UserError(f"{path}.{shown(unknown[0])}: unknown field for network {name!r}; "
                        f"allowed: {', '.join(['name', *fields])}")
    missing = [f for f, d in fields.items() if d is inspect.Parameter.empty and f not in section]
    if missing:
        raise UserError(f"{path}.{missing[0]}: required for network {name!r}")
    for field, value in section.items():
        problem = None if field == "name" else _value_problem(value, fields[field], field)
        if problem:
            raise UserError(f"{path}.{field}: {problem} for network {name!r}")


def build_network(section: Mapping[str, Any], *, channels: int, image_size: int,
                  sigmas: Tensor) -> nn.Module:
    """Build the network ``section["name"]`` with the section's other keys as hyper-parameters.

    Unknown names and fields, missing required fields and mistyped values raise UserError
    (:func:`check_network_section`).
    """
    check_network_section(section)
    name = section["name"]
    cls = network_class(name)
    given = {k: v for k, v in section.items() if k != "name"}
    precond = {k: given.pop(k) for k in PRECOND_FIELDS if k in given}
    params = inspect.signature(cls).parameters
    context = {"channels": channels, "image_size": image_size, "sigmas": sigmas}
    kwargs = {k: v for k, v in context.items() if k in params}
    try:
        net = cls(**kwargs, **given)
        if name not in BACKBONES:
            return net
        from ncsn.nets.precond import Preconditioned

        kind = precond.pop("precond", BACKBONES[name])
        return Preconditioned(net, kind, **precond)
    except ValueError as err:  # a hyper-parameter value the network itself rejects
        raise UserError(f"model: network {name!r} rejects its fields: {err}; fix the model "
                        "section of the config") from None
