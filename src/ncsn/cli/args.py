"""argparse types of the command line's numbers, the one place a numeric flag is checked: its
text is read as YAML (``1e-3``, ``1e5``) and validated by a pydantic annotation with bounds,
NaN and infinity refused, when the arguments are parsed, so a bad value is one line (exit 2)
before any work: ``ncsn sample: error: argument --nfe: '1e12': must be <= 100000``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Annotated, Any

import yaml
from pydantic import Field, TypeAdapter, ValidationError

from ncsn.spec.values import FINITE, MAX_SEED, Sigma, plain


def typed(annotation: Any, name: str) -> Callable[[str], Any]:
    """The argparse type that reads a flag's text as YAML and validates it by ``annotation``
    (``name`` names the type in argparse's messages)."""
    from ncsn.config import parse_yaml

    adapter: TypeAdapter[Any] = TypeAdapter(annotation, config=FINITE)

    def parse(text: str) -> Any:
        try:
            value = parse_yaml(text)
        except yaml.YAMLError:
            value = text
        try:
            return adapter.validate_python(value)
        except ValidationError as err:
            raise argparse.ArgumentTypeError(f"{text!r}: {plain(err.errors()[0])}") from None

    parse.__name__ = name
    return parse


def count(maximum: int, minimum: int = 1) -> Callable[[str], int]:
    """An integer flag in [``minimum``, ``maximum``]."""
    return typed(Annotated[int, Field(ge=minimum, le=maximum)], "count")


def number(**bounds: float) -> Callable[[str], float]:
    """A finite float flag within ``bounds`` (pydantic's ``gt``, ``ge``, ``lt``, ``le``)."""
    return typed(Annotated[float, Field(**bounds)], "number")


finite = number()
positive = number(gt=0)
fraction = number(ge=0, le=1)
sigma = typed(Sigma, "sigma")  # a noise level, in [MIN_SIGMA, MAX_SIGMA]
seed = count(MAX_SEED, minimum=0)
