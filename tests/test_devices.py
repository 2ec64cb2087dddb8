"""``training.threads: auto``: the idle cores, at least one."""

from __future__ import annotations

import os

import pytest

from ncsn import devices
from ncsn.config import validate_config
from ncsn.errors import UserError


@pytest.mark.parametrize(("cores", "load", "threads"), [
    (2, 0.1, 2), (2, 1.2, 1), (2, 6.0, 1), (8, 2.6, 5), (4, 0.5, 4),
])
def test_auto_threads_are_the_cores_not_busy(monkeypatch, cores, load, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert devices.idle_core_threads() == threads


def test_auto_threads_without_a_load_average(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)

    def missing():
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", missing)
    assert devices.idle_core_threads() == 3


def test_threads_field_takes_auto_or_a_count():
    assert validate_config({"training": {"threads": "auto"}}).training.threads == "auto"
    assert validate_config({"training": {"threads": 3}}).training.threads == 3
    with pytest.raises(UserError, match="training.threads: must be >= 0"):
        validate_config({"training": {"threads": -1}})
