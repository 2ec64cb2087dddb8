"""diffusers VE folders: our export loads in diffusers (UNet2DModel, ScoreSdeVeScheduler) with
equal outputs; folders written by diffusers itself (safetensors, or a legacy .bin with the old
attention names) import with equal outputs; broken folders are one-line errors. The tests that
need diffusers (the ``interop`` and ``dev`` extras) are skipped only where it is not installed,
and fail instead under scripts/test.sh (CI), which installs it and sets NCSN_TEST_ALL_EXTRAS=1."""

from __future__ import annotations

import json
import os

import pytest
import torch

from checkpoint_writers import RunsCommand, randomised
from ncsn.cli import main
from ncsn.errors import UserError
from ncsn.nets.diffusers_folder import read_diffusers_folder, write_diffusers_folder
from ncsn.nets.diffusers_format import to_diffusers_state, unet_config_from_net
from ncsn.nets.io import load_model
from ncsn.nets.ncsnpp import NCSNpp
from ncsn.spec.model import ModelSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only; never the hub
NET = {"nf": 32, "ch_mult": [1, 4], "num_res_blocks": 1, "attn_resolutions": [4],
       "progressive": "output_skip", "progressive_input": "input_skip", "dropout": 0.0}
SIGMAS = torch.exp(torch.linspace(torch.log(torch.tensor(90.0)), torch.log(torch.tensor(0.01)),
                                  50)).tolist()
SPEC = ModelSpec.from_json({
    "network": {"name": "ncsnpp", **NET}, "channels": 3, "image_size": 8, "sigmas": SIGMAS,
    "sampling": {"sampler": "predictor_corrector", "settings": {"snr": 0.075}}})
X = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
SIGMA = torch.tensor([0.01, 1.0, 90.0])


def _diffusers():
    """diffusers; a skip where it is not installed, a failure where every extra must be."""
    if os.environ.get("NCSN_TEST_ALL_EXTRAS") == "1":
        import diffusers

        return diffusers
    return pytest.importorskip("diffusers")


def _ours() -> NCSNpp:
    torch.manual_seed(0)
    return randomised(NCSNpp(channels=3, image_size=8, **NET)).eval()


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = b.flatten(1).abs().amax(1)
    assert bool(((a - b).flatten(1).abs().amax(1) <= 1e-5 * scale).all())


def test_export_loads_in_diffusers_with_equal_outputs(tmp_path):
    diffusers = _diffusers()
    net = _ours()
    write_diffusers_folder(tmp_path / "pipe", net, SPEC)
    unet = diffusers.UNet2DModel.from_pretrained(tmp_path / "pipe" / "unet").eval()
    scheduler = diffusers.ScoreSdeVeScheduler.from_pretrained(tmp_path / "pipe" / "scheduler")
    assert scheduler.config.num_train_timesteps == 50 and scheduler.config.snr == 0.075
    assert abs(scheduler.config.sigma_max - 90.0) < 1e-4 and scheduler.config.sigma_min < 0.0101
    with torch.no_grad():
        _assert_same(unet(X, SIGMA).sample, net(X, SIGMA))
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        write_diffusers_folder(tmp_path / "pipe", net, SPEC)


def test_an_export_failing_midway_leaves_no_folder(tmp_path, monkeypatch):
    import ncsn.nets.diffusers_folder as folder_module

    real, calls = folder_module.files.write_json, []

    def full_disk_at_the_second_json(path, value):
        calls.append(path)
        if len(calls) == 2:
            raise UserError(f"cannot write {path}: no space left on the device")
        real(path, value)

    monkeypatch.setattr(folder_module.files, "write_json", full_disk_at_the_second_json)
    with pytest.raises(UserError, match="no space left"):
        write_diffusers_folder(tmp_path / "pipe", _ours(), SPEC)
    assert list(tmp_path.iterdir()) == []  # no half folder, no temporary one
    monkeypatch.undo()
    net = _ours()
    write_diffusers_folder(tmp_path / "pipe", net, SPEC)
    state, expected = read_diffusers_folder(tmp_path / "pipe").state, to_diffusers_state(net)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)


def _diffusers_written_folder(tmp_path, diffusers):
    """A pipeline folder saved by diffusers itself, with random weights."""
    net = _ours()
    config = {k: v for k, v in unet_config_from_net(net, 8, 3).items()
              if not k.startswith("_")}
    unet = diffusers.UNet2DModel(**config)
    randomised(unet, seed=3).eval()
    folder = tmp_path / "hub"
    unet.save_pretrained(folder / "unet")
    diffusers.ScoreSdeVeScheduler(num_train_timesteps=40, snr=0.15, sigma_min=0.01,
                                  sigma_max=348.0).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "ScoreSdeVePipeline", "scheduler": ["diffusers", "ScoreSdeVeScheduler"],
        "unet": ["diffusers", "UNet2DModel"]}))
    return folder, unet


def test_diffusers_written_folder_converts_with_equal_outputs(tmp_path, capsys):
    diffusers = _diffusers()
    folder, unet = _diffusers_written_folder(tmp_path, diffusers)
    assert main(["convert", str(folder), "--from", "diffusers", "--out",
                 str(tmp_path / "m")]) == 0
    net, spec = load_model(tmp_path / "m")
    assert len(spec.sigmas) == 40 and abs(spec.sigmas[0] - 348.0) < 1e-3
    assert spec.sampling.settings.given() == {"snr": 0.15, "n_corrector": 1}
    with torch.no_grad():
        expected = unet(X, SIGMA).sample
        _assert_same(net(X, SIGMA), expected)
    # an older file: weights as a .bin with the deprecated attention names and time_proj.W
    state = {k.replace(".to_q.", ".query.").replace(".to_k.", ".key.")
             .replace(".to_v.", ".value.").replace(".to_out.0.", ".proj_attn."): v
             for k, v in unet.state_dict().items()}
    state["time_proj.W"] = state["time_proj.weight"]
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(state, folder / "unet" / "diffusion_pytorch_model.bin")
    assert main(["convert", str(folder), "--from", "diffusers", "--out",
                 str(tmp_path / "legacy")]) == 0
    with torch.no_grad():
        _assert_same(load_model(tmp_path / "legacy")[0](X, SIGMA), expected)
    capsys.readouterr()
    torch.save({"w": RunsCommand("true")}, folder / "unet" / "diffusion_pytorch_model.bin")
    assert main(["convert", str(folder), "--from", "diffusers", "--out", str(tmp_path / "x")]) == 2
    assert "refused for safety" in capsys.readouterr().err


def test_broken_folders_are_one_line_errors(tmp_path):
    net = _ours()
    folder = write_diffusers_folder(tmp_path / "pipe", net, SPEC)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(UserError, match="cannot read weights") as refused:
        read_diffusers_folder(folder)
    assert "\n" not in str(refused.value)
    (folder / "unet" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        read_diffusers_folder(folder)
    (folder / "model_index.json").unlink()
    with pytest.raises(UserError, match="has no model_index.json"):
        read_diffusers_folder(folder)
