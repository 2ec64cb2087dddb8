"""Measure how closely ncsn's NCSN++ reproduces score_sde_pytorch (recorded references) and
diffusers (our export loaded with diffusers' UNet2DModel, when diffusers is installed).

    HF_HUB_OFFLINE=1 python benchmarks/ncsnpp_equality.py

Prints, per recorded variant, the largest per-sample error relative to that sample's largest
|output| (the quantity tests/test_ncsnpp.py and tests/test_diffusers_folder.py bound).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ncsn.nets.diffusers_folder import write_diffusers_folder
from ncsn.nets.ncsnpp import NCSNpp
from ncsn.spec.model import ModelSpec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from checkpoint_writers import randomised  # noqa: E402
from ncsnpp_weights import deterministic_weights  # noqa: E402

REFERENCE = REPO / "tests/data/ncsnpp_reference.safetensors"


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).flatten(1).abs().amax(1) / b.flatten(1).abs().amax(1)).max())


def main() -> None:
    with safe_open(str(REFERENCE), "pt") as f:
        specs = {k: json.loads(v) for k, v in f.metadata().items() if k != "format"}
    tensors = load_file(str(REFERENCE))
    print(f"torch {torch.__version__}; vs score_sde_pytorch (recorded):")
    for name, spec in sorted(specs.items()):
        net = NCSNpp(channels=3, image_size=spec["image_size"],
                     sigmas=tensors.get(f"{name}.sigmas"), **spec["net"]).eval()
        net.load_state_dict(deterministic_weights({k: v.shape for k, v in
                                                   net.state_dict().items()}))
        with torch.no_grad():
            out = net(tensors[f"{name}.x"], tensors[f"{name}.sigma"])
        print(f"  {name}: {relative_error(out, tensors[f'{name}.out']):.2e}")
    try:
        import diffusers
    except ImportError:
        print("diffusers not installed: no diffusers comparison")
        return
    section = {"nf": 32, "ch_mult": [1, 4], "num_res_blocks": 1, "attn_resolutions": [4],
               "progressive": "output_skip", "progressive_input": "input_skip"}
    torch.manual_seed(0)
    net = randomised(NCSNpp(channels=3, image_size=8, **section)).eval()
    spec = ModelSpec.from_json({"network": {"name": "ncsnpp", **section}, "channels": 3,
                                "image_size": 8, "sigmas": [90.0, 1.0, 0.01]})
    x, sigma = torch.rand(3, 3, 8, 8), torch.tensor([0.01, 1.0, 90.0])
    with tempfile.TemporaryDirectory() as tmp:
        write_diffusers_folder(Path(tmp) / "pipe", net, spec)
        unet = diffusers.UNet2DModel.from_pretrained(Path(tmp) / "pipe" / "unet").eval()
        with torch.no_grad():
            error = relative_error(unet(x, sigma).sample, net(x, sigma))
    print(f"diffusers {diffusers.__version__}, our export in UNet2DModel: {error:.2e}")


if __name__ == "__main__":
    main()
