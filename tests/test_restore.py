"""``ncsn restore`` and ``ScoreModel.restore`` on tiny random-weight models: every task runs and
writes its grid, the API returns what the CLI writes, inpainting is the pixel case of the one
mechanism, and bad inputs are one-line errors (exit 2)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import ncsn
from ncsn.cli import main
from ncsn.core import inverse as inv
from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.imageio import save_pngs, to_uint8
from ncsn.nets import build_network
from ncsn.nets.io import save_model
from ncsn.spec.model import ModelSpec

SIZE = 8
TINY_UNET = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2}


def _save_tiny(path, channels: int, logit: bool = False):
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.05, 3)
    net = build_network(TINY_UNET, channels=channels, image_size=SIZE, sigmas=sigmas)
    save_model(path, net, ModelSpec.from_json({
        "network": TINY_UNET, "channels": channels, "image_size": SIZE,
        "sigmas": sigmas.tolist(),
        "sampling": {"n_steps_each": 2, "step_size": 1e-3, "logit": logit}}))
    return path


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """A random-weight RGB UNetSmall and a folder of 3 input images."""
    folder = tmp_path_factory.mktemp("rgb")
    save_pngs(torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)),
              folder / "inputs")
    return _save_tiny(folder / "tiny", 3), folder / "inputs"


@pytest.mark.parametrize("task, flags", [
    ("inpaint", ["--mask", "center"]), ("colorize", []), ("superres", ["--factor", "4"]),
    ("denoise", ["--sampler", "consistent_annealed", "--noise-std", "0.1"]),
    ("frequencies", ["--keep-fraction", "0.1", "--sampler", "dpm_solver_2m", "--nfe", "4"]),
])
def test_every_task_writes_its_grid_and_completions(rgb, tmp_path, task, flags):
    model, inputs = rgb
    out = tmp_path / "out"
    assert main(["restore", str(model), "--task", task, "--images", str(inputs), "-k", "2",
                 "--out", str(out), "--no-progress", *flags]) == 0
    assert len(list((out / "completions").iterdir())) == 6
    assert Image.open(out / "grid.png").size == (4 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2)


def test_the_api_returns_what_ncsn_restore_writes(rgb, tmp_path):
    model_path, inputs = rgb
    assert main(["restore", str(model_path), "--task", "superres", "--images", str(inputs),
                 "-k", "2", "--format", "npz", "--seed", "3", "--batch-size", "4",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    model = ncsn.load(model_path)
    with np.load(tmp_path / "completions.npz") as data:
        written, originals = data["images"], data["originals"]
    images = torch.from_numpy(originals).permute(0, 3, 1, 2).float() / 255
    operator = model.operator("superres", images.shape[0])
    y = operator.observe(images, fill=0.5)
    done = model.restore(y, operator, k=2, seed=3, batch_size=4)
    np.testing.assert_array_equal(to_uint8(done), written)
    # the completions keep the observed block means, wherever clipping into [0, 1] left them
    pool = torch.nn.functional.avg_pool2d
    unclipped = pool(((done > 0) & (done < 1)).float(), 2) == 1
    assert unclipped.any()
    error = (pool(done, 2) - pool(images.repeat_interleave(2, 0), 2))[unclipped]
    assert error.abs().max() < 1e-5


def test_inpainting_is_the_pixel_case_of_restore(rgb):
    model = ncsn.load(rgb[0])
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    for sampler in ("annealed_langevin", "dpm_solver_2m"):
        inpainted = model.inpaint(images, "right", k=2, seed=7, sampler=sampler)
        restored = model.restore(images, model.operator("inpaint", 2, mask="right"), k=2,
                                 seed=7, sampler=sampler)
        assert torch.equal(inpainted, restored)


def test_named_observations_are_kept_by_the_core():
    """Without noise, every named observation's coefficients are those of y after sampling."""
    shape = (3, SIZE, SIZE)
    y = torch.rand(4, *shape, generator=torch.Generator().manual_seed(5))
    for operator in (inv.pixel_observation(torch.rand(4, 1, SIZE, SIZE) > 0.5),
                     inv.colorization(shape), inv.super_resolution(shape, 2),
                     inv.low_frequencies(shape, 0.3)):
        out = inv.restore(lambda x, s: -x / (1 + s[:, None, None, None] ** 2), y, operator,
                          geometric_sigmas(1.0, 0.05, 4), sampler=ncsn.core.samplers.dpm_solver_2m,
                          generator=torch.Generator().manual_seed(6))
        got, want = operator.basis.forward(out), operator.basis.forward(y)
        mask = operator.observed(got)
        assert torch.allclose(got[mask], want[mask], atol=1e-5)
        assert not torch.allclose(got[~mask], want[~mask], atol=1e-2)


@pytest.mark.parametrize("flags, message", [
    (["--task", "blur"], "invalid choice: 'blur'"),
    (["--task", "superres", "--factor", "3"], "task superres: the factor must be >= 2 and divide"),
    (["--task", "denoise"], "sampler annealed_langevin with these settings cannot complete a"),
    (["--task", "denoise", "--noise-std", "2", "--sampler", "consistent_annealed"],
     "noise std 2 is not below the largest noise level 1"),
    (["--task", "inpaint", "--noise-std", "-1"], "must be >= 0"),
    (["--task", "frequencies", "--keep-fraction", "1.5"], "--keep-fraction: '1.5': must be <= 1.0"),
])
def test_bad_restore_flags_are_one_line_errors(rgb, tmp_path, capsys, flags, message):
    model, inputs = rgb
    code = main(["restore", str(model), "--images", str(inputs), "--out", str(tmp_path / "o"),
                 "--no-progress", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_bad_api_inputs_are_one_line_user_errors(rgb, tmp_path):
    model = ncsn.load(rgb[0])
    grey = ncsn.load(_save_tiny(tmp_path / "grey", 1))
    logit = ncsn.load(_save_tiny(tmp_path / "logit", 3, logit=True))
    images = torch.rand(2, 3, SIZE, SIZE)
    sr = model.operator("superres", 2)
    cases = [
        (lambda: model.restore(torch.rand(2, 3, 4, 4), sr), "shape (2, 3, 4, 4); the model"),
        (lambda: model.restore(images, "superres"), "operator must be a LinearObservation"),
        (lambda: model.restore(images, inv.pixel_observation(torch.ones(3, 1, SIZE, SIZE))),
         "mask has shape (3, 1, 8, 8)"),
        (lambda: model.operator("blur"), "unknown task 'blur'"),
        (lambda: grey.operator("colorize"), "colorization needs RGB images"),
        (lambda: logit.restore(images, logit.operator("superres", 2)), "logits of pixels"),
        (lambda: model.restore(images, model.operator("denoise", 2, noise_std=0.1),
                               sampler="annealed_langevin"), "cannot complete a noisy"),
        (lambda: model.restore(images, model.operator("denoise", 2, noise_std=0.1),
                               sampler="predictor_corrector"), "cannot complete a noisy"),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=re.escape(message)):
            call()
