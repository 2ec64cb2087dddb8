"""``ncsn export``: one of our model files -> another format (diffusers' VE pipeline folder)."""

from __future__ import annotations

import argparse
from typing import Any

from ncsn import files

FORMATS = ("diffusers",)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="export a model to diffusers' format (UNet2DModel + ScoreSdeVeScheduler)",
        description="Write MODEL (a .safetensors/.json model or a run directory) as a diffusers "
                    "ScoreSdeVePipeline folder: model_index.json, unet/ (config.json, "
                    "diffusion_pytorch_model.safetensors) and scheduler/. Only NCSN++ models in "
                    "the variant diffusers expresses export (output_skip / input_skip pyramids: "
                    "score_sde's CelebA-HQ, FFHQ and LSUN configs; see docs/networks.md).")
    p.add_argument("model", help="model file or run directory")
    p.add_argument("--format", required=True, choices=FORMATS, help="target format")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncsn.nets.diffusers_folder import write_diffusers_folder
    from ncsn.nets.io import load_model

    files.check_output_dir(args.out, "--out")
    net, spec = load_model(args.model)
    out = write_diffusers_folder(args.out, net, spec)
    print(f"wrote {out} (diffusers ScoreSdeVePipeline: unet/, scheduler/)")
    return 0
