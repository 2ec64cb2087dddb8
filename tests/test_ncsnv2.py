"""NCSNv2 network: sizes for 32 and 64 px, output scaling 1/sigma, structure, and outputs
equal to ermongroup/ncsnv2's on recorded references."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ncsn.errors import UserError
from ncsn.nets.ncsnv2 import NCSNv2
from ncsnpp_weights import deterministic_weights


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


def _ncsnv2_reference() -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    path = Path(__file__).parent / "data" / "ncsnv2_reference.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return ({k: json.loads(v) for k, v in meta.items() if k not in ("format", "record")},
            load_file(str(path)))


@pytest.mark.parametrize("name", ["NCSNv2", "NCSNv2Deeper"])
def test_outputs_equal_ermongroup_ncsnv2_on_recorded_references(name: str) -> None:
    """Outputs recorded from ermongroup/ncsnv2's own networks (benchmarks/
    record_ncsnv2_reference.py) on the same deterministic weights, at its lowest, middle and
    highest levels; measured equal bit for bit, bounded at float32 round-off."""
    specs, tensors = _ncsnv2_reference()
    spec = specs[name]
    net = NCSNv2(channels=spec["channels"], image_size=spec["image_size"], ngf=spec["ngf"]).eval()
    assert net.depth == ("base" if name == "NCSNv2" else "deeper")
    net.load_state_dict(deterministic_weights({k: v.shape for k, v in net.state_dict().items()}))
    x, sigma, expected = (tensors[f"{name}.{k}"] for k in ("x", "sigma", "out"))
    with torch.no_grad():
        out = net(x, sigma)
    scale = expected.flatten(1).abs().amax(1)
    assert bool((scale * sigma > 0.1).all())  # not trivially small
    assert bool(((out - expected).flatten(1).abs().amax(1) <= 1e-6 * scale).all())
