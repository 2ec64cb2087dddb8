"""UNetSmall: the CPU-sized noise-conditional score network."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.nets import build_network
from ncsn.nets.precond import Preconditioned
from ncsn.nets.unet import SelfAttention, UNetSmall

SIGMAS = geometric_sigmas(5.0, 0.01, 10)


def _flops_per_sample(net: torch.nn.Module, size: int) -> int:
    with FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 1, size, size), torch.ones(1))
    return counter.get_total_flops()


def test_default_costs_at_most_a_tenth_of_a_gflop_on_28x28() -> None:
    net = UNetSmall(channels=1, image_size=28, sigmas=SIGMAS)
    flops = _flops_per_sample(net, 28)
    assert flops <= 0.1e9
    assert flops < 3.79e9 / 40, "must be a small fraction of CondRefineNetDilated's 3.79 GFLOP"


@pytest.mark.parametrize(("channels", "size", "ch_mult"), [(1, 28, (1, 2, 4)), (3, 32, (1, 2)),
                                                           (1, 8, (1, 2)), (1, 7, (1, 2, 2))])
def test_shapes_including_odd_sizes(channels: int, size: int, ch_mult: tuple[int, ...]) -> None:
    net = UNetSmall(channels=channels, image_size=size, ngf=4, ch_mult=ch_mult, emb_dim=8)
    x = torch.rand(3, channels, size, size)
    out = net(x, torch.tensor([0.01, 0.3, 7.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_output_is_divided_by_sigma_and_conditioned_on_it() -> None:
    torch.manual_seed(0)
    net = UNetSmall(channels=1, image_size=8, ngf=4, ch_mult=(1, 2), emb_dim=8).eval()
    x = torch.rand(1, 1, 8, 8).expand(2, 1, 8, 8)
    with torch.no_grad():
        same = net(x, torch.tensor([0.5, 0.5]))
        diff = net(x, torch.tensor([0.5, 0.05]))
    torch.testing.assert_close(same[0], same[1])
    # the raw output f = sigma * s must change with sigma (embedding + input scaling)
    assert not torch.allclose(0.5 * diff[0], 0.05 * diff[1], atol=1e-4)


def test_samples_in_a_batch_are_independent() -> None:
    torch.manual_seed(0)
    net = UNetSmall(channels=1, image_size=8, ngf=4, ch_mult=(1, 2), emb_dim=8).eval()
    x, sigma = torch.rand(4, 1, 8, 8), torch.tensor([0.1, 0.2, 0.4, 0.8])
    with torch.no_grad():
        batched = net(x, sigma)
        single = torch.cat([net(x[k:k + 1], sigma[k:k + 1]) for k in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_registry_builds_it_and_rejects_unknown_fields() -> None:
    net = build_network({"name": "unet_small", "ngf": 8, "ch_mult": [1, 2]}, channels=1,
                        image_size=8, sigmas=SIGMAS)
    assert isinstance(net, Preconditioned) and isinstance(net.backbone, UNetSmall)
    assert net.kind == "ncsnv2"  # the backbone's default preconditioner
    assert net.state_dict().keys() == net.backbone.state_dict().keys()  # the backbone's names
    with pytest.raises(UserError, match="depth"):
        build_network({"name": "unet_small", "depth": 3}, channels=1, image_size=8,
                      sigmas=SIGMAS)


def test_bad_hyper_parameters() -> None:
    with pytest.raises(ValueError, match="ch_mult"):
        UNetSmall(channels=1, image_size=8, ch_mult=())
    with pytest.raises(ValueError, match="ngf"):
        UNetSmall(channels=1, image_size=8, ngf=0)
    with pytest.raises(ValueError, match="groups must be >= 1"):
        UNetSmall(channels=1, image_size=8, groups=0)


def test_it_learns_a_closed_form_score() -> None:
    """Data at a single point c: the perturbed score is -(x - c)/sigma^2; DSM must learn it."""
    torch.manual_seed(0)
    net = UNetSmall(channels=1, image_size=4, ngf=8, ch_mult=(1, 2), emb_dim=16, groups=4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    c = torch.full((1, 1, 4, 4), 0.5)
    sigma = torch.full((64,), 0.5)
    for _ in range(300):
        z = torch.randn(64, 1, 4, 4)
        loss = 0.5 * ((net(c + 0.5 * z, sigma) * 0.5 + z) ** 2).sum(dim=(1, 2, 3)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = c + 0.5 * torch.randn(256, 1, 4, 4)
    with torch.no_grad():
        err = (net(x, torch.full((256,), 0.5)) - (-(x - c) / 0.25)).pow(2).mean()
        scale = ((x - c) / 0.25).pow(2).mean()
    assert err / scale < 0.05


def test_attention_block_starts_as_the_identity_and_is_softmax_attention() -> None:
    torch.manual_seed(0)
    block = SelfAttention(16, heads=2, groups=4)
    x = torch.randn(3, 16, 5, 4)
    torch.testing.assert_close(block(x), x)  # zero-initialised output projection
    torch.nn.init.normal_(block.proj.weight)
    h = block.norm(x)
    q, k, v = block.qkv(h).reshape(3, 3, 2, 8, 20).unbind(1)  # (B, heads, d, HW)
    attn = torch.softmax(q.transpose(-1, -2) @ k / 8 ** 0.5, dim=-1)  # (B, heads, HW, HW)
    mixed = (v @ attn.transpose(-1, -2)).reshape(3, 16, 5, 4)
    torch.testing.assert_close(block(x), x + block.proj(mixed), rtol=1e-4, atol=1e-5)


def test_unet_with_attention_at_the_bottom_runs_and_adds_only_its_own_weights() -> None:
    torch.manual_seed(0)
    plain = UNetSmall(channels=1, image_size=28, ngf=8)
    torch.manual_seed(0)
    attending = UNetSmall(channels=1, image_size=28, ngf=8, attention_heads=4)
    extra = set(attending.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("mid_attention.") for k in extra)
    x, sigma = torch.randn(2, 1, 28, 28), torch.tensor([0.5, 3.0])
    assert attending(x, sigma).shape == x.shape
    with pytest.raises(ValueError, match="heads"):
        UNetSmall(channels=1, image_size=28, ngf=8, attention_heads=3)
