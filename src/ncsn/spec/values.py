"""Value types shared by configs, sampler settings and model specs, and the plain words for a
pydantic error's problem (:mod:`ncsn.spec.validation` formats whole messages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field

# Every bound on a value that enters (config, --set, spec JSON, CLI flag) lives here.
MAX_THREADS = 256  # more CPU threads than any machine ncsn targets (100,000 crashed torch)
MAX_IMAGE_SIZE = 4096  # pixels per side; beyond it every network here runs out of memory
MAX_LEVELS = 100_000  # noise levels of a schedule (the paper: 10; the protocol: 1,000)
MAX_NFE = 100_000  # network evaluations per image (the paper's 1,000 with room to spare)
MAX_IMAGES = 10_000_000  # images one command draws or reads (the protocol: 50,000)
MAX_BATCH = 65_536  # images per batch
MAX_SCALE = 64  # grid pixel enlargement
MAX_FRAMES = 10_000  # GIF frames
MAX_WIDTH = 4096  # any integer hyper-parameter of a network (widths, depths, blocks, classes)
MAX_STEPS = 10**9  # optimisation or solver steps
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit seed
# training's periodic test loss, sample grids and evaluation draw from training.seed + 1, 2, 3
MAX_TRAINING_SEED = MAX_SEED - 3
# noise levels in pixel units of [0, 1] images: technique 1 gives at most sqrt(3 * 4096^2) ~ 7100;
# beyond these bounds sigma^2 overflows or vanishes in float32
MIN_SIGMA, MAX_SIGMA = 1e-8, 1e6
# NaN and infinity are refused for every float field (JSON's NaN / Infinity, YAML's .nan / .inf)
FINITE = ConfigDict(allow_inf_nan=False)

Channels = Literal[1, 3]  # grey or RGB images
Sigma = Annotated[float, Field(ge=MIN_SIGMA, le=MAX_SIGMA, allow_inf_nan=False)]


def count_or_auto(minimum: int, maximum: int | None = None) -> Any:
    """``int | "auto"`` with the int in [``minimum``, ``maximum``] (a pydantic annotation)."""

    def check(value: int | str) -> int | str:
        if not isinstance(value, str) and value < minimum:
            raise ValueError(f"must be >= {minimum} (or 'auto')")
        if not isinstance(value, str) and maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum} (or 'auto')")
        return value

    return Annotated[int | Literal["auto"], AfterValidator(check)]


def _positive_or_auto(value: float | str) -> float | str:
    if not isinstance(value, str) and value <= 0:
        raise ValueError("must be > 0 (or 'auto')")
    return value


PositiveOrAuto = Annotated[float | Literal["auto"], AfterValidator(_positive_or_auto)]
SigmaOrAuto = Sigma | Literal["auto"]
LevelsOrAuto = count_or_auto(1, MAX_LEVELS)
ThreadsOrAuto = count_or_auto(0, MAX_THREADS)

PLAIN = {"greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}",
         "less_than": "must be < {lt}", "less_than_equal": "must be <= {le}",
         "extra_forbidden": "unknown field", "missing": "required field is missing",
         "too_short": "must hold at least {min_length} value(s)",
         "too_long": "must hold at most {max_length} values"}


def plain(err: Mapping[str, Any]) -> str:
    """The problem of one pydantic error in plain words (no path)."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in PLAIN:
        return PLAIN[kind].format(**ctx)
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def shown(key: object) -> str:
    """A field name as a message shows it: as is when it is printable text, else its repr
    (a key holding a newline or nothing stays on one line and visible)."""
    text = str(key)
    return text if text.isprintable() and text.strip() == text and text else repr(text)
