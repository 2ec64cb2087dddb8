"""Typed experiment configs: YAML validated on load, ``--set key=value`` overrides.

A config has six sections: ``data``, ``model`` (the network section for
:func:`ncsn.nets.build_network`), ``noise``, ``training``, ``sampling`` and ``eval``.
Unknown fields and bad values raise :class:`ncsn.errors.UserError` naming the field path,
e.g. ``training.lr: must be > 0``.
"""

from __future__ import annotations

import copy
import importlib.resources
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ncsn import files
from ncsn.errors import UserError
from ncsn.spec.model import DataSpace, ModelSpec, StoredSampling
from ncsn.spec.samplers import DEFAULT_RHO, AnnealedLangevin, AnySettings, Schedule
from ncsn.spec.validation import user_error
from ncsn.spec.values import (
    FINITE,
    MAX_IMAGE_SIZE,
    MAX_LEVELS,
    MAX_NFE,
    MAX_TRAINING_SEED,
    Channels,
    LevelsOrAuto,
    Sigma,
    SigmaOrAuto,
    ThreadsOrAuto,
)


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-3`` (no dot) as a float, like Python does."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with floats such as ``2e-4`` (YAML 1.1 would give a string); nesting
    too deep for PyYAML's recursive parser is a ``yaml.YAMLError`` like any other bad YAML."""
    try:
        return yaml.load(text, Loader=_YamlLoader)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML syntax error as one line (PyYAML prints several, with a caret under the text)."""
    problem = getattr(err, "problem", None) or " ".join(str(err).split())
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start is not None:
        problem += f" ({context} that starts at line {start.line + 1})"
    return problem


def _yaml_position(err: yaml.YAMLError) -> str:
    """``:line:column`` (1-based) of a YAML syntax error, or "" when PyYAML gives none."""
    mark = getattr(err, "problem_mark", None)
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def _annotation_kinds(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (``int | None`` -> {int, NoneType})."""
    args, origin = typing.get_args(annotation), typing.get_origin(annotation)
    if origin is Literal:
        return {type(a) for a in args}
    if origin is Annotated:
        return _annotation_kinds(args[0])
    return {annotation} if not args else set().union(*(_annotation_kinds(a) for a in args))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, **FINITE)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_number_mixups(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse ``true`` for a number field (pydantic reads it as 1) and a string such as
        "yes" for a true/false field (pydantic reads it as True)."""
        kinds = _annotation_kinds(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
            raise ValueError(f"must be a number, not {str(value).lower()}")
        if isinstance(value, str) and bool in kinds and str not in kinds:
            raise ValueError(f"must be true or false, not {value!r}")
        return value


class DataConfig(_Section):
    """Which images to train on and the training transforms (paper, Appendix B.1)."""

    name: str = "mnist5k"
    root: str | None = None
    image_size: int | None = Field(default=None, gt=0, le=MAX_IMAGE_SIZE)
    channels: Channels | None = None
    dequantize: bool = True
    hflip: bool = False
    # augmentation: translate each training image by up to this many pixels (zero-filled)
    max_shift: int = Field(default=0, ge=0, le=8)
    logit: bool = False
    download: bool = False


class NoiseConfig(_Section):
    """Noise levels for training. ``distribution: discrete`` (the paper) trains on
    ``num_levels`` geometric levels; ``log_uniform`` (over [sigma_min, sigma_max]) and
    ``log_normal`` (log sigma ~ N(p_mean, p_std^2), Karras et al. 2022) draw a sigma per sample,
    for networks conditioned on continuous sigma; the geometric levels then serve as the
    default sampling schedule and the test-loss levels. ``"auto"`` applies NCSNv2 techniques
    1 (sigma_max) and 2 (L)."""

    distribution: Literal["discrete", "log_uniform", "log_normal"] = "discrete"
    sigma_max: SigmaOrAuto = 1.0
    sigma_min: Sigma = 0.01
    num_levels: LevelsOrAuto = 10
    p_mean: float = -1.2
    p_std: float = Field(default=1.2, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> NoiseConfig:
        if not isinstance(self.sigma_max, str) and self.sigma_max < self.sigma_min:
            raise ValueError(f"sigma_max ({self.sigma_max}) must be >= sigma_min "
                             f"({self.sigma_min})")
        return self


MAX_POSTHOC_GAMMAS = 16


class PosthocEMAConfig(_Section):
    """Snapshots for post-hoc EMA (Karras et al. 2024, Sec. 3.2; :mod:`ncsn.training.posthoc`):
    one extra power-function EMA per ``gammas`` entry, each written to ``<run>/posthoc_ema``
    every ``every`` steps (and at the last step), so ``ncsn posthoc-ema`` can reconstruct the EMA
    of any length after training. A gamma's relative length is
    sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))); the defaults 16.97 and 6.94 are
    the paper's sigma_rel 0.05 and 0.10."""

    gammas: tuple[Annotated[float, Field(gt=0, le=1000)], ...] = (16.97, 6.94)
    every: int = Field(gt=0)

    @field_validator("gammas")
    @classmethod
    def _distinct(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not 1 <= len(v) <= MAX_POSTHOC_GAMMAS:
            raise ValueError(f"must hold 1 to {MAX_POSTHOC_GAMMAS} gammas")
        if len(set(v)) != len(v):
            raise ValueError("must be distinct (each gamma is one EMA)")
        return v


class TrainingConfig(_Section):
    """Optimisation (Adam, paper defaults), checkpoints, logging and devices."""

    loss: Literal["dsm", "ssm"] = "dsm"
    anneal_power: float = 2.0
    ssm_projection: Literal["gaussian", "rademacher"] = "gaussian"
    ssm_variance_reduced: bool = True
    batch_size: int = Field(default=128, gt=0)
    n_iters: int = Field(default=200_000, gt=0, le=10**8)  # checkpoint names have 8 digits
    lr: float = Field(default=1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    ema_rate: float | None = Field(default=None, ge=0, lt=1)
    # warm the constant-rate EMA up: rate min(ema_rate, (1 + t) / (10 + t)) at step t
    # (TensorFlow's ExponentialMovingAverage with num_updates)
    ema_warmup: bool = False
    # power-function EMA (Karras et al. 2024): rate (1 - 1/t)^(ema_gamma + 1) at step t, which
    # weights iterate i by about i^ema_gamma (instead of a constant ema_rate)
    ema_gamma: float | None = Field(default=None, gt=0, le=1000)
    # post-hoc EMA snapshots (PosthocEMAConfig); null = off
    posthoc_ema: PosthocEMAConfig | None = None
    # learning rate: linear warm-up over `warmup` steps (score_sde: 5000), then constant or a
    # cosine decay to lr * lr_final at n_iters
    warmup: int = Field(default=0, ge=0)
    lr_decay: Literal["none", "cosine"] = "none"
    lr_final: float = Field(default=0.0, ge=0, le=1)
    # gradient clipping to this global 2-norm (score_sde: 1.0); null = no clipping
    grad_clip: float | None = Field(default=None, gt=0)
    snapshot_freq: int = Field(default=5000, gt=0)
    keep_last: int = Field(default=3, gt=0)
    seed: int = Field(default=0, ge=0, le=MAX_TRAINING_SEED)
    skip_nonfinite: bool = False
    log_freq: int = Field(default=50, gt=0)
    test_freq: int = Field(default=0, ge=0)
    test_batch_size: int = Field(default=256, gt=0)
    sample_freq: int = Field(default=0, ge=0)
    device: str = "auto"
    # CPU intra-op threads: 0 = torch's default (all cores), N, or "auto" = the idle cores
    # (ncsn.devices.idle_core_threads)
    threads: ThreadsOrAuto = 0
    compile: bool = False
    amp: bool = False
    channels_last: bool = False
    # DSM weight: "power" = sigma^anneal_power (paper); "edm" = that times
    # (sigma^2 + sigma_data^2) / sigma_data^2 with the network's sigma_data (Karras et al. 2022)
    weighting: Literal["power", "edm"] = "power"
    # class-conditional networks (model.num_classes > 0): the probability that a training label
    # is replaced by "no label", which trains the unconditional score too (classifier-free
    # guidance, Ho & Salimans 2022)
    label_dropout: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _one_ema(self) -> TrainingConfig:
        if self.ema_rate is not None and self.ema_gamma is not None:
            raise ValueError("set either ema_rate (constant) or ema_gamma (power function), "
                             "not both")
        if self.ema_warmup and self.ema_rate is None:
            raise ValueError("ema_warmup: true needs a constant ema_rate (the power-function "
                             "EMA of ema_gamma has its own start)")
        return self

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("both values must lie in [0, 1)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return v


class SamplingConfig(_Section):
    """How the trained model samples by default (stored in its model file): a registered
    ``sampler`` (``ncsn samplers``) with its own settings as further fields of the section
    (annealed Langevin's ``n_steps_each``, ``step_size`` (``auto`` = NCSNv2 technique 4),
    ``convention``, ``final_denoise``; consistent annealed sampling's ``eta``; ...; null means
    the default), the ``schedule`` (``model``, ``geometric``, ``karras``; default: the
    sampler's), a budget ``nfe`` of network evaluations, ``num_levels``, ``rho`` (Karras), the
    lowest level ``sigma_min`` of a geometric or Karras sampling schedule (null: the model's) and
    how many ``num_samples`` the trainer's grids and the demo draw."""

    settings: AnySettings = Field(default_factory=AnnealedLangevin)
    schedule: Schedule | None = None
    nfe: int | None = Field(default=None, gt=0, le=MAX_NFE)
    num_levels: int | None = Field(default=None, gt=0, le=MAX_LEVELS)
    rho: float = Field(default=DEFAULT_RHO, gt=0)
    sigma_min: Sigma | None = None
    num_samples: int = Field(default=64, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _nest_settings(cls, raw: Any) -> Any:
        """The YAML section is flat: ``sampler`` and its settings sit beside the plan fields."""
        if not isinstance(raw, Mapping) or "settings" in raw:
            return raw
        own = {"schedule", "nfe", "num_levels", "rho", "sigma_min", "num_samples"}
        settings = {k: v for k, v in raw.items() if k not in own and v is not None}
        settings.setdefault("sampler", "annealed_langevin")
        return {**{k: v for k, v in raw.items() if k in own}, "settings": settings}

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        del out["settings"]
        return {"sampler": self.settings.sampler, **self.settings.given(), **out}

    @property
    def sampler(self) -> str:
        return self.settings.sampler

    def stored(self) -> StoredSampling:
        """This section as a model file's stored sampling choice."""
        return StoredSampling(settings=self.settings, schedule=self.schedule, nfe=self.nfe,
                              num_levels=self.num_levels, rho=self.rho,
                              sigma_min=self.sigma_min)


class EvalConfig(_Section):
    """Periodic FID/KID on a small sample set; the best checkpoint by it is kept."""

    every: int = Field(default=0, ge=0)
    num_samples: int = Field(default=500, gt=1)
    metric: Literal["fid", "kid"] = "fid"
    reference: str = "test"


class Config(_Section):
    """A whole experiment."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "unet_small"})
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def validate_config(raw: Any, source: str = "config") -> Config:
    """Validate a plain mapping into a :class:`Config` (UserError naming the field path)."""
    if not isinstance(raw, Mapping):
        raise UserError(f"{source}: must be a mapping of sections (data, model, noise, ...)")
    if "classifier" in raw:
        raise UserError(f"{source} is a classifier config: train it with ncsn train-classifier "
                        "MODEL --config ...")
    try:
        config = Config.model_validate(dict(raw))
    except ValidationError as err:
        raise user_error(err, f"{source}: ") from None
    from ncsn.nets.registry import check_network_section, network_fields

    check_network_section(config.model, f"{source}: model")
    if config.data.logit and "logit_input" in network_fields(config.model["name"]):
        # the official network skips its 2x - 1 input rescaling on logit data (docs/networks.md)
        config.model.setdefault("logit_input", True)
    return config


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``key.sub=value`` overrides (values parsed as YAML) applied to a copy of ``raw``."""
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            raise UserError(f"--set {item!r}: expected section.field=value, e.g. "
                            "training.lr=2e-4")
        try:
            value = parse_yaml(text)
        except yaml.YAMLError as err:
            raise UserError(f"--set {item!r}: the value is not valid YAML: "
                            f"{_yaml_problem(err)}") from None
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[:depth + 1])
                raise UserError(f"--set {item!r}: {where} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def packaged_config_dir() -> Path:
    """The folder of YAML recipes shipped inside the package (``ncsn/configs``)."""
    return Path(str(importlib.resources.files("ncsn").joinpath("configs")))


def packaged_config_names() -> list[str]:
    """Names (file stems) of the packaged configs, sorted."""
    return sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))


def config_title(text: str) -> str:
    """A config's one-line title: its leading ``#`` comment up to the first colon (the
    convention of the packaged configs), else the comment's first line; "" without one."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    comment = " ".join(lines)
    head, colon, _ = comment.partition(":")
    return head.strip() if colon else (lines[0] if lines else "")


def resolve_config_path(name_or_path: str | Path) -> Path:
    """An existing YAML file, or a packaged config named by its stem (``mnist5k_cpu`` or
    ``mnist5k_cpu.yaml``); UserError listing the packaged names when it is neither."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if len(path.parts) == 1:
        packaged = packaged_config_dir() / f"{path.name.removesuffix('.yaml')}.yaml"
        if packaged.is_file():
            return packaged
    raise UserError(f"cannot read config {str(name_or_path)!r}: no such file and no packaged "
                    f"config of that name; packaged: {', '.join(packaged_config_names())} "
                    "(ncsn configs lists them)")


def read_config_mapping(name_or_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The file and the top-level mapping of a YAML config (a file or a packaged name, see
    :func:`resolve_config_path`); UserError for an unreadable file, bad YAML or no mapping."""
    path = resolve_config_path(name_or_path)
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise UserError(f"cannot read config {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save the config as "
                        "UTF-8") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}{_yaml_position(err)}: invalid YAML: {_yaml_problem(err)}"
                        ) from None
    if not isinstance(raw, Mapping):
        raise UserError(f"{path}: must be a mapping of sections (data, model, noise, ...)")
    return path, dict(raw)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (a file or a packaged name, see :func:`resolve_config_path`), apply
    ``--set`` overrides and validate it."""
    path, raw = read_config_mapping(path)
    return validate_config(apply_overrides(raw, overrides), source=str(path))


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain dict (lists, no tuples) for YAML files and checkpoints."""
    return config.model_dump(mode="json")


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (section order kept)."""
    path = Path(path)
    files.write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path


def model_spec(config: Config, *, channels: int, image_size: int, sigmas: Iterable[float],
               provenance: Mapping[str, Any] | None = None) -> ModelSpec:
    """The spec of a model trained (or converted) with ``config``: its network section, data
    space and sampling choice, for images of ``channels`` x ``image_size`` and ``sigmas``."""
    return ModelSpec(network=dict(config.model), channels=channels, image_size=image_size,
                     sigmas=tuple(float(s) for s in sigmas),
                     data=DataSpace(logit=config.data.logit), sampling=config.sampling.stored(),
                     provenance=dict(provenance or {}))
