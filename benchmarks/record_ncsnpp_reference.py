"""Record reference outputs of score_sde_pytorch's NCSN++ for tests/test_ncsnpp.py.

Builds score_sde's own ``ncsnpp`` model from a local checkout (nothing is downloaded or built)
at small widths in the structures of its VE configs, fills every weight with
``tests/ncsnpp_weights.deterministic_weights`` (a function of key name and shape, so no weights
are stored), runs fixed inputs and noise levels and writes the inputs, sigmas and outputs to
``tests/data/ncsnpp_reference.safetensors`` plus a JSON record (commit, versions, command, and
the parameter counts of the published configs at full size).
score_sde's resampling imports a compiled CUDA op (``op.upfirdn2d``); this script puts a
pure-PyTorch stand-in (written here, independent of ncsn's) in ``sys.modules`` first.

    python benchmarks/record_ncsnpp_reference.py /path/to/score_sde_pytorch --commit SHA
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from ncsnpp_weights import deterministic_weights  # noqa: E402

# Each variant: our NCSNpp keyword arguments (the same names as score_sde's config.model) plus
# the image size, channels and sigma range; small widths in the structure of a score_sde config.
VARIANTS: dict[str, dict[str, Any]] = {
    "cifar10_continuous": {  # ve/cifar10_ncsnpp_continuous at nf 8
        "image_size": 32, "sigma_max": 50.0, "net": {"nf": 8}},
    "cifar10_deep_continuous": {  # ve/cifar10_ncsnpp_deep_continuous at nf 8
        "image_size": 32, "sigma_max": 50.0, "net": {"nf": 8, "num_res_blocks": 8}},
    "celebahq_continuous": {  # ve/celebahq_256_ncsnpp_continuous, nf 8, 6 of its 7 resolutions
        "image_size": 32, "sigma_max": 348.0,
        "net": {"nf": 8, "ch_mult": [1, 1, 2, 2, 2, 2], "num_res_blocks": 2,
                "progressive": "output_skip", "progressive_input": "input_skip"}},
    "ffhq_continuous": {  # ve/ffhq_ncsnpp_continuous (FFHQ 1024), nf 4, 6 of its 8 resolutions
        "image_size": 32, "sigma_max": 1348.0,
        "net": {"nf": 4, "ch_mult": [1, 2, 4, 8, 16, 32], "num_res_blocks": 1, "dropout": 0.0,
                "progressive": "output_skip", "progressive_input": "input_skip"}},
    "positional_cat_noskiprescale": {  # ve/cifar10_ncsnpp (SMLD, positional) with the other modes
        "image_size": 16, "sigma_max": 50.0, "num_scales": 10,
        "net": {"nf": 8, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [8],
                "embedding_type": "positional", "progressive_input": "input_skip",
                "progressive_combine": "cat", "skip_rescale": False}},
}
# The published configs at full size (only their parameter counts are recorded), keyed by the
# packaged config that mirrors each.
FULL_SIZE: dict[str, dict[str, Any]] = {
    "ve_cifar10_ncsnpp_continuous": {"image_size": 32, "sigma_max": 50.0, "net": {}},
    "ve_cifar10_ncsnpp_deep_continuous": {"image_size": 32, "sigma_max": 50.0,
                                          "net": {"num_res_blocks": 8}},
    "ve_celebahq_256_ncsnpp_continuous": {
        "image_size": 256, "sigma_max": 348.0, "num_scales": 2000,
        "net": {"ch_mult": [1, 1, 2, 2, 2, 2, 2], "num_res_blocks": 2, "dropout": 0.0,
                "progressive": "output_skip", "progressive_input": "input_skip"}},
    "ve_ffhq_1024_ncsnpp_continuous": {
        "image_size": 1024, "sigma_max": 1348.0, "num_scales": 2000,
        "net": {"nf": 16, "ch_mult": [1, 2, 4, 8, 16, 32, 32, 32], "num_res_blocks": 1,
                "dropout": 0.0, "progressive": "output_skip", "progressive_input": "input_skip"}},
}
DEFAULTS = {"nf": 128, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 4, "attn_resolutions": [16],
            "dropout": 0.1, "progressive": "none", "progressive_input": "residual",
            "progressive_combine": "sum", "embedding_type": "fourier", "fourier_scale": 16.0,
            "init_scale": 0.0, "skip_rescale": True, "fir_kernel": [1, 3, 3, 1],
            "centered": False}
BATCH_SIGMAS = (0.01, 0.9)  # plus sigma_max
LEVELS = (0, 4, 9)  # positional variant: level indices into score_sde's sigmas


def reference_upfirdn2d(x: torch.Tensor, kernel: Any, up: int = 1, down: int = 1,
                        pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Stand-in for score_sde's compiled op: zero insertion, padding, then the FIR filter as an
    explicit sum of shifted copies (true convolution), then decimation."""
    kernel = torch.as_tensor(kernel, dtype=x.dtype)
    b, c, h, w = x.shape
    grid = x.new_zeros(b, c, h * up, w * up)
    grid[:, :, ::up, ::up] = x
    grid = F.pad(grid, (pad[0], pad[1], pad[0], pad[1]))
    kh, kw = kernel.shape
    out_h, out_w = grid.shape[2] - kh + 1, grid.shape[3] - kw + 1
    out = x.new_zeros(b, c, out_h, out_w)
    for i in range(kh):
        for j in range(kw):
            out += kernel[kh - 1 - i, kw - 1 - j] * grid[:, :, i:i + out_h, j:j + out_w]
    return out[:, :, ::down, ::down]


