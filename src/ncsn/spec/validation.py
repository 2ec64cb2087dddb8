"""The one validator of sampler settings and the one formatter of validation errors: every
pydantic error of a config, a model spec, a CLI flag or an API argument becomes the one-line
message ``path: problem``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from ncsn.errors import UserError
from ncsn.spec.samplers import SAMPLER_SETTINGS, AnySettings, SamplerSettings, setting_owners
from ncsn.spec.values import plain, shown

SETTINGS = "settings"  # the field under which a sampler's settings sit (tagged by the sampler)
_TAGGED = TypeAdapter(dict[Literal["settings"], AnySettings])
# the path part pydantic adds for each member of a plain union (``float | Literal["auto"]``)
_UNION_MEMBER = re.compile(r"(float|int|str|bool|constrained-\w+|literal\[.*\])")


def describe(err: Mapping[str, Any], label: Callable[[Sequence[str]], str] | None = None) -> str:
    """One pydantic error as ``path: problem`` in plain words. A sampler's settings are tagged by
    the sampler's name (``settings.<sampler>.<field>``): the path names the field alone, an
    unknown setting says which samplers have it, an unknown sampler lists the known ones.
    ``label`` renders the path (default: dotted, e.g. ``sampling.eta``)."""
    loc = [shown(p) for p in err["loc"] if not _UNION_MEMBER.fullmatch(str(p))]
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
    """A :class:`UserError` ``<where><path>: problem; ...`` for every problem of ``err``; the
    problems of one path (one per member of a union) are joined by "or"."""
    problems: dict[str, list[str]] = {}
    for e in err.errors():
        path, _, problem = describe(e, label).partition(": ")
        problems.setdefault(path, []).append(problem)
    return UserError(where + "; ".join(f"{path}: {' or '.join(found)}"
                                       for path, found in problems.items()))


def build_settings(sampler: str, values: Mapping[str, Any], *, where: str = "",
                   label: Callable[[Sequence[str]], str] | None = None) -> SamplerSettings:
    """``sampler``'s settings from ``values`` (None values mean the default), validated once;
    a UserError ``<where><label(path)>: problem`` otherwise (unknown sampler, a setting of
    another sampler, a bad value)."""
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return _TAGGED.validate_python({SETTINGS: {"sampler": sampler, **given}})[SETTINGS]
    except ValidationError as err:
        raise user_error(err, where, label) from None
