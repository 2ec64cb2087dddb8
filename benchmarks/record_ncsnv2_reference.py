"""Record reference outputs of ermongroup/ncsnv2's own networks for tests/test_ncsnv2.py.

Builds ncsnv2's NCSNv2 (configs/cifar10.yml, 32 px) and NCSNv2Deeper (configs/celeba.yml,
64 px) at ngf 8 from a local checkout (nothing is downloaded), fills every tensor but the
``sigmas`` buffer with ``tests/ncsnpp_weights.deterministic_weights`` (a function of key name
and shape, so no weights are stored), runs fixed inputs at its lowest, middle and highest
levels (its forward takes level indices) and writes inputs, the levels' sigmas and outputs to
``tests/data/ncsnv2_reference.safetensors`` (metadata: commit, versions, command). With
``--compare`` it also prints, per network, ncsn's largest per-sample error relative to that
sample's largest |output|.

    python benchmarks/record_ncsnv2_reference.py /path/to/ncsnv2 --commit SHA [--compare]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))
from record_ncsnv2_keys import NETWORKS, namespace  # noqa: E402

from ncsnpp_weights import deterministic_weights  # noqa: E402

BATCH = {"NCSNv2": 3, "NCSNv2Deeper": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ncsnv2", type=Path, help="local ermongroup/ncsnv2 checkout")
    parser.add_argument("--commit", required=True, help="its commit")
    parser.add_argument("--out", type=Path, default=REPO / "tests/data/ncsnv2_reference")
    parser.add_argument("--compare", action="store_true", help="also run ncsn's NCSNv2")
    args = parser.parse_args()
    sys.path.insert(0, str(args.ncsnv2.resolve()))
    from models import ncsnv2  # ermongroup/ncsnv2's package, from the checkout

    tensors, meta = {}, {}
    for name, config_file in NETWORKS.items():
        config = namespace(yaml.safe_load((args.ncsnv2 / "configs" / config_file).read_text()))
        config.device, config.model.ngf = torch.device("cpu"), 8
        theirs = getattr(ncsnv2, name)(config).eval()
        shapes = {k: v.shape for k, v in theirs.state_dict().items() if k != "sigmas"}
        theirs.load_state_dict({**deterministic_weights(shapes), "sigmas": theirs.sigmas})
        size, channels, levels = config.data.image_size, config.data.channels, \
            theirs.sigmas.numel()
        gen = torch.Generator().manual_seed(1)
        x = torch.rand(BATCH[name], channels, size, size, generator=gen)
        y = torch.tensor([0, levels // 2, levels - 1][:BATCH[name]])
        with torch.no_grad():
            out = theirs(x, y)
        tensors.update({f"{name}.x": x, f"{name}.sigma": theirs.sigmas[y].float(),
                        f"{name}.out": out})
        meta[name] = json.dumps({"image_size": size, "channels": channels, "ngf": 8})
        if args.compare:
            from ncsn.nets.ncsnv2 import NCSNv2

            ours = NCSNv2(channels=channels, image_size=size, ngf=8).eval()
            ours.load_state_dict(deterministic_weights(shapes))
            with torch.no_grad():
                error = (ours(x, theirs.sigmas[y].float()) - out).flatten(1).abs().amax(1)
            print(f"{name}: {float((error / out.flatten(1).abs().amax(1)).max()):.2e}")
    meta["record"] = json.dumps({
        "ncsnv2_commit": args.commit, "torch": torch.__version__,
        "python": platform.python_version(),
        "command": f"python benchmarks/record_ncsnv2_reference.py NCSNV2_CHECKOUT --commit "
                   f"{args.commit}"})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out.with_suffix(".safetensors")), metadata=meta)
    print(f"wrote {args.out.with_suffix('.safetensors')}")


if __name__ == "__main__":
    main()
