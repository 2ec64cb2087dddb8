"""``ncsn convert --from ...`` and ``ncsn export``: randomised checkpoints in each format convert
to model files that sample with every sampler; the packaged score_sde configs; bad input is
exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ncsn
from checkpoint_writers import tiny_config, tiny_ncsnpp, write_score_sde_checkpoint
from ncsn.cli import main
from ncsn.cli.convert import spec_from_config
from ncsn.nets.io import load_model, save_model
from ncsn.nets.ncsnpp import NCSNpp
from ncsn.nets.registry import build_network
from ncsn.sampling.registry import SAMPLERS
from ncsn.spec.model import ModelSpec

X, SIGMA = torch.rand(2, 3, 8, 8), torch.tensor([0.05, 20.0])


@pytest.fixture
def score_sde_ckpt(tmp_path):
    net = tiny_ncsnpp()
    path = tmp_path / "checkpoint_7.pth"
    write_score_sde_checkpoint(path, net)
    return path, net, tiny_config(tmp_path)


def test_score_sde_converts_and_samples_with_every_sampler(score_sde_ckpt, tmp_path):
    ckpt, net, config = score_sde_ckpt
    argv = ["convert", str(ckpt), "--from", "score-sde", "--config", str(config)]
    assert main([*argv, "--out", str(tmp_path / "ema")]) == 0
    assert main([*argv, "--out", str(tmp_path / "raw"), "--weights", "raw"]) == 0
    raw, spec = load_model(tmp_path / "raw")
    assert spec.provenance["source"] == "score_sde checkpoint (raw weights)"
    with torch.no_grad():
        assert torch.equal(raw(X, SIGMA), net(X, SIGMA))
    model = ncsn.load(tmp_path / "ema")
    assert model.spec.sampling.sampler == "predictor_corrector"
    for name in SAMPLERS:
        images = model.sample(2, sampler=name, nfe=6, num_levels=3, seed=1)
        assert images.shape == (2, 3, 8, 8) and bool(images.isfinite().all()), name


def test_export_then_import_round_trip_without_diffusers(tmp_path):
    section = {"name": "ncsnpp", "nf": 32, "ch_mult": [1, 4], "num_res_blocks": 1,
               "attn_resolutions": [4], "progressive": "output_skip",
               "progressive_input": "input_skip"}
    torch.manual_seed(0)
    net = build_network(section, channels=3, image_size=8, sigmas=torch.ones(1))
    spec = ModelSpec.from_json({"network": section, "channels": 3, "image_size": 8,
                                "sigmas": [50.0, 5.0, 0.5, 0.05],
                                "sampling": {"sampler": "predictor_corrector",
                                             "settings": {"snr": 0.2}}})
    save_model(tmp_path / "m", net, spec)
    assert main(["export", str(tmp_path / "m"), "--format", "diffusers", "--out",
                 str(tmp_path / "pipe")]) == 0
    assert main(["convert", str(tmp_path / "pipe"), "--from", "diffusers", "--out",
                 str(tmp_path / "back")]) == 0
    back, back_spec = load_model(tmp_path / "back")
    assert back_spec.network == {**section, "dropout": 0.1, "progressive_combine": "sum",
                                 "centered": False}
    assert len(back_spec.sigmas) == 4 and back_spec.sampling.settings.snr == 0.2
    net.eval()
    with torch.no_grad():
        assert torch.equal(back(X, SIGMA), net(X, SIGMA))


def _one_line_exit_2(argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "ncsn", *argv], capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, (
        proc.stderr)
    return lines[0]


def test_bad_input_is_exit_2_with_one_line(score_sde_ckpt, tmp_path, capsys):
    ckpt, _, config = score_sde_ckpt
    wrong = tmp_path / "wide.yaml"
    wrong.write_text(config.read_text().replace("nf: 8", "nf: 16"))
    line = _one_line_exit_2(["convert", str(ckpt), "--from", "score-sde", "--config",
                             str(wrong), "--out", str(tmp_path / "m")])
    assert line.startswith("ncsn convert: error: checkpoint ") and "wrong shapes" in line
    assert not (tmp_path / "m.safetensors").exists()
    cases = [
        (["convert", str(ckpt), "--from", "score-sde", "--out", "m"], "--config NAME is required"),
        (["convert", str(ckpt), "--from", "official-ncsn", "--config", str(config), "--weights",
          "raw", "--out", "m"], "--weights applies to official-ncsnv2 and score-sde"),
        (["convert", str(tmp_path), "--from", "diffusers", "--out", "m"], "no model_index.json"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    save_model(tmp_path / "cifar", NCSNpp(channels=3, image_size=8, nf=8, ch_mult=[1, 2]),
               ModelSpec(network={"name": "ncsnpp", "nf": 8, "ch_mult": [1, 2]}, channels=3,
                         image_size=8, sigmas=(50.0, 0.01)))
    assert main(["export", str(tmp_path / "cifar"), "--format", "diffusers", "--out",
                 str(tmp_path / "pipe")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ncsn export: error: diffusers' UNet2DModel cannot express this NCSN++")
    assert "residual" in err and len(err.splitlines()) == 1 and not (tmp_path / "pipe").exists()


# parameter counts of score_sde's own NCSNpp for these configs at full size, recorded by
# benchmarks/record_ncsnpp_reference.py
RECORDED = json.loads((Path(__file__).parent / "data" / "ncsnpp_reference.json").read_text())


@pytest.mark.parametrize(("name", "size", "sigma_max", "levels", "snr"), [
    ("ve_cifar10_ncsnpp_continuous", 32, 50.0, 1000, 0.16),
    ("ve_cifar10_ncsnpp_deep_continuous", 32, 50.0, 1000, 0.16),
    ("ve_celebahq_256_ncsnpp_continuous", 256, 348.0, 2000, 0.075),
    ("ve_ffhq_1024_ncsnpp_continuous", 1024, 1348.0, 2000, 0.15),
])
def test_packaged_score_sde_configs(name, size, sigma_max, levels, snr):
    spec = spec_from_config(name)
    assert (spec.image_size, len(spec.sigmas)) == (size, levels)
    assert abs(spec.sigmas[0] - sigma_max) < 1e-3 and abs(spec.sigmas[-1] - 0.01) < 1e-8
    assert spec.sampling.sampler == "predictor_corrector" and spec.sampling.settings.snr == snr
    with torch.device("meta"):
        net = build_network(spec.network, channels=3, image_size=size,
                            sigmas=torch.tensor(spec.sigmas))
    assert sum(p.numel() for p in net.parameters()) == RECORDED["full_size_parameters"][name]


def test_an_unwritable_out_is_refused_before_the_checkpoint_is_read(score_sde_ckpt, tmp_path,
                                                                     capsys):
    ckpt, _, config = score_sde_ckpt
    (tmp_path / "afile").write_text("x")
    under_a_file = str(tmp_path / "afile" / "m")
    model = tmp_path / "model"
    assert main(["convert", "--from", "score-sde", str(ckpt), "--config", str(config),
                 "--out", str(model)]) == 0
    for argv in (["convert", "--from", "score-sde", str(tmp_path / "absent.pth"),
                  "--config", str(config), "--out", under_a_file],
                 ["convert-official", str(tmp_path / "absent.pth"), "--preset", "mnist",
                  "--out", under_a_file],
                 ["export", "--format", "diffusers", "--out", under_a_file, str(model)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "afile is a file, not a folder" in err and err.count("\n") == 1, err
