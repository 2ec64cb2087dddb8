"""``ncsn demo`` end to end on a tiny setting, and the demo recipe file."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from ncsn.cli import main
from ncsn.config import load_config, model_spec
from ncsn.experiments.demo import demo_config
from ncsn.nets.io import load_model
from ncsn.sampling import plan_sampling
from test_train_support import record_steps


def test_demo_recipe_trains_continuous_levels_and_samples_in_at_most_35_evaluations() -> None:
    config = demo_config()
    assert config == load_config("mnist5k_cpu")  # the packaged recipe, no second copy
    assert config.noise.distribution != "discrete" and config.noise.sigma_max == "auto"
    spec = model_spec(config, channels=1, image_size=28, sigmas=[15.0, 0.01])
    assert plan_sampling(spec, continuous=True).nfe <= 35
    quick = demo_config(steps=7, quick=True)
    assert quick.training.n_iters == 7 and quick.model["ngf"] == 4


def test_quick_demo_writes_grid_curve_and_metrics(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "samples.png" in printed
    grid = Image.open(out / "samples.png")
    # 16 samples of 28x28 in a 8-wide grid with 2-px padding, scaled 3x
    assert grid.size == (3 * (8 * 30 + 2), 3 * (2 * 30 + 2))
    assert Image.open(out / "loss.png").size[0] > 0
    summary = json.loads((out / "demo.json").read_text())
    assert summary["steps"] == 6 and summary["num_samples"] == 16
    assert summary["network_evaluations"] == summary["sampling"]["nfe"] <= 5
    assert 0 <= summary["digits"]["digit_confident"] <= 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]
    assert [r["step"] for r in records if "test_loss" in r] == [3, 6]
    net, spec = load_model(out)
    assert spec.image_size == 28 and spec.sampling.nfe == 5

    assert main(["demo", "--steps", "0", "--out", str(out)]) == 2


def test_demo_resumes_an_interrupted_run_to_the_same_weights(tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    # the demo's threads: auto follows the machine's load; pin it so both runs sum alike
    # (test_train.py checks that a resume keeps the count its run started with)
    monkeypatch.setattr("ncsn.training.trainer.idle_core_threads", lambda: 1)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["demo", "--quick", "--steps", "6", "--out", str(whole), "--no-progress"]) == 0
    assert main(["demo", "--quick", "--steps", "3", "--out", str(split), "--no-progress"]) == 0
    capsys.readouterr()
    steps = record_steps(monkeypatch)
    assert main(["demo", "--quick", "--steps", "6", "--out", str(split), "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out and steps == [3, 4, 5]
    for a, b in zip(load_model(whole)[0].state_dict().values(),
                    load_model(split)[0].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert main(["demo", "--quick", "--steps", "6", "--overwrite", "--out", str(split),
                 "--no-progress"]) == 0
    assert "resuming" not in capsys.readouterr().out


def test_demo_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_demo_overwrite_refusal_names_the_out_flag(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["demo", "--quick", "--steps", "1", "--overwrite", "--out", str(tmp_path),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--run-dir" not in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"
