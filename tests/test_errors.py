"""weights_only refusals become one line that names the refused object (never a traceback, never
advice to turn weights_only off)."""

import os

import pytest
import torch

from ncsn.errors import UserError
from ncsn.nets.official import load_official_state_dict


class _CallsBlockedModule:
    """Unpickles to ``os.getpid()``: harmless, but its module (posix) is blocked by torch."""

    def __reduce__(self):
        return (os.getpid, ())


class _PlainObject:
    pass


@pytest.mark.parametrize(("payload", "name"), [
    (_CallsBlockedModule(), f"{os.name}.getpid"),  # torch 2.13: "... whose module is blocked"
    (_PlainObject(), "test_errors._PlainObject"),  # "... was not an allowed global"
])
def test_refused_pickle_names_the_non_tensor_object(tmp_path, payload, name):
    path = tmp_path / "checkpoint.pth"
    torch.save([{"w": payload}, {}], path)
    with pytest.raises(UserError) as refused:
        load_official_state_dict(path)
    message = str(refused.value)
    assert f"holds a non-tensor object ({name}), refused for safety" in message
    assert "\n" not in message and "weights_only" not in message.replace("weights-only", "")
