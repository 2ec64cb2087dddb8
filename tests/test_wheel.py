"""The wheel, installed outside the repository, runs the demo and a packaged config.

Offline: the wheel goes into a fresh virtual environment without its dependencies, and a ``.pth``
file puts this interpreter's site-packages (torch, numpy, ...) behind it on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ncsn.config import packaged_config_names

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel . --no-deps`` on a copy of the sources (no build/ or egg-info in the repo)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # the installed setuptools builds offline; without it pip fetches one into an isolated build
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", *isolation,
          "-w", str(tmp_path / "dist")], cwd=source, timeout=180)
    (wheel,) = (tmp_path / "dist").glob("ncsn-*.whl")
    return wheel


def _venv_with(wheel: Path, venv: Path) -> Path:
    """A fresh venv holding only the wheel, with this interpreter's packages behind it."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], cwd=venv.parent)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   cwd=venv.parent).strip()
    deps = [*site.getsitepackages(), sysconfig.get_path("purelib")]
    Path(purelib, "ncsn_test_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    return venv / "bin"


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_and_a_packaged_config(tmp_path: Path) -> None:
    bin_dir = _venv_with(_build_wheel(tmp_path), tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    assert REPO not in work.resolve().parents

    location = _run([str(bin_dir / "python"), "-c", "import ncsn; print(ncsn.__file__)"], work)
    assert Path(location.strip()).is_relative_to(tmp_path / "venv")

    listing = _run([str(bin_dir / "ncsn"), "configs"], work).splitlines()
    assert str(tmp_path / "venv") in listing[0]
    assert [line.split()[0] for line in listing[1:]] == packaged_config_names()

    _run([str(bin_dir / "ncsn"), "train", "--config", "mnist5k_cpu", "--set",
          "training.n_iters=2", "--run-dir", "run", "--no-progress"], work)
    saved = (work / "run" / "config.yaml").read_text()
    assert "name: mnist5k" in saved and "n_iters: 2" in saved
    assert (work / "run" / "model.safetensors").is_file()

    _run([str(bin_dir / "ncsn"), "demo", "--quick", "--out", "demo", "--no-progress"], work)
    assert (work / "demo" / "samples.png").is_file()
