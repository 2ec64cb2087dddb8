"""``ncsn train``: config + --set overrides, run-directory protection, --resume."""

from __future__ import annotations

from pathlib import Path

import yaml

from ncsn.cli import main
from ncsn.config import load_config
from test_train_support import assert_same_training_state, final_state, record_steps, tiny_raw


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(training={"n_iters": 4})))
    return path


def test_train_set_overrides_and_resume(tmp_path: Path, capsys, monkeypatch) -> None:
    config = _config_file(tmp_path)
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--run-dir", str(run), "--no-progress"]
    assert main([*args, "--set", "training.n_iters=2", "--set", "training.lr=5e-4"]) == 0
    saved = load_config(run / "config.yaml")
    assert (saved.training.n_iters, saved.training.lr) == (2, 5e-4)
    assert "trained to step 2" in capsys.readouterr().out

    assert main(args) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err
    # resume with the run's own config and a longer schedule: it runs steps 2 and 3 (0-based)
    steps = record_steps(monkeypatch)
    assert main(["train", "--resume", "--run-dir", str(run), "--no-progress",
                 "--set", "training.n_iters=4"]) == 0
    assert final_state(run)["step"] == 4 and steps == [2, 3]

    reference = tmp_path / "reference"
    assert main(["train", "--config", str(config), "--run-dir", str(reference), "--no-progress",
                 "--set", "training.lr=5e-4"]) == 0
    assert_same_training_state(final_state(reference), final_state(run))


def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    config = _config_file(tmp_path)
    assert main(["train", "--config", str(config), "--set", "training.lr=0",
                 "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "training.lr: must be > 0" in err and err.count("\n") == 1
    assert main(["train"]) == 2
    assert "pass --config" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--resume", "--overwrite"]) == 2
    assert not (tmp_path / "r").exists()


def test_default_run_dir_is_runs_slash_config_stem(tmp_path: Path, monkeypatch) -> None:
    config = _config_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(config), "--no-progress",
                 "--set", "training.n_iters=1"]) == 0
    assert (tmp_path / "runs" / "tiny" / "model.safetensors").is_file()
