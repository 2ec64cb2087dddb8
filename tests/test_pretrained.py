"""Models shipped in the package (``pretrained:NAME``): found by name, hash-checked on load, and
a corrupt, truncated or mismatched file is a one-line error (exit 2) before any work. The tests
ship a tiny stand-in model into a temporary package folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import ncsn
import ncsn.nets.pretrained as pretrained
from ncsn.cli import main
from ncsn.errors import UserError
from ncsn.nets import build_network
from ncsn.nets.io import save_model
from ncsn.spec.model import ModelSpec

SECTION = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2}


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch) -> Path:
    """A package folder shipping ``tiny`` (and nothing else)."""
    folder = tmp_path / "pretrained_models"
    torch.manual_seed(0)
    spec = ModelSpec(network=SECTION, channels=1, image_size=8, sigmas=(5.0, 0.5, 0.05),
                     provenance={"title": "a tiny stand-in", "command": "ncsn train ...",
                                 "quality": {"digit_confident": 0.5}})
    net = build_network(SECTION, channels=1, image_size=8, sigmas=spec.sigma_tensor())
    save_model(folder / "tiny", net, spec)
    monkeypatch.setattr(pretrained, "pretrained_dir", lambda: folder)
    return folder


def test_a_shipped_model_loads_by_name_and_samples(shipped, tmp_path, capsys):
    model = ncsn.load("pretrained:tiny")
    assert model.image_shape == (1, 8, 8) and model.spec.provenance["title"] == "a tiny stand-in"
    images = model.sample(3, sampler="dpm_solver_3m", nfe=4)
    assert images.shape == (3, 1, 8, 8)
    assert main(["sample", "pretrained:tiny", "-n", "3", "--sampler", "dpm_solver_3m", "--nfe",
                 "4", "--format", "npz", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert main(["pretrained"]) == 0
    listing = capsys.readouterr().out
    assert "pretrained:tiny: a tiny stand-in" in listing and "weights_sha256:" in listing


@pytest.mark.parametrize("damage", ["truncate", "flip", "swap"])
def test_a_damaged_shipped_model_is_a_one_line_error_before_any_work(shipped, tmp_path, capsys,
                                                                      damage):
    weights = shipped / "tiny.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 3])
    elif damage == "flip":
        weights.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))
    else:  # another model's weights under this spec
        other = build_network({**SECTION, "ngf": 8}, channels=1, image_size=8,
                              sigmas=torch.tensor([1.0]))
        save_model(tmp_path / "other", other, ModelSpec(network=SECTION, channels=1,
                                                       image_size=8, sigmas=(1.0,)))
        shutil.copy(tmp_path / "other.safetensors", weights)
    with pytest.raises(UserError, match="do not match their spec"):
        ncsn.load("pretrained:tiny")
    assert main(["sample", "pretrained:tiny", "-n", "2", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not match their spec" in err[0]
    assert not (tmp_path / "o").exists()  # nothing was written


def test_unknown_names_and_a_mismatched_spec_are_one_line_errors(shipped, tmp_path):
    with pytest.raises(UserError, match="no pretrained model 'mnist9'; shipped: tiny"):
        ncsn.load("pretrained:mnist9")
    with pytest.raises(UserError, match="no pretrained model"):
        ncsn.load("pretrained:../tiny")
    spec = json.loads((shipped / "tiny.json").read_text())
    spec["network"]["ngf"] = 8  # the spec no longer describes the weights (hash still theirs)
    (shipped / "tiny.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match="does not fit the configured network"):
        ncsn.load("pretrained:tiny")


def test_the_shipped_digits_model_draws_each_asked_digit():
    """The real ``pretrained:mnist5k`` file: its hash checks out on load, its stored sampler
    draws confident digits of the asked classes (expected about 0.95 confident; the bound
    leaves five binomial standard errors of 100 samples), and its record names its recipe."""
    from ncsn.eval.digits import digit_metrics

    assert "mnist5k" in pretrained.pretrained_names()
    model = ncsn.load("pretrained:mnist5k")
    record = model.spec.provenance
    assert record["config"]["model"]["num_classes"] == 10 and "ncsn train" in record["command"]
    assert model.plan().nfe <= 10
    labels = torch.arange(100) % 10
    scores = digit_metrics(model.sample(100, labels=labels, seed=3), labels=labels)
    assert scores["digit_confident"] >= 0.8 and scores["digit_asked"] >= 0.85
