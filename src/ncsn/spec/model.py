"""What a model file is: :class:`ModelSpec`, the JSON beside a model's ``.safetensors`` weights.

A spec holds the network section (registry name and hyper-parameters), the image shape, the
noise levels sigma_1 > ... > sigma_L, the data space (logit or pixels), the stored sampling
choice and free-form provenance. :meth:`ModelSpec.from_json` reads every form ncsn has written
(migration in :func:`migrate`, the only place that knows older forms) and checks every value;
:meth:`ModelSpec.to_json` writes the current form.

Forms: 1 (no ``format`` key; ``sampling`` held ``sampler``, ``schedule``, ``nfe``,
``num_levels``, ``rho``, ``settings`` and ``logit``, or, before the sampler registry,
annealed-Langevin settings at its top level) and 2 (this one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ncsn.errors import UserError
from ncsn.spec.samplers import DEFAULT_RHO, AnnealedLangevin, AnySettings, Schedule
from ncsn.spec.validation import user_error
from ncsn.spec.values import FINITE, MAX_IMAGE_SIZE, MAX_LEVELS, MAX_NFE, Channels, Sigma

if TYPE_CHECKING:
    from torch import Tensor

FORMAT = 2
# annealed-Langevin settings that form-1 specs written before the sampler registry kept at the
# top of "sampling"
LEGACY_SETTINGS = ("n_steps_each", "step_size", "convention", "final_denoise")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, **FINITE)


class DataSpace(_Frozen):
    """The space the network models: pixels in [0, 1], or their logits (``logit``, the
    official code's ``logit_transform``; samples are mapped back through a sigmoid)."""

    logit: bool = False


class StoredSampling(_Frozen):
    """A model's default sampling choice: the sampler with its settings, the schedule (None:
    the sampler's default), a budget ``nfe``, ``num_levels``, the Karras ``rho`` and the lowest
    level ``sigma_min`` of a geometric or Karras schedule (None: the model's own)."""

    settings: AnySettings = Field(default_factory=AnnealedLangevin)
    schedule: Schedule | None = None
    nfe: int | None = Field(default=None, gt=0, le=MAX_NFE)
    num_levels: int | None = Field(default=None, gt=0, le=MAX_LEVELS)
    rho: float = Field(default=DEFAULT_RHO, gt=0)
    sigma_min: Sigma | None = None

    @property
    def sampler(self) -> str:
        return self.settings.sampler

    def to_json(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "schedule": self.schedule, "nfe": self.nfe,
                "num_levels": self.num_levels, "rho": self.rho, "sigma_min": self.sigma_min,
                "settings": self.settings.given()}


class ModelSpec(_Frozen):
    """Everything but the weights: enough to rebuild the network and sample from it."""

    network: dict[str, Any]
    channels: Channels
    image_size: int = Field(ge=1, le=MAX_IMAGE_SIZE)
    sigmas: tuple[Sigma, ...]
    data: DataSpace = Field(default_factory=DataSpace)
    sampling: StoredSampling = Field(default_factory=StoredSampling)
    provenance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("network")
    @classmethod
    def _named(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(v.get("name"), str):
            raise ValueError("must be an object with a 'name' (a network registry name)")
        return v

    @field_validator("sigmas")
    @classmethod
    def _levels(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not 1 <= len(v) <= MAX_LEVELS:
            raise ValueError(f"must hold 1 to {MAX_LEVELS} noise levels, got {len(v)}")
        if any(b > a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("noise levels must run from largest to smallest")
        return v

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model's images."""
        return self.channels, self.image_size, self.image_size

    def sigma_tensor(self) -> Tensor:
        """The noise levels as a float32 tensor (on the CPU)."""
        import torch

        return torch.tensor(self.sigmas, dtype=torch.float32)

    def to_json(self) -> dict[str, Any]:
        """The current form, JSON-ready."""
        return {"format": FORMAT, "network": dict(self.network), "channels": self.channels,
                "image_size": self.image_size, "sigmas": list(self.sigmas),
                "data": self.data.model_dump(), "sampling": self.sampling.to_json(),
                "provenance": dict(self.provenance)}

    @classmethod
    def from_json(cls, raw: Any, source: str = "model spec") -> ModelSpec:
        """Read any form ncsn wrote (:func:`migrate`); UserError ``<source>: field: problem``."""
        if not isinstance(raw, Mapping):
            raise UserError(f"{source} must be a JSON object")
        try:
            return cls.model_validate(migrate(raw, source))
        except ValidationError as err:
            raise user_error(err, f"{source}: ") from None


def _object(value: Any, field: str, source: str) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else UserError ``<source>: <field>: ...``."""
    if not isinstance(value, Mapping):
        raise UserError(f"{source}: {field}: must be an object")
    return value


def _stored_sampling(sampling: Any, source: str) -> dict[str, Any]:
    """The JSON of a stored sampling choice ({"sampler", "settings", "schedule", ...}) as the
    fields of :class:`StoredSampling` (the sampler's name tags its settings)."""
    sampling = _object(sampling, "sampling", source)
    settings = _object(sampling.get("settings") or {}, "sampling.settings", source)
    out = {k: v for k, v in sampling.items() if k not in ("sampler", "settings")}
    out["settings"] = {"sampler": sampling.get("sampler", "annealed_langevin"), **settings}
    return out


def migrate(raw: Mapping[str, Any], source: str = "model spec") -> dict[str, Any]:
    """A spec of any form as the current form's fields (values still unchecked)."""
    form = raw.get("format", 1)
    if form == FORMAT:
        out = {k: v for k, v in raw.items() if k != "format"}
        if "sampling" in out:
            out["sampling"] = _stored_sampling(out["sampling"], source)
        return out
    if form != 1:
        raise UserError(f"{source}: format {form!r} is not one this ncsn reads (1 or "
                        f"{FORMAT}); a newer ncsn wrote it?")
    known = ("network", "channels", "image_size", "sigmas", "sampling")
    out = {k: raw[k] for k in known[:-1] if k in raw}
    sampling = _object(raw.get("sampling") or {}, "sampling", source)
    settings = dict(_object(sampling.get("settings") or {}, "sampling.settings", source))
    settings.update({k: sampling[k] for k in LEGACY_SETTINGS if k in sampling})
    rest = {k: v for k, v in sampling.items() if k not in (*LEGACY_SETTINGS, "logit")}
    out["sampling"] = _stored_sampling({**rest, "settings": settings}, source)
    out["data"] = {"logit": bool(sampling.get("logit", False))}
    out["provenance"] = {k: v for k, v in raw.items() if k not in known}
    return out
