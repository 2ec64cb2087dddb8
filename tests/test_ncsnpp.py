"""NCSN++: outputs equal score_sde_pytorch's on recorded references (same keys, same parameter
order, deterministic weights), parameter counts of the CIFAR-10 configs, score_sde's
initialisation and the noise-conditioning contract."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ncsn.errors import UserError
from ncsn.nets.ncsnpp import NCSNpp
from ncsn.nets.registry import build_network
from ncsnpp_weights import deterministic_weights

REFERENCE = Path(__file__).parent / "data" / "ncsnpp_reference.safetensors"
# Round-off across the whole network, relative to each sample's largest output (measured:
# <= 1.7e-6, benchmarks/ncsnpp_equality.py); computing score_sde's Fourier phase in another
# order already gives 2.5e-5.
REL_TOL = 5e-6


def _reference() -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    with safe_open(str(REFERENCE), "pt") as f:
        meta = f.metadata()
    specs = {k: json.loads(v) for k, v in meta.items() if k != "format"}
    return specs, load_file(str(REFERENCE))


SPECS, TENSORS = _reference()


def _built(name: str) -> NCSNpp:
    spec = SPECS[name]
    return NCSNpp(channels=3, image_size=spec["image_size"],
                  sigmas=TENSORS.get(f"{name}.sigmas"), **spec["net"]).eval()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_keys_and_parameter_order_equal_score_sde(name: str) -> None:
    net = _built(name)
    recorded = SPECS[name]
    assert list(net.state_dict()) == [k for k in recorded["state_keys"] if k != "sigmas"]
    assert [k for k, p in net.named_parameters() if p.requires_grad] == recorded["trainable"]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_outputs_equal_score_sde_to_float32_round_off(name: str) -> None:
    net = _built(name)
    net.load_state_dict(deterministic_weights({k: v.shape for k, v in net.state_dict().items()}))
    x, sigma, expected = (TENSORS[f"{name}.{k}"] for k in ("x", "sigma", "out"))
    with torch.no_grad():
        out = net(x, sigma)
    scale = expected.flatten(1).abs().amax(dim=1)
    error = (out - expected).flatten(1).abs().amax(dim=1)
    assert bool((scale * sigma > 1.0).all())  # the raw outputs are not trivially small
    assert bool((error <= REL_TOL * scale).all()), (error / scale).tolist()


@pytest.mark.parametrize(("nf", "num_res_blocks", "count"), [
    (128, 4, 62_758_915), (128, 8, 107_587_075), (32, 4, 3_942_403), (32, 8, 6_756_739)])
def test_parameter_counts_of_the_cifar10_configs(nf: int, num_res_blocks: int,
                                                 count: int) -> None:
    with torch.device("meta"):
        net = NCSNpp(channels=3, image_size=32, nf=nf, num_res_blocks=num_res_blocks)
    assert sum(p.numel() for p in net.parameters()) == count  # SPEC section 5


def _fan_avg(w: torch.Tensor) -> float:
    return (w.shape[0] + w.shape[1]) * (w.numel() / (w.shape[0] * w.shape[1])) / 2


def test_initialisation_follows_score_sde() -> None:
    torch.manual_seed(0)
    net = NCSNpp(channels=3, image_size=16, nf=32, ch_mult=[1, 2], num_res_blocks=1,
                 attn_resolutions=[8])
    params = {k: p.detach() for k, p in net.named_parameters()}
    fourier = net.all_modules[0].W
    assert isinstance(fourier, torch.nn.Parameter) and not fourier.requires_grad
    assert "all_modules.0.W" in net.state_dict()
    assert 12 < float(fourier.std()) < 20  # 32 draws of N(0, 16^2)
    head = f"all_modules.{len(net.all_modules) - 1}.weight"
    tiny = [k for k in params if k.endswith(("Conv_1.weight", "NIN_3.W"))] + [head]
    qkv = [k for k in params if k.endswith(("NIN_0.W", "NIN_1.W", "NIN_2.W"))]
    assert len(tiny) == 10 + 3 + 1 and len(qkv) == 9  # 10 blocks, 3 attention blocks, head
    for key, w in params.items():
        if key.endswith(("bias", ".b")):
            assert not w.any(), key
        elif w.dim() == 1 and key != "all_modules.0.W":  # GroupNorm scales
            assert bool((w == 1).all()), key
        elif w.dim() > 1:
            scale = 1e-10 if key in tiny else 0.1 if key in qkv else 1.0
            bound = math.sqrt(3 * scale / _fan_avg(w))  # uniform(-bound, bound)
            assert float(w.abs().max()) <= bound, key
            assert 0.8 * bound / math.sqrt(3) < float(w.std()) < 1.2 * bound / math.sqrt(3), key


def test_continuous_net_takes_any_sigma_positional_net_only_its_levels() -> None:
    x = torch.rand(2, 3, 8, 8)
    fourier = NCSNpp(channels=3, image_size=8, nf=8, ch_mult=[1, 2], num_res_blocks=1)
    assert fourier.continuous_sigma and fourier(x, torch.tensor([0.0123, 47.0])).shape == x.shape
    levels = torch.tensor([50.0, 5.0, 0.5])
    positional = NCSNpp(channels=3, image_size=8, sigmas=levels, nf=8, ch_mult=[1, 2],
                        num_res_blocks=1, embedding_type="positional")
    assert not positional.continuous_sigma
    assert positional(x, levels[[0, 2]]).shape == x.shape
    with pytest.raises(ValueError, match="not one of the network's trained noise levels"):
        positional(x, torch.tensor([50.0, 1.0]))
    assert "sigmas" not in positional.state_dict()


def test_registry_builds_it_and_rejects_bad_modes() -> None:
    section = {"name": "ncsnpp", "nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1}
    net = build_network(section, channels=3, image_size=8, sigmas=torch.tensor([1.0]))
    assert isinstance(net, NCSNpp)
    with pytest.raises(UserError, match="progressive must be one of none, output_skip"):
        build_network({**section, "progressive": "residual"}, channels=3, image_size=8,
                      sigmas=torch.tensor([1.0]))
    with pytest.raises(UserError, match="divisible by 2"):
        build_network(section, channels=3, image_size=9, sigmas=torch.tensor([1.0]))


def test_equality_benchmark_measures_every_variant_within_the_bound() -> None:
    """benchmarks/ncsnpp_equality.py (the command behind docs/networks.md's numbers) runs and
    reports each recorded variant, and the diffusers export where diffusers is installed."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(repo / "benchmarks" / "ncsnpp_equality.py")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    errors = dict(re.findall(r"^\s*(\S[^:\n]*): (\d\.\d+e-\d+)$", done.stdout, re.MULTILINE))
    expected = set(SPECS) | ({f"diffusers {importlib.metadata.version('diffusers')}, our export "
                              "in UNet2DModel"} if importlib.util.find_spec("diffusers") else set())
    assert set(errors) == expected
    assert all(float(e) <= REL_TOL for e in errors.values()), errors
