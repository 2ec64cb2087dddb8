"""``training.threads: auto``: the idle cores, at least one."""

from __future__ import annotations

import os

import pytest

from ncsn import devices
from ncsn.config import validate_config
from ncsn.errors import UserError


@pytest.mark.parametrize(("cores", "busy", "threads"), [
    (2, 0.1, 2), (2, 1.2, 1), (2, 6.0, 1), (8, 2.6, 5), (4, 0.5, 4), (4, None, 4),
])
def test_auto_threads_are_the_cores_not_busy(monkeypatch, cores, busy, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(devices, "busy_cores", lambda: busy)
    assert devices.idle_core_threads() == threads


def test_busy_cores_sees_a_spinning_process():
    if not os.path.exists("/proc/stat"):
        pytest.skip("needs Linux /proc/stat")
    import multiprocessing

    idle = devices.busy_cores(0.3)
    spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
    spinner.start()
    try:
        loaded = devices.busy_cores(0.5)
    finally:
        spinner.terminate()
    assert idle is not None and loaded is not None
    assert loaded > idle + 0.5  # one more core busy (other test processes may add more)


def _spin() -> None:
    while True:
        pass


def test_threads_field_takes_auto_or_a_count():
    assert validate_config({"training": {"threads": "auto"}}).training.threads == "auto"
    assert validate_config({"training": {"threads": 3}}).training.threads == 3
    with pytest.raises(UserError, match="training.threads: must be >= 0"):
        validate_config({"training": {"threads": -1}})
