"""Hard kills: a training subprocess dies (os._exit / SIGKILL) in the middle of a checkpoint write;
resuming ends bit-exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from ncsn.config import validate_config
from ncsn.training import list_checkpoints, train
from ncsn.training.checkpoint import FAULT_ENV
from test_train_support import (
    assert_same_training_state,
    final_state,
    folder_raw,
    record_steps,
    write_image_folder,
)

SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from ncsn.config import validate_config
from ncsn.training import train
train(validate_config(json.loads(sys.argv[1])), sys.argv[2], progress=False)
"""
TIMEOUT = 120


def _start(raw: dict, run_dir: Path, fault: str) -> subprocess.Popen:
    env = {**os.environ, FAULT_ENV: fault}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(raw), str(run_dir)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _partial_writes(run_dir: Path, name: str) -> list[Path]:
    folder = run_dir / "checkpoints"
    return sorted(folder.glob(f".{name}.*.tmp")) if folder.is_dir() else []


def test_hard_kill_during_checkpoint_write_then_exact_resume(tmp_path: Path, monkeypatch) -> None:
    raw = folder_raw(write_image_folder(tmp_path / "images"),
                     training={"n_iters": 8, "snapshot_freq": 2, "keep_last": 3})
    exiting = _start(raw, tmp_path / "exit", "exit@ckpt_00000006.pt")
    sleeping = _start(raw, tmp_path / "kill", "sleep:600@ckpt_00000004.pt")

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(validate_config(raw), tmp_path / "full", progress=False)
        reference = final_state(tmp_path / "full")

        # 1) the process ends (like SIGKILL) with half of checkpoint 6 on disk
        out, _ = exiting.communicate(timeout=TIMEOUT)
        assert exiting.returncode == 137, out.decode()
        assert len(_partial_writes(tmp_path / "exit", "ckpt_00000006.pt")) == 1
        assert [s for s, _ in list_checkpoints(tmp_path / "exit" / "checkpoints")] == [2, 4]

        # 2) SIGKILL while the writer is inside checkpoint 4
        deadline = time.monotonic() + TIMEOUT
        while not _partial_writes(tmp_path / "kill", "ckpt_00000004.pt"):
            assert sleeping.poll() is None, sleeping.communicate()[0].decode()
            assert time.monotonic() < deadline, "the checkpoint write never started"
            time.sleep(0.05)
        sleeping.send_signal(signal.SIGKILL)
        sleeping.communicate(timeout=TIMEOUT)
        assert sleeping.returncode == -signal.SIGKILL
        assert [s for s, _ in list_checkpoints(tmp_path / "kill" / "checkpoints")] == [2]

        steps = record_steps(monkeypatch)
        for name, kept in (("exit", 4), ("kill", 2)):  # the last complete checkpoint
            steps.clear()
            result = train(validate_config(raw), tmp_path / name, resume=True, progress=False)
            assert result.step == 8 and steps == list(range(kept, 8))
            assert_same_training_state(reference, final_state(tmp_path / name))
            assert not list((tmp_path / name / "checkpoints").glob(".*.tmp")), \
                "the partial write is cleaned up on resume"
    finally:
        torch.set_num_threads(before)
        for proc in (exiting, sleeping):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


SIGNAL_SCRIPT = """
import os, signal, sys, torch
torch.set_num_threads(1)
from ncsn.cli import main
from ncsn.training import Trainer
at, count = int(sys.argv[2]), int(sys.argv[3])
step = Trainer.train_step
def train_step(self):
    value = step(self)
    if self.step == at:  # the signal arrives in the middle of the run, between snapshots
        for _ in range(count):
            os.kill(os.getpid(), signal.SIGTERM)
    return value
Trainer.train_step = train_step
sys.exit(main(["train", "--config", sys.argv[1], "--run-dir", sys.argv[4], "--no-progress"]))
"""


def _signalled(config: Path, run_dir: Path, at: int, count: int) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT, str(config), str(at), str(count),
                           str(run_dir)], capture_output=True, text=True, timeout=TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr


def test_sigterm_saves_the_current_step_and_resume_equals_an_uninterrupted_run(
        tmp_path: Path) -> None:
    raw = folder_raw(write_image_folder(tmp_path / "images"),
                     training={"n_iters": 8, "snapshot_freq": 4})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, out = _signalled(config, tmp_path / "cut", at=3, count=1)
    assert code == 128 + signal.SIGTERM, out
    assert "stopped at step 3" in out and "interrupted" in out
    assert [s for s, _ in list_checkpoints(tmp_path / "cut" / "checkpoints")] == [3]
    assert not (tmp_path / "cut" / ".ncsn-lock").exists()  # released on the way out

    code, out = _signalled(config, tmp_path / "twice", at=3, count=2)  # a second: at once
    assert code == 128 + signal.SIGTERM, out
    assert list_checkpoints(tmp_path / "twice" / "checkpoints") == []

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(validate_config(raw), tmp_path / "cut", resume=True, progress=False)
        train(validate_config(raw), tmp_path / "full", progress=False)
    finally:
        torch.set_num_threads(before)
    assert_same_training_state(final_state(tmp_path / "full"), final_state(tmp_path / "cut"))
