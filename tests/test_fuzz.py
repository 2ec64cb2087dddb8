"""Property-based fuzzing (hypothesis) of what ncsn reads from users: model specs (JSON dicts
of any form, mutated from a valid one or arbitrary) and image files (random bytes, PNGs with
corrupted bytes). Every input either loads or raises UserError, never another exception."""

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
