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


def test_busy_cores_reads_the_jiffies_of_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal: 1000 ticks pass, 250 of them idle/iowait
    stat.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
    monkeypatch.setattr(devices.time, "sleep",
                        lambda s: stat.write_text("cpu  700 0 150 1000 100 50 0 0 0 0\n"))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert devices.busy_cores(0.1, str(stat)) == pytest.approx(0.75 * 4)
    assert devices.busy_cores(0.1, str(tmp_path / "missing")) is None
    if os.path.exists("/proc/stat"):  # the real file parses, whatever the load
        monkeypatch.undo()
        assert 0 <= devices.busy_cores(0.05) <= (os.cpu_count() or 1) + 1e-9


def test_threads_field_takes_auto_or_a_count():
    assert validate_config({"training": {"threads": "auto"}}).training.threads == "auto"
    assert validate_config({"training": {"threads": 3}}).training.threads == 3
    with pytest.raises(UserError, match="training.threads: must be >= 0"):
        validate_config({"training": {"threads": -1}})
