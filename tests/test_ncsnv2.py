"""NCSNv2 network: sizes for 32 and 64 px, output scaling 1/sigma, structure."""

import pytest
import torch

from ncsn.errors import UserError
from ncsn.nets.ncsnv2 import NCSNv2


def test_cifar10_size_matches_ncsnv2_paper():
    net = NCSNv2(channels=3, image_size=32, ngf=128)
    assert net.depth == "base"
    # NCSNv2 paper: "29.7M" parameters for its CIFAR-10 network
    assert sum(p.numel() for p in net.parameters()) == 29_694_083


def test_64px_uses_the_deeper_network():
    net = NCSNv2(channels=3, image_size=64, ngf=4)
    assert net.depth == "deeper" and hasattr(net, "res5") and hasattr(net, "refine5")
    x = torch.rand(2, 3, 64, 64)
    assert net(x, torch.tensor([1.0, 0.1])).shape == x.shape


def test_output_is_divided_by_sigma():
    torch.manual_seed(0)
    net = NCSNv2(channels=1, image_size=16, ngf=4)
    x = torch.rand(1, 1, 16, 16).repeat(2, 1, 1, 1)
    out = net(x, torch.tensor([1.0, 0.25]))
    torch.testing.assert_close(out[1], 4.0 * out[0])


def test_refine_blocks_have_no_norms_and_use_max_pool():
    net = NCSNv2(channels=3, image_size=32, ngf=4)
    refine_keys = [k for k in net.state_dict() if k.startswith("refine")]
    assert refine_keys and not any("norm" in k for k in refine_keys)
    assert net.refine1.crp.pool == "max"
    assert {k.split(".")[-1] for k in net.state_dict() if "normalize1" in k} == {
        "alpha", "gamma", "beta"}


def test_bad_depth_is_a_user_error():
    with pytest.raises(UserError, match="depth"):
        NCSNv2(channels=3, image_size=32, depth="huge")
