"""Property-based fuzzing (hypothesis) of what ncsn reads from users: model specs (JSON dicts
of any form, mutated from a valid one or arbitrary) and image files (random bytes, PNGs with
corrupted bytes). Every input either loads or raises UserError, never another exception."""

import copy
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from ncsn.errors import UserError  # noqa: E402
from ncsn.imageio import load_image  # noqa: E402
from ncsn.spec.model import ModelSpec  # noqa: E402

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = {"format": 2, "network": {"name": "cond_refinenet", "ngf": 4}, "channels": 1,
         "image_size": 8, "sigmas": [1.0, 0.1],
         "sampling": {"sampler": "annealed_langevin", "settings": {"n_steps_each": 2}}}

scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
fields = st.sampled_from(["format", "network", "channels", "image_size", "sigmas", "sampling",
                          "data", "provenance", "n_steps_each", "step_size", "name", "ngf",
                          "sampler", "settings", "nfe", "num_levels", "rho", "sigma_min",
                          "logit", "schedule", "eta", "snr", "s_churn"])


@st.composite
def mutated_specs(draw):
    """A valid spec with some fields (at the top, in network, sampling or its settings) replaced
    by arbitrary JSON values."""
    spec = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 4))):
        sampling = spec.get("sampling")
        settings = sampling.get("settings") if isinstance(sampling, dict) else None
        where = draw(st.sampled_from([spec, spec.get("network"), sampling, settings]))
        if isinstance(where, dict):
            where[draw(fields)] = draw(json_values)
    return spec


def _loads_or_refuses(raw) -> None:
    try:
        ModelSpec.from_json(raw, "m.json")
    except UserError as err:
        assert "\n" not in str(err)


@FUZZ
@given(mutated_specs())
def test_mutated_specs_load_or_are_refused(raw):
    _loads_or_refuses(raw)


@FUZZ
@given(json_values | st.dictionaries(fields, json_values, max_size=6))
def test_arbitrary_json_specs_load_or_are_refused(raw):
    _loads_or_refuses(raw)


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}.get(mode)
    shape = (size[1], size[0]) if channels == 1 else (size[1], size[0], channels)
    Image.fromarray(np.zeros(shape, dtype=np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


def _reads_or_refuses(data: bytes, channels) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.png"
        path.write_bytes(data)
        try:
            image = load_image(path, channels)
        except UserError as err:
            assert "\n" not in str(err)
        else:
            assert image.dtype == np.float32 and image.ndim == 3


@FUZZ
@given(st.binary(max_size=256) | st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
       st.sampled_from([None, 1, 3]))
def test_random_bytes_read_or_are_refused(data, channels):
    _reads_or_refuses(data, channels)


@FUZZ
@given(st.sampled_from(["L", "RGB", "RGBA", "LA"]), st.integers(1, 6), st.integers(1, 6),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
       st.sampled_from([None, 1, 3]))
def test_corrupted_pngs_read_or_are_refused(mode, width, height, flips, channels):
    data = bytearray(_png(mode, (width, height)))
    for at, value in flips:
        data[at % len(data)] = value
    _reads_or_refuses(bytes(data), channels)


# ---------------------------------------------------------------------- configs and --set
from ncsn.config import (  # noqa: E402
    Config,
    apply_overrides,
    config_to_dict,
    load_config,
    packaged_config_dir,
    packaged_config_names,
    parse_yaml,
    validate_config,
)

CONFIG_FUZZ = settings(max_examples=60, deadline=None,
                       suppress_health_check=[HealthCheck.too_slow])
_PARSED = {name: parse_yaml((packaged_config_dir() / f"{name}.yaml").read_text())
           for name in packaged_config_names()}
# the score-model configs (a classifier config has its own schema and refusal, test_classifier_*)
PACKAGED = {name: raw for name, raw in _PARSED.items() if "classifier" not in raw}


def _paths(node, prefix=()):
    """Every key path of a nested mapping (sections and leaves)."""
    for key, value in node.items():
        yield (*prefix, str(key))
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, str(key)))


yaml_keys = st.text(max_size=6) | st.integers(-3, 3) | st.booleans() | st.none()
yaml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(yaml_keys, inner, max_size=4), max_leaves=12)
KNOWN_PATHS = sorted({p for raw in PACKAGED.values() for p in _paths(raw)})
config_paths = (st.sampled_from(KNOWN_PATHS)
                | st.sampled_from(KNOWN_PATHS).flatmap(
                    lambda p: st.sampled_from([p[:-1], p]).map(lambda q: (*q, "unknown_key")))
                | st.lists(st.text("abcdeimnorst_.", min_size=1, max_size=8), min_size=1,
                           max_size=3).map(tuple))


def _valid(config: Config) -> None:
    """A loaded config is valid through and through: it saves and reloads as itself."""
    assert isinstance(config, Config)
    assert validate_config(config_to_dict(config)) == config


def _names_a_mutated_field(err: UserError, mutated: list[tuple[str, ...]]) -> None:
    message = str(err)
    assert "\n" not in message, message
    assert any(".".join(path[:depth]) in message
               for path in mutated for depth in range(1, len(path) + 1)), (message, mutated)


@CONFIG_FUZZ
@given(st.sampled_from(sorted(PACKAGED)),
       st.lists(st.tuples(config_paths, yaml_values), min_size=1, max_size=3))
def test_mutated_packaged_configs_load_or_name_the_field(name, mutations):
    raw = copy.deepcopy(PACKAGED[name])
    mutated = []
    for path, value in mutations:
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[path[-1]] = value
            mutated.append(path)
    try:
        config = validate_config(raw, name)
    except UserError as err:
        _names_a_mutated_field(err, mutated)
    else:
        _valid(config)


yaml_texts = (json_values.map(lambda v: json.dumps(v))
              | st.text(max_size=12)
              | st.sampled_from(["", "~", ".nan", "-.inf", "1e400", "0x10", "!!binary aGk=",
                                 "[1, 2", "{a: 1}", "2e-4", "yes", "&a [*a]", "- - -"]))


@CONFIG_FUZZ
@given(st.sampled_from(sorted(PACKAGED)),
       st.lists(st.tuples(config_paths, yaml_texts), min_size=1, max_size=3))
def test_random_set_overrides_load_or_name_the_field(name, overrides):
    items = [f"{'.'.join(path)}={text}" for path, text in overrides]
    try:
        config = load_config(name, items)
    except UserError as err:
        _names_a_mutated_field(err, [tuple(item.partition("=")[0].split(".")) for item in items])
    else:
        _valid(config)
        assert config == validate_config(apply_overrides(PACKAGED[name], items))


@CONFIG_FUZZ
@given(st.sampled_from(sorted(PACKAGED)),
       st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=3)),
                min_size=1, max_size=4))
def test_packaged_yaml_with_corrupted_bytes_loads_or_is_refused(name, flips):
    data = bytearray((packaged_config_dir() / f"{name}.yaml").read_bytes())
    for at, chunk in flips:
        data[at % len(data): at % len(data) + len(chunk)] = chunk
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(bytes(data))
        try:
            config = load_config(path)
        except UserError as err:
            assert "\n" not in str(err) and str(path) in str(err), str(err)
        else:
            _valid(config)
