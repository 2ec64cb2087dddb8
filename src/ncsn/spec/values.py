"""Value types shared by configs, sampler settings and model specs, and the one formatter that
turns a pydantic validation error into the one-line message ``path: problem``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ValidationError

from ncsn.errors import UserError


def count_or_auto(minimum: int) -> Any:
    """``int | "auto"`` with the int at least ``minimum`` (a pydantic annotation)."""

    def check(value: int | str) -> int | str:
        if not isinstance(value, str) and value < minimum:
            raise ValueError(f"must be >= {minimum} (or 'auto')")
        return value

    return Annotated[int | Literal["auto"], AfterValidator(check)]


def _positive_or_auto(value: float | str) -> float | str:
    if not isinstance(value, str) and value <= 0:
        raise ValueError("must be > 0 (or 'auto')")
    return value


PositiveOrAuto = Annotated[float | Literal["auto"], AfterValidator(_positive_or_auto)]
LevelsOrAuto = count_or_auto(1)
ThreadsOrAuto = count_or_auto(0)

PLAIN = {"greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}",
         "less_than": "must be < {lt}", "less_than_equal": "must be <= {le}",
         "extra_forbidden": "unknown field", "missing": "required field is missing",
         "too_short": "must hold at least {min_length} value(s)",
         "too_long": "must hold at most {max_length} values"}
SETTINGS = "settings"  # the field under which a sampler's settings sit (tagged by the sampler)


def plain(err: Mapping[str, Any]) -> str:
    """The problem of one pydantic error in plain words (no path)."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in PLAIN:
        return PLAIN[kind].format(**ctx)
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def describe(err: Mapping[str, Any], label: Callable[[Sequence[str]], str] | None = None) -> str:
    """One pydantic error as ``path: problem`` in plain words. A sampler's settings are tagged by
    the sampler's name (``settings.<sampler>.<field>``): the path names the field alone, an
    unknown setting says which samplers have it, an unknown sampler lists the known ones.
    ``label`` renders the path (default: dotted, e.g. ``sampling.eta``)."""
    from ncsn.spec.samplers import SAMPLER_SETTINGS, setting_owners

    loc = [str(p) for p in err["loc"]]
    kind, sampler = err["type"], None
    if SETTINGS in loc:
        at = loc.index(SETTINGS)
        sampler = loc[at + 1] if at + 1 < len(loc) else None
        loc = loc[:at] + loc[at + 2:]
    if kind == "union_tag_invalid":
        loc.append("sampler")
        msg = (f"unknown sampler {(err.get('ctx') or {}).get('tag')!r}; choose one of "
               f"{', '.join(SAMPLER_SETTINGS)}")
    elif kind == "extra_forbidden" and sampler in SAMPLER_SETTINGS:
        owners = setting_owners().get(loc[-1], [])
        where = f" (a setting of {', '.join(owners)})" if owners else ""
        fields = ", ".join(SAMPLER_SETTINGS[sampler].option_names()) or "none"
        msg = f"not a setting of sampler {sampler}{where}; its settings: {fields}"
    else:
        msg = plain(err)
    path = (label or ".".join)(loc) if loc else "(top level)"
    return f"{path}: {msg}"


def user_error(err: ValidationError, where: str = "",
               label: Callable[[Sequence[str]], str] | None = None) -> UserError:
    """A :class:`UserError` ``<where><path>: problem; ...`` for every problem of ``err``."""
    return UserError(where + "; ".join(describe(e, label) for e in err.errors()))
