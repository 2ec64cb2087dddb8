"""Value types shared by configs, sampler settings and model specs, and the plain words for a
pydantic error's problem (:mod:`ncsn.spec.validation` formats whole messages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

MAX_THREADS = 256  # more CPU threads than any machine ncsn targets (100,000 crashed torch)
MAX_IMAGE_SIZE = 4096  # pixels per side; beyond it every network here runs out of memory


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
LevelsOrAuto = count_or_auto(1)
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
