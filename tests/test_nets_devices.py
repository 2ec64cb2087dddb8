"""The RefineNet layers on GPU paths, checked on the CPU (issue 12): instance norm++ statistics in
fp32 under bf16 autocast, channels_last kept through the norms, and the trained-level check of
CondRefineNetDilated off the hot path (once per sigma tensor; no graph break under compile)."""

from __future__ import annotations

import pytest
import torch

import ncsn.nets.refinenet as refinenet
from ncsn.core.noise import geometric_sigmas
from ncsn.nets.layers import instance_norm_plus, sigma_to_level
from ncsn.nets.refinenet import CondRefineNetDilated

SIGMAS = geometric_sigmas(1.0, 0.05, 4)


def _affine(channels: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    gamma, alpha = 1 + 0.02 * torch.randn(2, 3, channels, generator=gen)
    return gamma, alpha, 0.1 * torch.randn(3, channels, generator=gen)


def test_instance_norm_plus_statistics_are_fp32_under_bf16_autocast() -> None:
    gen = torch.Generator().manual_seed(0)
    # channel means 0.05 apart around 100, where bf16 values are 0.5 apart: the alpha term
    # (mu_c - m) / sqrt(v) is all rounding when the means are bf16
    offsets = 0.05 * torch.arange(8.0)[:, None, None]
    x = (100 + torch.randn(3, 8, 16, 16, generator=gen) + offsets).bfloat16()
    gamma, alpha, beta = _affine(8, gen)
    reference = instance_norm_plus(x.double(), gamma.double(), alpha.double(), beta.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = instance_norm_plus(x, gamma, alpha, beta)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), reference, rtol=8e-3, atol=8e-3)  # bf16 output
    mu = x.mean(dim=(2, 3))  # bf16 means, as the norm computed them before
    shift = (mu - mu.mean(1, keepdim=True)) / (mu.var(1, keepdim=True) + 1e-5).sqrt()
    exact = x.double().mean(dim=(2, 3))
    exact_shift = (exact - exact.mean(1, keepdim=True)) / (exact.var(1, keepdim=True) + 1e-5).sqrt()
    assert float((shift.double() - exact_shift).abs().max()) > 0.3  # the case is a real test


def test_instance_norm_plus_keeps_channels_last_and_its_values() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, 6, 5, generator=gen)
    gamma, alpha, beta = _affine(8, gen)
    nchw = instance_norm_plus(x, gamma, alpha, beta)
    nhwc = instance_norm_plus(x.contiguous(memory_format=torch.channels_last), gamma, alpha, beta)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not nhwc.is_contiguous()
    assert nchw.is_contiguous()
    torch.testing.assert_close(nhwc, nchw, rtol=1e-5, atol=1e-5)


def test_cond_refinenet_runs_channels_last_through_every_norm() -> None:
    torch.manual_seed(0)
    net = CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=4)
    x, sigma = torch.rand(2, 1, 8, 8), SIGMAS[[0, 3]]
    expected = net(x, sigma)
    layouts = []
    for module in net.modules():
        if isinstance(module, refinenet.CondInstanceNorm2dPlus):
            module.register_forward_hook(lambda m, args, out: layouts.append(
                out.is_contiguous(memory_format=torch.channels_last)))
    net = net.to(memory_format=torch.channels_last)
    out = net(x.contiguous(memory_format=torch.channels_last), sigma)
    assert len(layouts) > 20 and all(layouts)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_the_trained_level_check_runs_once_per_sigma_tensor(monkeypatch) -> None:
    checks = []
    real = refinenet.sigma_to_level

    def recording(sigma, sigmas, rel_tol=1e-4, *, check=True):
        checks.append(check)
        return real(sigma, sigmas, rel_tol, check=check)

    monkeypatch.setattr(refinenet, "sigma_to_level", recording)
    net = CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=4)
    x = torch.rand(2, 1, 8, 8)
    level_sigma = torch.full((2,), float(SIGMAS[1]))  # as a sampler passes one level's steps
    for _ in range(3):
        net(x, level_sigma)
    assert checks == [True, False, False]
    level_sigma.fill_(float(SIGMAS[2]))  # changed in place: checked again
    net(x, level_sigma)
    net(x, torch.full((2,), float(SIGMAS[2])))  # another tensor: checked
    assert checks[3:] == [True, True]
    wrong = torch.full((2,), 0.5)
    for _ in range(2):  # a failed check is never remembered as passed
        with pytest.raises(ValueError, match="sigma=0.5 is not one of the network's trained"):
            net(x, wrong)


def test_the_trained_level_check_compiles_without_a_graph_break() -> None:
    net = CondRefineNetDilated(channels=1, sigmas=SIGMAS, ngf=4)
    for fn in (lambda s: sigma_to_level(s, SIGMAS), net._levels):
        compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
        assert compiled(SIGMAS[[3, 0, 1]] * (1 + 5e-5)).tolist() == [3, 0, 1]
        with pytest.raises(RuntimeError, match="not one of the network's trained noise levels"):
            compiled(torch.tensor([1.0, 0.5, 0.05]))
