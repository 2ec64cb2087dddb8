"""``ncsn convert --from ...`` and ``ncsn export``: randomised checkpoints in each format convert
to model files that sample with every sampler; the packaged score_sde configs; bad input is
exit 2 with one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ncsn
from checkpoint_writers import (
    RunsCommand,
    randomised,
    tiny_config,
    tiny_ncsnpp,
    write_score_sde_checkpoint,
)
from ncsn.cli import main
from ncsn.cli.convert import spec_from_config
from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.nets.diffusers_folder import write_diffusers_folder
from ncsn.nets.io import load_model, save_model
from ncsn.nets.ncsnpp import NCSNpp
from ncsn.nets.ncsnv2 import NCSNv2
from ncsn.nets.refinenet import CondRefineNetDilated
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



def _official_ncsn(tmp_path: Path) -> tuple[list[str], torch.nn.Module]:
    """An official NCSN [model, optimizer] list (DataParallel keys) and its config."""
    net = randomised(CondRefineNetDilated(channels=3, sigmas=geometric_sigmas(1.0, 0.01, 10),
                                          ngf=4)).eval()
    torch.save([{f"module.{k}": v for k, v in net.state_dict().items()}, {}],
               tmp_path / "ncsn.pth")
    (tmp_path / "ncsn.yaml").write_text(
        "data: {name: folder, image_size: 8, channels: 3}\nmodel: {name: cond_refinenet, ngf: 4}"
        "\nnoise: {sigma_max: 1.0, sigma_min: 0.01, num_levels: 10}\n")
    return [str(tmp_path / "ncsn.pth"), "--config", str(tmp_path / "ncsn.yaml")], net


def _official_ncsnv2(tmp_path: Path) -> tuple[list[str], torch.nn.Module]:
    """An ermongroup/ncsnv2 [model (+ sigmas buffer), optimizer, epoch, step, ema] list and its
    config; the returned network holds the EMA weights."""
    net = randomised(NCSNv2(channels=3, image_size=8, ngf=4)).eval()
    model = {f"module.{k}": v.clone() for k, v in net.state_dict().items()}
    model["module.sigmas"] = geometric_sigmas(5.0, 0.01, 20)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.9)
    torch.save([model, {}, 1, 10, {k: p.detach().clone() for k, p in net.named_parameters()}],
               tmp_path / "v2.pth")
    (tmp_path / "v2.yaml").write_text(
        "data: {name: folder, image_size: 8, channels: 3}\nmodel: {name: ncsnv2, ngf: 4}\n"
        "noise: {sigma_max: 5.0, sigma_min: 0.01, num_levels: 20}\n")
    return [str(tmp_path / "v2.pth"), "--config", str(tmp_path / "v2.yaml")], net


def _diffusers_folder(tmp_path: Path) -> tuple[list[str], torch.nn.Module]:
    """A diffusers VE pipeline folder (written by ncsn export's writer)."""
    section = {"nf": 32, "ch_mult": [1, 4], "num_res_blocks": 1, "attn_resolutions": [4],
               "progressive": "output_skip", "progressive_input": "input_skip"}
    net = randomised(NCSNpp(channels=3, image_size=8, **section)).eval()
    spec = ModelSpec.from_json({"network": {"name": "ncsnpp", **section}, "channels": 3,
                                "image_size": 8, "sigmas": [90.0, 9.0, 0.9, 0.09, 0.01]})
    write_diffusers_folder(tmp_path / "pipe", net, spec)
    return [str(tmp_path / "pipe")], net


@pytest.mark.parametrize(("source", "write"), [
    ("official-ncsn", _official_ncsn), ("official-ncsnv2", _official_ncsnv2),
    ("diffusers", _diffusers_folder)])
def test_every_format_converts_to_its_outputs_and_samples_with_every_sampler(
        tmp_path, source, write):
    """The converted model computes the source network's outputs (NCSNv2: its EMA weights)
    and samples with every sampler; a network that knows only its levels refuses (one line)
    exactly the samplers that evaluate between them."""
    args, net = write(tmp_path)
    assert main(["convert", *args, "--from", source, "--out", str(tmp_path / "m")]) == 0
    model = ncsn.load(tmp_path / "m")
    levels = torch.tensor([model.spec.sigmas[0], model.spec.sigmas[-1]])
    with torch.no_grad():
        assert torch.equal(model.net(X, levels), net(X, levels))
    budget = {"nfe": 6, "num_levels": 3} if model.continuous else {"nfe": 20}
    for name in SAMPLERS:
        try:
            images = model.sample(2, sampler=name, seed=1, **budget)
        except UserError as refused:
            assert not model.continuous and "between the noise levels" in str(refused), name
            assert "\n" not in str(refused)
            continue
        assert images.shape == (2, 3, 8, 8) and bool(images.isfinite().all()), name


def _score_sde(tmp_path: Path) -> tuple[list[str], torch.nn.Module]:
    """A score_sde checkpoint_N.pth dict and its config."""
    net = tiny_ncsnpp()
    write_score_sde_checkpoint(tmp_path / "checkpoint_7.pth", net)
    return [str(tmp_path / "checkpoint_7.pth"), "--config", str(tiny_config(tmp_path))], net


def _damage(args: list[str], kind: str, marker: Path) -> list[str]:
    """``args`` (a checkpoint [--config C]) with the checkpoint or config damaged as ``kind``."""
    path = Path(args[0])
    weights = path / "unet" / "diffusion_pytorch_model.safetensors" if path.is_dir() else path
    data = weights.read_bytes()
    if kind == "truncated":
        weights.write_bytes(data[:len(data) // 2])
    elif kind == "corrupt":
        weights.write_bytes(bytes(b ^ 0xFF if i % 251 == 7 else b for i, b in enumerate(data)))
    elif kind == "malicious" and path.is_dir():  # a .bin whose unpickling would run a command
        weights.unlink()
        torch.save({"conv_in.weight": RunsCommand(f"touch {marker}")},
                   weights.with_suffix(".bin"))
    elif kind == "malicious":  # the same structure with code in its last entry
        obj = torch.load(path, weights_only=False)
        if isinstance(obj, dict):
            obj["step"] = RunsCommand(f"touch {marker}")
        else:
            obj[-1] = {"w": RunsCommand(f"touch {marker}")}
        torch.save(obj, path)
    elif path.is_dir():  # wrong shapes: the folder's config disagrees with its weights
        config = json.loads((path / "unet" / "config.json").read_text())
        config["block_out_channels"] = [2 * c for c in config["block_out_channels"]]
        (path / "unet" / "config.json").write_text(json.dumps(config))
    else:  # wrong config: twice the width the checkpoint was trained with
        config = Path(args[2])
        config.write_text(re.sub(r"\b(n?g?f): (\d+)", lambda m: f"{m[1]}: {2 * int(m[2])}",
                                 config.read_text()))
    return args


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "malicious", "mismatched"])
@pytest.mark.parametrize(("source", "write"), [
    ("official-ncsn", _official_ncsn), ("official-ncsnv2", _official_ncsnv2),
    ("score-sde", _score_sde), ("diffusers", _diffusers_folder)])
def test_a_bad_checkpoint_in_each_format_is_one_line_exit_2_before_any_work(
        tmp_path, capsys, source, write, kind):
    marker = tmp_path / "code_ran"
    args = _damage(write(tmp_path)[0], kind, marker)
    capsys.readouterr()
    assert main(["convert", *args, "--from", source, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ncsn convert: error: ") and len(err.splitlines()) == 1, err
    expected = {"truncated": "cannot read", "corrupt": "cannot read",
                "malicious": "refused for safety", "mismatched": "wrong shapes"}[kind]
    assert expected in err, err
    assert not marker.exists() and not list(tmp_path.glob("m.*"))

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



@pytest.mark.parametrize("source", ["official-ncsn", "official-ncsnv2"])
def test_a_wrong_from_names_the_right_one(score_sde_ckpt, tmp_path, capsys, source):
    """A score_sde checkpoint (its optimizer holds a numpy scalar) or a folder given to the
    official readers: one line pointing at the reader that fits, nothing written."""
    ckpt, _, config = score_sde_ckpt
    for path, hint in ((ckpt, "use --from score-sde"), (tmp_path, "--from diffusers")):
        assert main(["convert", str(path), "--from", source, "--config", str(config),
                     "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err.strip()
        assert hint in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m.safetensors").exists()

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
