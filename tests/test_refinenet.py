"""CondRefineNetDilated: official parameter counts and FLOPs, shapes, level lookup (official
key names: tests/test_official.py)."""

import pytest
import torch

from ncsn.core.noise import geometric_sigmas
from ncsn.nets.refinenet import CondRefineNetDilated

SIGMAS = geometric_sigmas(1.0, 0.01, 10)


def _count(net):
    return sum(p.numel() for p in net.parameters())


def test_param_count_mnist_matches_official():
    assert _count(CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=64)) == 7_638_657


def test_param_count_cifar_matches_official():
    assert _count(CondRefineNetDilated(channels=3, sigmas=SIGMAS, ngf=128)) == 30_117_635


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (2, 17), (3, 10)])
def test_forward_any_size_and_channels(channels, size):
    net = CondRefineNetDilated(channels=channels, sigmas=SIGMAS, ngf=4)
    x = torch.rand(2, channels, size, size)
    out = net(x, SIGMAS[[0, 9]])
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_output_depends_on_level_embedding():
    torch.manual_seed(0)
    net = CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=4)
    x = torch.rand(1, 1, 12, 12).repeat(2, 1, 1, 1)
    out = net(x, SIGMAS[[2, 5]])
    assert not torch.allclose(out[0], out[1])
    # same level -> same output, batch elements are independent
    torch.testing.assert_close(net(x, SIGMAS[[2, 2]])[1], out[0])


def test_unknown_sigma_is_refused():
    net = CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=4)
    with pytest.raises(ValueError, match="not one of the network's trained noise levels"):
        net(torch.rand(1, 1, 8, 8), torch.tensor([0.5]))


def test_sigmas_buffer_is_kept_but_not_in_state_dict():
    net = CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=4)
    assert "sigmas" not in net.state_dict()
    torch.testing.assert_close(net.sigmas, SIGMAS)
    assert "sigmas" in dict(net.named_buffers())


def test_forward_flops_mnist_match_the_issue():
    from torch.utils.flop_counter import FlopCounterMode

    net = CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=64)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, 1, 28, 28), SIGMAS[:1])
    assert round(counter.get_total_flops() / 1e9, 2) == 3.79
