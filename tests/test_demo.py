"""``ncsn demo`` end to end on a tiny setting, and the demo recipe file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ncsn.cli import main
from ncsn.config import load_config
from ncsn.experiments.demo import demo_config
from ncsn.nets.io import load_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_demo_recipe_is_the_shipped_config() -> None:
    assert demo_config() == load_config(CONFIGS / "mnist5k_cpu.yaml")
    config = demo_config(steps=7, quick=True)
    assert config.training.n_iters == 7 and config.model["ngf"] == 4


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
    assert summary["network_evaluations"] == 10 * 2 + 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]
    assert [r["step"] for r in records if "test_loss" in r] == [3, 6]
    net, spec = load_model(out)
    assert spec["image_size"] == 28 and spec["sampling"]["final_denoise"] is True

    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["demo", "--steps", "0", "--out", str(out)]) == 2
