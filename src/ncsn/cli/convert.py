"""``ncsn convert-official``: official NCSN checkpoint.pth -> our model files
(``.safetensors`` + ``.json`` spec)."""

from __future__ import annotations

import argparse
from typing import Any

from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.nets.official import OFFICIAL_PRESETS, convert_official, official_spec
from ncsn.spec.model import ModelSpec


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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", choices=sorted(OFFICIAL_PRESETS),
                        help="official config the checkpoint was trained with (sizes and ngf)")
    source.add_argument("--config", help="our YAML config describing the network (model, "
                        "data size, noise levels, sampling), e.g. configs/mnist.yaml")
    p.add_argument("--ngf", type=int, help="override the preset's base width")
    p.add_argument("--channels", type=int, help="override the preset's image channels")
    p.add_argument("--image-size", type=int, help="override the preset's image size")
    p.add_argument("--sigma-max", type=float, help="largest noise level (default 1)")
    p.add_argument("--sigma-min", type=float, help="smallest noise level (default 0.01)")
    p.add_argument("--num-levels", type=int, help="number of noise levels (default 10)")
    p.add_argument("--logit", action="store_true", help="the checkpoint was trained with the "
                   "official data.logit_transform: true (its network takes logits as they are)")
    p.set_defaults(func=run)


def spec_from_config(path: str) -> ModelSpec:
    """A model spec from one of our configs: its model section, data size, noise levels and
    sampling settings (noise levels must be numbers, not "auto")."""
    from ncsn.config import load_config, model_spec
    from ncsn.data import DATASETS

    config = load_config(path)
    info = DATASETS.get(config.data.name)
    channels = config.data.channels or (info.channels if info else None)
    image_size = config.data.image_size or (info.image_size if info else None)
    if channels is None or image_size is None:
        raise UserError(f"{path}: set data.channels and data.image_size for data set "
                        f"{config.data.name!r}")
    noise = config.noise
    if noise.sigma_max == "auto" or noise.num_levels == "auto":
        raise UserError(f"{path}: noise.sigma_max and noise.num_levels must be numbers to "
                        "convert a checkpoint (not auto)")
    sigmas = geometric_sigmas(float(noise.sigma_max), noise.sigma_min, int(noise.num_levels))
    return model_spec(config, channels=int(channels), image_size=int(image_size),
                      sigmas=sigmas.tolist(), provenance={"source": "official NCSN checkpoint"})


def run(args: argparse.Namespace) -> int:
    overrides = {"ngf": args.ngf, "channels": args.channels, "image_size": args.image_size,
                 "sigma_max": args.sigma_max, "sigma_min": args.sigma_min,
                 "num_levels": args.num_levels}
    if args.config is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
        given += ["--logit"] if args.logit else []
        if given:
            raise UserError(f"{', '.join(given)} only refine --preset; edit the config instead")
        spec = spec_from_config(args.config)
    else:
        spec = official_spec(args.preset, logit=args.logit, **overrides)
    path = convert_official(args.checkpoint, args.out, spec)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0
