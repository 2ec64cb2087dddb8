"""Training transforms: to_float, uniform dequantization, flips, logit (ncsn.data.transforms)."""

import pytest
import torch

from ncsn.data import (
    apply_train_transforms,
    dequantize,
    inverse_logit_transform,
    logit_transform,
    random_hflip,
    random_shift,
    to_float,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ints(n: int = 64, c: int = 3, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=_gen(1), dtype=torch.uint8)


def test_to_float_is_k_over_255_and_rejects_floats():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    y = to_float(x)
    assert y.dtype == torch.float32
    assert torch.equal(y.flatten(), torch.arange(256, dtype=torch.float32) / 255.0)
    with pytest.raises(TypeError):
        to_float(y)


def test_dequantize_stays_in_the_pixel_bin_and_is_uniform():
    k = _ints(n=256)
    out = dequantize(to_float(k), _gen(2))
    # x*255/256 + U/256 with x = k/255 lies in [k/256, (k+1)/256): its bin is k again
    assert torch.equal(torch.floor(out * 256).to(torch.uint8), k)
    u = out * 256 - k.float()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01  # 49k uniforms: std of the mean ~0.0013
    assert abs(u.var().item() - 1 / 12) < 0.005
    assert torch.equal(out, dequantize(to_float(k), _gen(2)))


def test_random_hflip_flips_whole_images_half_the_time():
    x = to_float(_ints(n=2000, c=1, size=4))
    out = random_hflip(x, _gen(3))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all())
    asym = ~(x == x.flip(-1)).flatten(1).all(1)  # images whose flip differs from themselves
    frac = flipped[asym].float().mean().item()
    assert abs(frac - 0.5) < 0.05
    assert torch.equal(out, random_hflip(x, _gen(3)))


def test_logit_transform_closed_form_and_inverse():
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    y = logit_transform(x, lam=1e-6)
    assert torch.isfinite(y).all()
    assert y[2].item() == 0.0
    z = 1e-6 + (1 - 2e-6) * 0.25
    assert y[1].item() == pytest.approx(torch.log(torch.tensor(z / (1 - z))).item(), rel=1e-6)
    assert torch.allclose(inverse_logit_transform(y, lam=1e-6), x, atol=1e-6)
    inner = x[1:4]  # logit is odd about 1/2 (at 0 and 1 float32 rounding of 1 - lam dominates)
    assert torch.allclose(logit_transform(inner), -logit_transform(1 - inner), atol=1e-5)


def test_apply_train_transforms_order_flip_dequantize_logit():
    x = to_float(_ints())
    g = _gen(5)
    expected = logit_transform(dequantize(random_hflip(x, g), g))
    got = apply_train_transforms(x, dequantize=True, hflip=True, logit=True, generator=_gen(5))
    assert torch.equal(got, expected)
    assert torch.equal(apply_train_transforms(x, dequantize=False, hflip=False, logit=False,
                                              generator=_gen(5)), x)


def test_random_shift_translates_each_image_by_at_most_max_shift() -> None:
    """Every output is its input translated by one (dy, dx) with |dy|, |dx| <= max_shift (a
    digit on a zero border moves whole), the shifts differ between images, and 0 is the
    identity."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 12, 12)
    x[:, :, 4:8, 5:7] = torch.rand(64, 1, 4, 2, generator=gen) + 0.1
    assert random_shift(x, 0, gen) is x
    out = random_shift(x, 2, gen)
    seen = set()
    for image, moved in zip(x, out, strict=True):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if torch.equal(torch.roll(image, (dy, dx), dims=(1, 2)), moved)]
        assert len(shifts) == 1
        seen.add(shifts[0])
    assert len(seen) > 10
