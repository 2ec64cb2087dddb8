"""``ncsn train``: config + --set overrides, run-directory protection, --resume."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
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


def test_overwrite_deletes_only_a_run_directory_ncsn_made(tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    config = _config_file(tmp_path)
    args = ["train", "--config", str(config), "--no-progress", "--overwrite",
            "--set", "training.n_iters=1"]
    users = tmp_path / "mine"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    assert main([*args, "--run-dir", str(users)]) == 2
    err = capsys.readouterr().err
    assert "refuses to delete" in err and "no .ncsn-run" in err and err.count("\n") == 1
    assert (users / "thesis.tex").read_text() == "years of work"

    monkeypatch.chdir(users)
    (users / ".ncsn-run").write_text("planted")  # even a marked cwd is never deleted
    assert main([*args, "--run-dir", "."]) == 2
    assert "current folder" in capsys.readouterr().err
    assert (users / "thesis.tex").is_file()

    run = tmp_path / "run"
    assert main([*args, "--run-dir", str(run)]) == 0  # ncsn's own run: replaced
    assert main([*args, "--run-dir", str(run)]) == 0
    assert "removing the existing run directory" in capsys.readouterr().out
    assert (run / ".ncsn-run").is_file() and not (run / ".ncsn-lock").exists()


def test_a_second_trainer_in_a_live_run_directory_is_refused(tmp_path: Path, capsys) -> None:
    config = _config_file(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run), "--no-progress",
                 "--set", "training.n_iters=1"]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".ncsn-lock").write_text(json.dumps({"pid": holder.pid,
                                                   "host": socket.gethostname()}))
        for extra in (["--resume"], ["--overwrite"]):
            assert main(["train", "--config", str(config), "--run-dir", str(run),
                         "--no-progress", "--set", "training.n_iters=2", *extra]) == 2
            assert f"in use by another ncsn process (pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", "--config", str(config), "--run-dir", str(run), "--no-progress",
                 "--set", "training.n_iters=2", "--resume"]) == 0  # the stale lock is taken over
    assert final_state(run)["step"] == 2


def test_an_unwritable_run_directory_is_refused_before_any_work(tmp_path: Path, capsys,
                                                                monkeypatch) -> None:
    config = _config_file(tmp_path)
    monkeypatch.setattr("ncsn.config.load_config", lambda *a: (_ for _ in ()).throw(
        AssertionError("the config was read before --run-dir was checked")))
    (tmp_path / "file").write_text("x")
    for run_dir, message in (("/proc/run", "cannot write in /proc"),
                             (str(tmp_path / "file"), "is a file, not a folder")):
        assert main(["train", "--config", str(config), "--run-dir", run_dir]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["demo", "--quick", "--out", "/proc/demo"]) == 2
    assert "--out /proc/demo: cannot write in /proc" in capsys.readouterr().err
