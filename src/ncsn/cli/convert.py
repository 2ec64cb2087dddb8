"""``ncsn convert-official``: official NCSN checkpoint.pth -> our model files
(``.safetensors`` + ``.json`` spec)."""

from __future__ import annotations

import argparse
from typing import Any

from ncsn.nets.official import OFFICIAL_PRESETS, convert_official, official_spec


def register(sub: Any) -> None:
    p = sub.add_parser(
        "convert-official",
        help="convert an official NCSN checkpoint.pth to a .safetensors model",
        description="Read an official CondRefineNetDilated checkpoint (a [model, optimizer] "
                    "list, keys possibly prefixed 'module.') with weights_only loading, check "
                    "it against the configured network and write OUT.safetensors + OUT.json.",
    )
    p.add_argument("checkpoint", help="official checkpoint.pth")
    p.add_argument("--out", required=True, help="output model path (stem, .safetensors or .json)")
    p.add_argument("--preset", choices=sorted(OFFICIAL_PRESETS), required=True,
                   help="official config the checkpoint was trained with (sizes and ngf)")
    p.add_argument("--ngf", type=int, help="override the preset's base width")
    p.add_argument("--channels", type=int, help="override the preset's image channels")
    p.add_argument("--image-size", type=int, help="override the preset's image size")
    p.add_argument("--sigma-max", type=float, help="largest noise level (default 1)")
    p.add_argument("--sigma-min", type=float, help="smallest noise level (default 0.01)")
    p.add_argument("--num-levels", type=int, help="number of noise levels (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = official_spec(args.preset, ngf=args.ngf, channels=args.channels,
                         image_size=args.image_size, sigma_max=args.sigma_max,
                         sigma_min=args.sigma_min, num_levels=args.num_levels)
    path = convert_official(args.checkpoint, args.out, spec)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0
