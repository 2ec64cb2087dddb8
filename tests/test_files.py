"""ncsn.files: atomic writes that never follow links, owned run directories, the run lock, and
output checks before work."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ncsn.errors import UserError
from ncsn.files import (
    LOCK_NAME,
    RUN_MARKER,
    RunLock,
    append_text,
    atomic_dir,
    check_output_dir,
    check_output_file,
    mark_run_dir,
    remove_run_dir,
    write_text,
)


def _own_run(folder: Path) -> Path:
    mark_run_dir(folder)
    (folder / "model.json").write_text("{}")
    return folder


def test_overwrite_removes_only_a_folder_ncsn_made(tmp_path: Path) -> None:
    mine = _own_run(tmp_path / "run")
    remove_run_dir(mine)
    assert not mine.exists()

    users = tmp_path / "photos"
    users.mkdir()
    (users / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(UserError, match=rf"ncsn did not make it \(no {RUN_MARKER}"):
        remove_run_dir(users)
    assert (users / "holiday.jpg").read_bytes() == b"jpeg"


def test_overwrite_never_removes_cwd_its_parents_home_or_a_link(tmp_path: Path,
                                                                monkeypatch) -> None:
    run = _own_run(tmp_path / "a")
    inner = _own_run(run / "b")
    monkeypatch.chdir(inner)
    for folder in (Path("."), Path(".."), inner):
        with pytest.raises(UserError, match="current folder or one above it"):
            remove_run_dir(folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(run))
    with pytest.raises(UserError, match="home or the root folder"):
        remove_run_dir(run)
    link = tmp_path / "link"
    link.symlink_to(inner, target_is_directory=True)
    with pytest.raises(UserError, match="symlink"):
        remove_run_dir(link)
    assert (inner / "model.json").is_file()


def test_atomic_write_replaces_a_planted_link_and_never_writes_through_it(
        tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "run" / "model.json"
    link.parent.mkdir()
    link.symlink_to(victim)
    write_text(link, "new")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "new"
    assert sorted(p.name for p in link.parent.iterdir()) == ["model.json"]  # no temp file left

    log = tmp_path / "run" / "metrics.jsonl"
    log.symlink_to(victim)
    with pytest.raises(UserError, match="is a symlink"):
        append_text(log, "{}\n")
    assert victim.read_text() == "precious"


def test_a_folder_written_atomically_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with pytest.raises(UserError, match=f"cannot write {out}: no space left"), \
            atomic_dir(out) as tmp:
        (tmp / "half.bin").write_bytes(b"12")
        raise OSError(28, "No space left on device")  # ENOSPC midway
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing at out, no temp folder
    out.mkdir()  # an empty folder is replaced
    with atomic_dir(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.json").write_text("{}")
    assert (out / "sub" / "a.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_full_disk_is_a_one_line_error(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with pytest.raises(UserError, match="not a regular file"):
        check_output_file("/dev/full", "--json")
    with pytest.raises(UserError, match=r"cannot write /proc/ncsn.json"):
        write_text("/proc/ncsn.json", "{}")


def test_outputs_are_checked_before_work(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    with pytest.raises(UserError, match="--nn-grid .* is a folder"):
        check_output_file(folder, "--nn-grid")
    with pytest.raises(UserError, match=r"--gif .*must end with \.gif"):
        check_output_file(tmp_path / "anim.png", "--gif", suffixes=(".gif",))
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="--out .* is a file, not a folder"):
        check_output_dir(tmp_path / "f", "--out")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f" / "below", "--out")
    with pytest.raises(UserError, match="--out /proc/ncsn: cannot write in /proc"):
        check_output_dir("/proc/ncsn", "--out")
    check_output_file(tmp_path / "new" / "deeper" / "r.json", "--json")
    assert not (tmp_path / "new").exists()  # checked, not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    run = _own_run(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK_NAME).write_text(json.dumps({"pid": holder.pid,
                                                 "host": socket.gethostname()}))
        with pytest.raises(UserError, match=rf"in use by another ncsn process \(pid "
                                            rf"{holder.pid}"):
            RunLock.acquire(run)
        with pytest.raises(UserError, match="in use by another"):
            remove_run_dir(run)
    finally:
        holder.kill()
        holder.wait()
    # the holder died (kill -9) without removing its lock: the next writer takes it over
    lock = RunLock.acquire(run)
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / LOCK_NAME).exists()
