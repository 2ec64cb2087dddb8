"""Behaviour kept across redesigns: model files written by ncsn at commit 45bc4f9 (including a
spec in the oldest form) still load, and every sampler draws from them the same images, byte for
byte, as that code did (hashes recorded by tests/data/compat/record.py before the change).
Sampling draws one batch: since ``ncsn sample --resume`` each later batch has its own derived
seed, batch 0 the seed itself; the one-batch hashes were re-recorded with the code of commit
13ca09d, before that change, and the new code gives the same bytes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import ncsn

DATA = Path(__file__).parent / "data" / "compat"
HASHES: dict[str, str] = json.loads((DATA / "hashes.json").read_text())


def _recorder():
    spec = importlib.util.spec_from_file_location("compat_record", DATA / "record.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_record"] = module
    spec.loader.exec_module(module)
    return module


RECORD = _recorder()
RUNS = [(stem, label, sampler, kwargs)
        for stem, runs in (("continuous", RECORD.CONTINUOUS_RUNS),
                           ("discrete", RECORD.DISCRETE_RUNS),
                           ("legacy", [("default", None, {})]))
        for label, sampler, kwargs in runs]


@pytest.mark.parametrize(("stem", "label", "sampler", "kwargs"), RUNS,
                         ids=[f"{r[0]}-{r[1]}" for r in RUNS])
def test_old_model_files_sample_the_recorded_images(stem, label, sampler, kwargs) -> None:
    model = ncsn.load(DATA / stem)
    images = model.sample(6, sampler=sampler, seed=3, batch_size=6, **kwargs)
    assert RECORD.digest(images) == HASHES[f"{stem}/sample/{label}"]


@pytest.mark.parametrize("stem", ["continuous", "discrete", "legacy"])
def test_old_model_files_inpaint_the_recorded_images(stem) -> None:
    model = ncsn.load(DATA / stem)
    done = model.inpaint(model.sample(2, seed=5), "right", k=2, seed=7, batch_size=3)
    assert RECORD.digest(done) == HASHES[f"{stem}/inpaint/default"]
