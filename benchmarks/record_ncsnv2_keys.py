"""Record the state-dict keys and shapes of ermongroup/ncsnv2's networks for
tests/test_official.py (our NCSNv2 must use the same names, plus its ``sigmas`` buffer).

Builds NCSNv2 (configs/cifar10.yml, 32 px) and NCSNv2Deeper (configs/celeba.yml, 64 px) at
ngf 8 from a local checkout (nothing is downloaded) and writes
tests/data/ncsnv2-official-keys.txt, one ``network key (shape)`` line each.

    python benchmarks/record_ncsnv2_keys.py /path/to/ncsnv2 --commit SHA
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
NETWORKS = {"NCSNv2": "cifar10.yml", "NCSNv2Deeper": "celeba.yml"}


def namespace(tree: Any) -> Any:
    if isinstance(tree, dict):
        return types.SimpleNamespace(**{k: namespace(v) for k, v in tree.items()})
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ncsnv2", type=Path, help="local ermongroup/ncsnv2 checkout")
    parser.add_argument("--commit", required=True, help="its commit")
    parser.add_argument("--out", type=Path, default=REPO / "tests/data/ncsnv2-official-keys.txt")
    args = parser.parse_args()
    sys.path.insert(0, str(args.ncsnv2.resolve()))
    from models import ncsnv2  # ermongroup/ncsnv2's package, from the checkout

    lines = [f"# ermongroup/ncsnv2 {args.commit}, ngf 8: python benchmarks/record_ncsnv2_keys.py "
             f"NCSNV2_CHECKOUT --commit {args.commit}"]
    for name, config_file in NETWORKS.items():
        config = namespace(yaml.safe_load((args.ncsnv2 / "configs" / config_file).read_text()))
        config.device, config.model.ngf = torch.device("cpu"), 8
        net = getattr(ncsnv2, name)(config)
        lines += [f"{name} {k} {tuple(v.shape)}" for k, v in net.state_dict().items()]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
