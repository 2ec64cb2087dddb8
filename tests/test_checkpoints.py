"""Safe reading of torch files: numpy float64 scalars (score_sde's optimizer lr) under both numpy
module names, refusal of pickled code, corrupt and truncated files; stored-sigma checks."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from checkpoint_writers import RunsCommand, as_numpy1_file
from ncsn.errors import UserError
from ncsn.nets.checkpoints import check_stored_sigmas, read_torch_file


def _one_line(err: pytest.ExceptionInfo[UserError]) -> str:
    message = str(err.value)
    assert "\n" not in message and "weights_only=False" not in message
    return message


@pytest.mark.parametrize("numpy1", [False, True])
def test_numpy_float64_is_read_only_when_allowed(tmp_path, numpy1):
    path = tmp_path / "np.pth"
    torch.save({"lr": np.minimum(0.25, 1.0), "w": torch.ones(2)}, path)
    if numpy1:  # as a checkpoint written under numpy 1 names the scalar
        path = as_numpy1_file(path, tmp_path / "np1.pth")
        with zipfile.ZipFile(path) as archive:
            pickled = next(archive.read(n) for n in archive.namelist() if n.endswith(".pkl"))
        assert b"numpy.core.multiarray\n" in pickled
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # plain weights-only loading refuses it
    with pytest.raises(UserError, match=r"non-tensor object \(numpy") as refused:
        read_torch_file(path)
    _one_line(refused)
    obj = read_torch_file(path, numpy_scalars=True)
    assert obj["lr"] == 0.25 and isinstance(obj["lr"], np.float64)
    assert torch.equal(obj["w"], torch.ones(2))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "optimizer": RunsCommand(f"touch {marker}")}, path)
    with pytest.raises(UserError, match=r"system\), refused for safety") as refused:
        read_torch_file(path, numpy_scalars=True)
    _one_line(refused)
    assert not marker.exists()


def test_corrupt_truncated_and_missing_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.arange(1000.0)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:500])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    for path in (truncated, garbage):
        with pytest.raises(UserError, match=f"cannot read {path}") as refused:
            read_torch_file(path)
        _one_line(refused)
    with pytest.raises(UserError, match="not found"):
        read_torch_file(tmp_path / "missing.pth")


def test_stored_sigmas_name_the_first_differing_level():
    table = torch.exp(torch.linspace(np.log(50), np.log(0.01), 6, dtype=torch.float64))
    check_stored_sigmas(table.float(), table.tolist(), "ckpt")  # float32 storage is fine
    moved = table.clone()
    moved[3] *= 1.01
    with pytest.raises(UserError, match=r"ckpt: noise level 4 is .* in the checkpoint but"):
        check_stored_sigmas(moved, table.tolist(), "ckpt")
    with pytest.raises(UserError, match="stores 6 noise levels but the config has 5"):
        check_stored_sigmas(table, table[:5].tolist(), "ckpt")
    check_stored_sigmas(moved, table[[0, 5]].tolist(), "ckpt", ends_only=True)
    with pytest.raises(UserError, match="noise level 1 is 50 in the checkpoint but 348"):
        check_stored_sigmas(table, [348.0, 0.01], "ckpt", ends_only=True)
