"""``ncsn sample`` flags change the samples as documented: ``--convention official`` is the
paper convention with twice the step, and ``--final-denoise`` adds a last denoising step.
Only the command line is used, on a tiny random-weight model."""

import numpy as np
import pytest
import torch

from ncsn.cli import main
from ncsn.core.noise import geometric_sigmas
from ncsn.nets import build_network
from ncsn.nets.io import save_model
from ncsn.spec.model import ModelSpec


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.3, 3)  # sigma_L = 0.3: the final denoising step is visible
    section = {"name": "cond_refinenet", "ngf": 4}
    net = build_network(section, channels=1, image_size=8, sigmas=sigmas)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, net, ModelSpec.from_json({
        "network": section, "channels": 1, "image_size": 8, "sigmas": sigmas.tolist(),
        "sampling": {"n_steps_each": 3, "step_size": 1e-3}}))
    return path


def _sample(model, out, *flags: str) -> np.ndarray:
    assert main(["sample", str(model), "-n", "6", "--seed", "1", "--format", "npz", "--out",
                 str(out), "--no-progress", *flags]) == 0
    with np.load(out / "samples.npz") as data:
        return data["images"].astype(int)


def test_official_convention_is_the_paper_step_doubled(model, tmp_path):
    official = _sample(model, tmp_path / "o", "--convention", "official", "--step-size", "1e-3")
    paper_double = _sample(model, tmp_path / "p2", "--convention", "paper", "--step-size", "2e-3")
    paper = _sample(model, tmp_path / "p", "--convention", "paper", "--step-size", "1e-3")
    assert np.abs(official - paper_double).max() <= 1  # the same chain (uint8 rounding aside)
    assert np.abs(official - paper).mean() > 2.0  # the convention changes the samples


def test_final_denoise_changes_the_samples(model, tmp_path):
    plain = _sample(model, tmp_path / "plain", "--no-final-denoise")
    denoised = _sample(model, tmp_path / "denoised", "--final-denoise")
    assert plain.shape == denoised.shape == (6, 8, 8, 1)
    assert np.abs(plain - denoised).mean() > 2.0
    again = _sample(model, tmp_path / "again", "--final-denoise")
    np.testing.assert_array_equal(denoised, again)  # the difference is the step, not the seed