def ns(**items: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**items)


def score_sde_config(variant: dict[str, Any]) -> types.SimpleNamespace:
    """score_sde's ml_collections config, as plain namespaces, for one variant."""
    net = {**DEFAULTS, **variant["net"]}
    model = ns(name="ncsnpp", scale_by_sigma=True, normalization="GroupNorm",
               nonlinearity="swish", resamp_with_conv=True, conditional=True, fir=True,
               resblock_type="biggan", attention_type="ddpm", conv_size=3,
               sigma_min=0.01, sigma_max=variant["sigma_max"],
               num_scales=variant.get("num_scales", 1000),
               **{k: (tuple(v) if isinstance(v, list) else v) for k, v in net.items()
                  if k != "centered"})
    data = ns(image_size=variant["image_size"], num_channels=3, centered=net["centered"])
    return ns(model=model, data=data,
              training=ns(continuous=net["embedding_type"] == "fourier"))


def record(variant: dict[str, Any], models: Any, seed: int
           ) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """Inputs, sigmas and score_sde's outputs for one variant, and its network."""
    config = score_sde_config(variant)
    torch.manual_seed(seed)
    net = models.ncsnpp.NCSNpp(config).eval()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if k != "sigmas"}
    state = deterministic_weights(shapes)
    state["sigmas"] = net.sigmas
    net.load_state_dict(state, strict=True)
    size = variant["image_size"]
    gen = torch.Generator().manual_seed(seed)
    positional = config.model.embedding_type == "positional"
    if positional:
        levels = torch.tensor(LEVELS)
        sigma = net.sigmas[levels].float()
        cond = levels
    else:
        sigma = torch.tensor([*BATCH_SIGMAS, variant["sigma_max"]])
        cond = sigma
    x = torch.rand(len(sigma), 3, size, size, generator=gen)
    x = x + sigma[:, None, None, None] * torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        out = net(x, cond).float()
    tensors = {"x": x, "sigma": sigma, "out": out}
    if positional:
        tensors["sigmas"] = net.sigmas.float()
    return tensors, net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("score_sde", type=Path, help="local score_sde_pytorch checkout")
    parser.add_argument("--commit", help="its commit (read with git when omitted)")
    parser.add_argument("--out", type=Path, default=REPO / "tests/data/ncsnpp_reference")
    args = parser.parse_args()
    commit = args.commit or subprocess.run(
        ["git", "-C", str(args.score_sde), "rev-parse", "HEAD"], capture_output=True,
        text=True, check=True).stdout.strip()
    sys.modules["op"] = ns(upfirdn2d=reference_upfirdn2d)
    sys.path.insert(0, str(args.score_sde.resolve()))
    import models.ncsnpp  # score_sde's package, from the checkout

    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    record_json: dict[str, Any] = {
        "score_sde_commit": commit, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "command": "python benchmarks/record_ncsnpp_reference.py SCORE_SDE_CHECKOUT "
                   f"--commit {commit}", "variants": {}}
    for seed, (name, variant) in enumerate(VARIANTS.items()):
        recorded, net = record(variant, models, seed)
        trainable = [k for k, p in net.named_parameters() if p.requires_grad]
        for key, value in recorded.items():
            tensors[f"{name}.{key}"] = value.contiguous()
        spec = {"image_size": variant["image_size"], "sigma_max": variant["sigma_max"],
                "net": {**DEFAULTS, **variant["net"]}, "state_keys": list(net.state_dict()),
                "trainable": trainable}
        metadata[name] = json.dumps(spec)
        record_json["variants"][name] = {
            "net": spec["net"], "image_size": spec["image_size"],
            "parameters": sum(p.numel() for p in net.parameters()),
            "max_abs_out": float(tensors[f"{name}.out"].abs().max())}
    record_json["full_size_parameters"] = {
        name: sum(p.numel() for p in models.ncsnpp.NCSNpp(score_sde_config(v)).parameters())
        for name, v in FULL_SIZE.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out.with_suffix(".safetensors")), metadata=metadata)
    args.out.with_suffix(".json").write_text(json.dumps(record_json, indent=2) + "\n")
    print(f"wrote {args.out.with_suffix('.safetensors')} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
