"""Ranks agree on where they resume (issue 12): 2 CPU processes (gloo) whose views of the run
directory differ, as on nodes without a shared file system; the network is compiled inside DDP."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

import ncsn.training.trainer as trainer_module
from ncsn.config import validate_config
from ncsn.errors import UserError
from ncsn.nets.io import load_model
from ncsn.training import list_checkpoints, train
from test_train_support import folder_raw, free_port, write_image_folder

WORLD = 2
JOIN_TIMEOUT = 120


def _worker(rank: int, raws: list[dict], run_dirs: list[str], port: int, report: str) -> None:
    """Rank ``rank`` resumes ``run_dirs[rank]`` with ``raws[rank]``; writes what it raised."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD)})
    torch.set_num_threads(1)
    trainer_module.COMPILE_BACKEND = "aot_eager"
    try:
        train(validate_config(raws[rank]), run_dirs[rank], resume=True, progress=False)
        outcome = "ok"
    except UserError as err:
        outcome = str(err)
    left = _gloo_threads_after(10.0)
    if left:  # the group was not torn down: such a process can abort at exit (SIGABRT)
        outcome += f" (process-group threads left running: {left})"
    Path(report, f"rank{rank}.txt").write_text(outcome)


def _gloo_threads_after(seconds: float) -> list[str]:
    """The process group's threads still running after up to ``seconds``: gloo's TCP loop
    thread ends asynchronously, a moment after the group is destroyed."""
    deadline = time.monotonic() + seconds
    while (left := [name for name in _thread_names() if "gloo" in name]) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _thread_names() -> list[str]:
    tasks = Path("/proc/self/task")
    return [(t / "comm").read_text().strip() for t in tasks.iterdir()] if tasks.exists() else []


def _spawn(raws: list[dict], run_dirs: list[Path], report: Path) -> list[str]:
    """Run both ranks to the end (neither may hang); what each rank reported."""
    report.mkdir()
    ctx = mp.spawn(_worker, args=(raws, [str(d) for d in run_dirs], free_port(), str(report)),
                   nprocs=WORLD, join=False)
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):  # True once all ended
        assert time.monotonic() < deadline, "a rank did not finish in time"
    return [(report / f"rank{r}.txt").read_text() for r in range(WORLD)]


def _checkpoints(run_dir: Path) -> list[int]:
    return [s for s, _ in list_checkpoints(run_dir / "checkpoints")]


def test_ranks_resume_from_rank0s_checkpoint_with_different_views(tmp_path: Path) -> None:
    raw = folder_raw(write_image_folder(tmp_path / "images"),
                     training={"n_iters": 6, "snapshot_freq": 2, "keep_last": 3,
                               "ema_rate": 0.5})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(validate_config(raw), tmp_path / "full", progress=False)
    finally:
        torch.set_num_threads(before)
    # rank 0's node holds checkpoints 2 and 4; rank 1's node only a stale checkpoint 2
    for name, steps in (("node0", (2, 4)), ("node1", (2,))):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        shutil.copy(tmp_path / "full" / "config.yaml", tmp_path / name)
        for step in steps:
            shutil.copy(tmp_path / "full" / "checkpoints" / f"ckpt_{step:08d}.pt",
                        tmp_path / name / "checkpoints")
    compiled = {**raw, "training": {**raw["training"], "compile": True}}
    outcomes = _spawn([compiled, compiled], [tmp_path / "node0", tmp_path / "node1"],
                      tmp_path / "report")
    assert outcomes == ["ok", "ok"]

    records = [json.loads(line) for line in (tmp_path / "node0" / "metrics.jsonl").open()]
    assert [(r["event"], r["step"]) for r in records if "event" in r] == [("resume", 4)]
    assert _checkpoints(tmp_path / "node0") == [2, 4, 6]
    assert _checkpoints(tmp_path / "node1") == [2]  # rank 1 only read, and from rank 0
    one, _ = load_model(tmp_path / "full" / "model")
    two, _ = load_model(tmp_path / "node0" / "model")
    worst = max(float((v - two.state_dict()[k]).abs().max()) for k, v in one.state_dict().items())
    assert worst < 1e-6, f"largest weight difference {worst:g}"


def test_a_resume_error_on_one_rank_stops_both(tmp_path: Path) -> None:
    raw = folder_raw(write_image_folder(tmp_path / "images"),
                     training={"n_iters": 2, "snapshot_freq": 2})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(validate_config(raw), tmp_path / "run", progress=False)
    finally:
        torch.set_num_threads(before)
    other = {**raw, "model": {**raw["model"], "ngf": 8}}  # rank 1 was started with another net
    outcomes = _spawn([raw, other], [tmp_path / "run", tmp_path / "run"], tmp_path / "report")
    assert outcomes[0] == "another process of this job stopped with an error (see its message)"
    assert "different model config: field model.ngf is 4 there, 8 here" in outcomes[1]


def test_a_run_directory_refused_on_rank0_stops_every_rank_with_a_message(tmp_path: Path) -> None:
    """Only rank 0 checks and claims the run directory; its refusal (here: --resume of a folder
    that holds no ncsn run) must reach the other ranks as an error, not a crash at a barrier."""
    raw = folder_raw(write_image_folder(tmp_path / "images"), training={"n_iters": 2})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("the user's file")
    outcomes = _spawn([raw, raw], [tmp_path / "run", tmp_path / "run"], tmp_path / "report")
    assert "holds no ncsn run" in outcomes[0]
    assert outcomes[1] == "another process of this job stopped with an error (see its message)"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]
