"""The Python API (``ncsn.load``, ``ScoreModel``, ``ncsn.training``): the same images as the CLI for
the same seed and settings, the network's own scores, one-line UserErrors, the README example."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ncsn
from ncsn.api import ScoreModel, resolve_config
from ncsn.cli import main
from ncsn.config import config_to_dict, load_config
from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.imageio import save_pngs, to_uint8
from ncsn.nets import build_network
from ncsn.nets.io import save_model
from ncsn.sampling.inpainting import make_masks
from ncsn.spec.model import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
SIZE = 8
TINY_UNET = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2}
TINY_TRAINING = ["model.ngf=4", "model.ch_mult=[1, 2]", "model.emb_dim=8", "model.groups=2",
                 "training.n_iters=2", "training.batch_size=8", "training.test_freq=0",
                 "training.snapshot_freq=2", "training.log_freq=1"]


def _save_tiny(path: Path, section: dict, size: int = SIZE, channels: int = 1) -> Path:
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.05, 3)
    net = build_network(section, channels=channels, image_size=size, sigmas=sigmas)
    save_model(path, net, ModelSpec.from_json({
        "network": section, "channels": channels, "image_size": size, "sigmas": sigmas.tolist(),
        "sampling": {"n_steps_each": 2, "step_size": 1e-3}}))
    return path


@pytest.fixture(scope="module")
def unet_path(tmp_path_factory):
    """A random-weight UNetSmall (conditioned on any sigma)."""
    return _save_tiny(tmp_path_factory.mktemp("unet") / "tiny", TINY_UNET)


@pytest.fixture(scope="module")
def refinenet_path(tmp_path_factory):
    """A random-weight CondRefineNetDilated (only its 3 trained levels)."""
    return _save_tiny(tmp_path_factory.mktemp("refinenet") / "tiny",
                      {"name": "cond_refinenet", "ngf": 4})


def test_import_is_light_and_the_api_names_resolve():
    code = ("import sys, ncsn; light = 'torch' not in sys.modules\n"
            "import ncsn.api\n"
            "print(light, ncsn.train is ncsn.api.train, ncsn.load is ncsn.api.load)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True", "True"]


@pytest.mark.parametrize("options", [
    {},  # the model's stored annealed Langevin settings
    {"sampler": "dpm_solver_2m", "nfe": 5},
    {"sampler": "edm", "nfe": 7, "s_churn": 10.0},
    {"sampler": "predictor_corrector", "schedule": "geometric", "num_levels": 4, "snr": 0.1},
])
def test_sample_equals_what_ncsn_sample_writes(unet_path, tmp_path, options):
    flags = {"sampler": "--sampler", "nfe": "--nfe", "schedule": "--schedule",
             "num_levels": "--levels", "s_churn": "--s-churn", "snr": "--snr"}
    argv = [a for key, value in options.items() for a in (flags[key], str(value))]
    assert main(["sample", str(unet_path), "-n", "5", "--batch-size", "2", "--seed", "3",
                 "--format", "npz", "--out", str(tmp_path), "--no-progress", *argv]) == 0
    model = ncsn.load(unet_path)
    images = model.sample(5, seed=3, batch_size=2, **options)
    assert images.shape == (5, 1, SIZE, SIZE) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    with np.load(tmp_path / "samples.npz") as written:
        np.testing.assert_array_equal(to_uint8(images), written["images"])
    assert not torch.equal(images, model.sample(5, seed=4, batch_size=2, **options))


@pytest.mark.parametrize("seed", [3, 2**63 - 1])  # the largest seed the CLI takes
def test_a_batch_drawn_alone_equals_that_batch_of_the_whole_set(unet_path, seed):
    model = ncsn.load(unet_path)
    options = {"sampler": "dpm_solver_2m", "nfe": 3, "seed": seed, "batch_size": 2}
    whole = model.sample(5, **options)
    alone = list(model.sample_batches(5, batches=[2, 1], **options))
    assert torch.equal(alone[0], whole[4:]) and torch.equal(alone[1], whole[2:4])
    assert not torch.equal(whole[:2], whole[2:4])  # batches draw from different seeds
    assert torch.equal(model.sample(2, **options), whole[:2])  # batch 0: the seed itself


def test_inpaint_equals_what_ncsn_inpaint_writes_and_keeps_observed_pixels(unet_path, tmp_path):
    images = (torch.randint(0, 256, (3, 1, SIZE, SIZE),
                            generator=torch.Generator().manual_seed(0)) / 255.0)
    save_pngs(images, tmp_path / "inputs")
    assert main(["inpaint", str(unet_path), "--images", str(tmp_path / "inputs"), "--mask",
                 "random", "--fraction", "0.4", "-k", "2", "--batch-size", "4", "--seed", "5",
                 "--sampler", "dpm_solver_2m", "--nfe", "4", "--format", "npz", "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    model = ncsn.load(unet_path)
    filled = model.inpaint(images, "random", fraction=0.4, k=2, batch_size=4, seed=5,
                           sampler="dpm_solver_2m", nfe=4)
    assert filled.shape == (6, 1, SIZE, SIZE)
    with np.load(tmp_path / "out" / "completions.npz") as written:
        np.testing.assert_array_equal(to_uint8(filled), written["images"])
        masks = torch.from_numpy(written["masks"]).bool()
    assert 0 < masks.sum() < masks.numel()
    for i in range(6):
        observed = masks[i // 2]
        assert torch.equal(filled[i, 0][observed], images[i // 2, 0][observed])
        assert not torch.equal(filled[i, 0][~observed], images[i // 2, 0][~observed])


def test_inpaint_with_one_mask_tensor_for_all_images_equals_the_named_mask(unet_path):
    model = ncsn.load(unet_path)
    images = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    named = model.inpaint(images, "right", k=2, sampler="dpm_solver_2m", nfe=3)
    one = make_masks("right", 1, SIZE).bool()
    for mask in (one, one.float(), one.float().expand(2, 1, SIZE, SIZE)):
        assert torch.equal(model.inpaint(images, mask, k=2, sampler="dpm_solver_2m", nfe=3),
                           named)


def test_score_is_the_network_output(unet_path, refinenet_path):
    x = torch.rand(3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    model = ncsn.load(unet_path)
    sigma = torch.tensor([0.3, 0.07, 2.5])  # any sigma: the U-Net is conditioned on it
    with torch.no_grad():
        assert torch.equal(model.score(x, sigma), model.net(x, sigma))
        assert torch.equal(model.score(x, 0.3), model.net(x, torch.full((3,), 0.3)))
    assert not model.score(x, 0.3).requires_grad
    grad_x = x.clone().requires_grad_(True)
    model.score(grad_x, 0.3).sum().backward()
    assert grad_x.grad is not None and grad_x.grad.abs().sum() > 0
    discrete = ncsn.load(refinenet_path)
    level = discrete.sigmas[1]
    with torch.no_grad():
        assert torch.equal(discrete.score(x, float(level)),
                           discrete.net(x, level.expand(3)))
    with pytest.raises(UserError, match="not one of the network's trained noise levels"):
        discrete.score(x, 0.3)


def test_model_reports_its_levels_plan_and_device(unet_path):
    model = ncsn.load(unet_path)
    assert isinstance(model, ScoreModel) and model.to("cpu") is model
    assert torch.allclose(model.sigmas, geometric_sigmas(1.0, 0.05, 3))
    assert model.image_shape == (1, SIZE, SIZE) and model.continuous
    plan = model.plan(sampler="dpm_solver_2m", nfe=7)
    assert plan.nfe == 7 and plan.sigmas.numel() == 7 and plan.schedule == "karras"
    stored = model.plan()
    assert (stored.sampler, stored.nfe, stored.settings.n_steps_each) == (
        "annealed_langevin", 3 * 2, 2)
    assert "3 noise levels 1 -> 0.05" in repr(model)


def test_progress_bar_counts_network_evaluations(unet_path, capsys):
    ncsn.load(unet_path).sample(3, sampler="dpm_solver_2m", nfe=4, batch_size=2, progress=True)
    assert "8/8" in capsys.readouterr().err  # 2 batches x 4 evaluations


@pytest.mark.parametrize(("call", "message"), [
    (lambda m, tmp: ncsn.load(tmp / "missing"), "not found"),
    (lambda m, tmp: ncsn.load(tmp / "official.pth"), "ncsn convert-official"),
    (lambda m, tmp: m.sample(0), "n must be an integer >= 1"),
    (lambda m, tmp: m.sample(2, batch_size=0), "batch_size must be an integer >= 1"),
    (lambda m, tmp: m.sample(2, sampler="nope"), "unknown sampler 'nope'"),
    (lambda m, tmp: m.sample(2, sampler="dpm_solver_2m", snr=0.1),
     "snr: not a setting of sampler dpm_solver_2m"),
    (lambda m, tmp: m.sample(2, nfe=0), "nfe must be an integer >= 1"),
    (lambda m, tmp: next(m.sample_batches(4, batch_size=2, batches=[2])),
     "batches must be batch numbers in 0..1"),
    (lambda m, tmp: m.plan(schedule="cosine"), "unknown schedule 'cosine'"),
    (lambda m, tmp: m.inpaint(torch.rand(2, 3, SIZE, SIZE), "right"), "the model takes (N, 1"),
    (lambda m, tmp: m.inpaint(torch.zeros(2, 1, SIZE, SIZE, dtype=torch.uint8), "right"),
     "pass floats in [0, 1]"),
    (lambda m, tmp: m.inpaint(torch.full((1, 1, SIZE, SIZE), 2.0), "right"), "in [0, 1]"),
    (lambda m, tmp: m.inpaint(torch.rand(2, 1, SIZE, SIZE), torch.ones(3, 1, SIZE, SIZE)),
     "mask has shape (3, 1, 8, 8)"),
    (lambda m, tmp: m.inpaint(torch.rand(1, 1, SIZE, SIZE), torch.full((1, 1, SIZE, SIZE), 0.5)),
     "mask values must be 0"),
    (lambda m, tmp: m.inpaint(torch.rand(1, 1, SIZE, SIZE), "diagonal"),
     "is not one of right, lower, center, random"),
    (lambda m, tmp: m.inpaint(torch.rand(1, 1, SIZE, SIZE), "right", k=0), "k must be"),
    (lambda m, tmp: m.score(torch.rand(2, SIZE, SIZE), 0.1), "x must be a tensor (B, 1, 8, 8)"),
    (lambda m, tmp: m.score(torch.rand(2, 1, SIZE, SIZE), torch.ones(3)), "sigma must be one"),
    (lambda m, tmp: m.score(torch.rand(2, 1, SIZE, SIZE), -1.0), "sigma must be one positive"),
    (lambda m, tmp: ncsn.train("mnist5k_cpu", tmp, overrides="training.lr=1"), "wrap it in a"),
    (lambda m, tmp: ncsn.train(42, tmp), "config must be a Config"),
    (lambda m, tmp: ncsn.train("no_such_recipe", tmp), "no packaged config of that name"),
])
def test_mistakes_are_one_line_user_errors(unet_path, tmp_path, call, message):
    (tmp_path / "official.pth").write_bytes(b"not read")
    with pytest.raises(UserError) as info:
        call(ncsn.load(unet_path), tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


_Y = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: m.sample(10**7 + 1), "n must be <= 10000000"),
    (lambda m: m.sample(2.0), "n must be an integer >= 1, got 2.0"),
    (lambda m: m.sample(True), "n must be an integer >= 1, got True"),
    (lambda m: m.sample(2, batch_size=65_537), "batch_size must be <= 65536"),
    (lambda m: m.sample(2, batch_size=-3), "batch_size must be an integer >= 1"),
    (lambda m: m.sample(2, seed=-1), "seed must be an integer >= 0"),
    (lambda m: m.sample(2, seed=2**63), "seed must be <= 9223372036854775807"),
    (lambda m: m.sample(2, seed="7"), "seed must be an integer >= 0, got '7'"),
    (lambda m: m.sample(2, nfe=100_001), "nfe must be <= 100000"),
    (lambda m: m.sample(2, nfe=5.0), "nfe must be an integer >= 1, got 5.0"),
    (lambda m: m.sample(2, schedule="geometric", num_levels=10**6),
     "num_levels must be <= 100000"),
    (lambda m: m.sample(2, n_steps_each=10**6), "more than 100000 (the bound of --nfe)"),
    (lambda m: next(m.sample_batches(10**8)), "n must be <= 10000000"),
    (lambda m: m.sample_class(2, 0, "c", batch_size=0), "batch_size must be an integer >= 1"),
    (lambda m: m.inpaint(_Y, "right", k=10**7 + 1), "k must be <= 10000000"),
    (lambda m: m.inpaint(_Y, "right", k=6 * 10**6), "images x k must be <= 10000000"),
    (lambda m: m.inpaint(_Y, "right", steps=3), "steps: not a setting of sampler"),
    (lambda m: m.restore(_Y, m.operator("inpaint", 2), k=0), "k must be an integer >= 1"),
    (lambda m: m.restore(_Y, m.operator("inpaint", 2), batch_size=10**6),
     "batch_size must be <= 65536"),
    (lambda m: m.restore(_Y, m.operator("inpaint", 2), nfe=-1), "nfe must be an integer >= 1"),
    (lambda m: m.masks("right", 0), "n must be an integer >= 1"),
    (lambda m: m.operator("denoise", 10**8), "n must be <= 10000000"),
])
def test_absurd_counts_are_refused_before_any_work(unet_path, call, message):
    model = ncsn.load(unet_path)
    evaluations = []
    model.net.register_forward_pre_hook(lambda *_: evaluations.append(1))
    with pytest.raises(UserError) as info:
        call(model)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert evaluations == []


def test_device_that_is_not_here_is_a_user_error(unet_path):
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: never present
    with pytest.raises(UserError, match=f"device {absent}"):
        ncsn.load(unet_path, device=absent)


def test_config_from_a_name_an_object_or_a_mapping_is_the_same():
    overrides = ["training.n_iters=3", "noise.distribution=log_normal"]
    by_name = config_to_dict(resolve_config("mnist5k_cpu", overrides))
    assert by_name["training"]["n_iters"] == 3 and by_name["noise"]["distribution"] == "log_normal"
    base = load_config("mnist5k_cpu")
    assert config_to_dict(resolve_config(base, overrides)) == by_name
    assert config_to_dict(resolve_config(config_to_dict(base), overrides)) == by_name


def test_train_equals_ncsn_train(tmp_path):
    result = ncsn.train("mnist5k_cpu", tmp_path / "api", overrides=TINY_TRAINING, progress=False)
    assert result.step == 2 and result.run_dir == tmp_path / "api"
    argv = [a for item in TINY_TRAINING for a in ("--set", item)]
    assert main(["train", "--config", "mnist5k_cpu", "--run-dir", str(tmp_path / "cli"),
                 "--no-progress", *argv]) == 0
    assert (tmp_path / "api" / "config.yaml").read_text() == \
        (tmp_path / "cli" / "config.yaml").read_text()
    api, cli = (load_file(tmp_path / run / "model_ema.safetensors") for run in ("api", "cli"))
    assert api.keys() == cli.keys() and all(torch.equal(api[k], cli[k]) for k in api)
    assert ncsn.load(tmp_path / "api").image_shape == (1, 28, 28)


def python_example(document: str) -> str:
    """The first python code block under the "## From Python" heading of ``document``."""
    text = (ROOT / document).read_text()
    section = text.split("\n## From Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.parametrize(("document", "writes"), [
    ("README.md", ["inpainted.png", "samples.png"]),
    ("docs/sampling.md", []),
])
def test_python_examples_run_as_written(tmp_path, monkeypatch, document, writes):
    """On a tiny random-weight model where the demo writes its run (the code is unchanged)."""
    _save_tiny(tmp_path / "runs" / "demo" / "model_ema", TINY_UNET, size=28)
    code = python_example(document)
    assert 'ncsn.load("runs/demo")' in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, document, "exec"), {})
    assert sorted(p.name for p in tmp_path.glob("*.png")) == writes
