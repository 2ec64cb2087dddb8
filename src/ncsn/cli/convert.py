"""``ncsn convert``: any NCSN-family checkpoint -> our model files (``.safetensors`` + ``.json``
spec), and ``ncsn convert-official`` (official NCSN checkpoints with presets).

``--from`` picks the reader: ``official-ncsn`` (CondRefineNetDilated), ``official-ncsnv2``
(ermongroup/ncsnv2; EMA entry by default), ``score-sde`` (score_sde_pytorch ``checkpoint_N.pth``;
EMA by default) and ``diffusers`` (a VE pipeline folder). Every spec is made by
:func:`model_spec` from one of our configs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ncsn import files
from ncsn.cli.args import count, sigma
from ncsn.config import Config
from ncsn.config import model_spec as config_model_spec
from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.nets.official import OFFICIAL_PRESETS, convert_official, official_spec
from ncsn.spec.model import ModelSpec
from ncsn.spec.values import MAX_IMAGE_SIZE, MAX_LEVELS, MAX_WIDTH

SOURCES = ("official-ncsn", "official-ncsnv2", "score-sde", "diffusers")


def register(sub: Any) -> None:
    _register_convert(sub)
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
    p.add_argument("--ngf", type=count(MAX_WIDTH), help="override the preset's base width")
    p.add_argument("--channels", type=int, choices=(1, 3),
                   help="override the preset's image channels")
    p.add_argument("--image-size", type=count(MAX_IMAGE_SIZE),
                   help="override the preset's image size")
    p.add_argument("--sigma-max", type=sigma, help="largest noise level (default 1)")
    p.add_argument("--sigma-min", type=sigma, help="smallest noise level (default 0.01)")
    p.add_argument("--num-levels", type=count(MAX_LEVELS),
                   help="number of noise levels (default 10)")
    p.add_argument("--logit", action="store_true", help="the checkpoint was trained with the "
                   "official data.logit_transform: true (its network takes logits as they are)")
    p.set_defaults(func=run)


def _register_convert(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an NCSN, NCSNv2, score_sde or diffusers model to a .safetensors model",
        description="Read a checkpoint safely (weights-only loading; diffusers: safetensors or "
                    "a weights-only .bin), check it against the configured network and write "
                    "OUT.safetensors + OUT.json. The config supplies what the checkpoint does "
                    "not store: network settings, noise levels, image size, sampler.",
    )
    p.add_argument("checkpoint", help="checkpoint file (diffusers: the pipeline folder)")
    p.add_argument("--from", dest="source", required=True, choices=SOURCES,
                   help="checkpoint format")
    p.add_argument("--config", help="our config for it, e.g. ve_cifar10_ncsnpp_continuous, "
                   "ncsnv2_cifar10, cifar10 (optional for diffusers: then its config.json and "
                   "scheduler_config.json)")
    p.add_argument("--out", required=True, help="output model path (stem, .safetensors or .json)")
    p.add_argument("--weights", choices=("ema", "raw"), help="official-ncsnv2 and score-sde: "
                   "the EMA weights their samplers use (default) or the raw ones")
    p.set_defaults(func=run_convert)


def model_spec(config: Config, source: str, where: str = "config") -> ModelSpec:
    """The model spec of a network trained with ``config``: its model section, data size,
    noise levels and sampling settings (noise levels must be numbers, not "auto"); ``source``
    says where the weights came from, ``where`` names the config in messages."""
    from ncsn.data import DATASETS

    info = DATASETS.get(config.data.name)
    channels = config.data.channels or (info.channels if info else None)
    image_size = config.data.image_size or (info.image_size if info else None)
    if channels is None or image_size is None:
        raise UserError(f"{where}: set data.channels and data.image_size for data set "
                        f"{config.data.name!r}")
    noise = config.noise
    if noise.sigma_max == "auto" or noise.num_levels == "auto":
        raise UserError(f"{where}: noise.sigma_max and noise.num_levels must be numbers to "
                        "convert a checkpoint (not auto)")
    sigmas = geometric_sigmas(float(noise.sigma_max), noise.sigma_min, int(noise.num_levels))
    return config_model_spec(config, channels=int(channels), image_size=int(image_size),
                             sigmas=sigmas.tolist(), provenance={"source": source})


def spec_from_config(path: str, source: str = "official NCSN checkpoint") -> ModelSpec:
    """:func:`model_spec` of the config at ``path`` (a file or a packaged name)."""
    from ncsn.config import load_config

    return model_spec(load_config(path), source, str(path))


def _converted(args: argparse.Namespace) -> tuple[Any, ModelSpec]:
    """(network with the checkpoint's weights, its spec) for ``ncsn convert``."""
    from ncsn.config import validate_config
    from ncsn.nets import diffusers_folder, official, score_sde

    source, path = args.source, Path(args.checkpoint)
    if args.weights is not None and source not in ("official-ncsnv2", "score-sde"):
        raise UserError(f"--weights applies to official-ncsnv2 and score-sde checkpoints; a "
                        f"{source} checkpoint holds one set of weights")
    weights = args.weights or "ema"
    if source == "diffusers":
        model = diffusers_folder.read_diffusers_folder(path)
        label = f"diffusers folder {path}"
        spec = (spec_from_config(args.config, label) if args.config else model_spec(
            validate_config(diffusers_folder.diffusers_config(model), str(path)), label,
            str(path)))
        return diffusers_folder.load_diffusers(model, spec, label), spec
    if args.config is None:
        raise UserError(f"--config NAME is required for --from {source}: the checkpoint does "
                        "not store its network settings and noise levels")
    if source == "official-ncsn":
        spec = spec_from_config(args.config)
        return official.load_official(path, spec), spec
    label = (f"official NCSNv2 checkpoint ({weights} weights)" if source == "official-ncsnv2"
             else f"score_sde checkpoint ({weights} weights)")
    spec = spec_from_config(args.config, label)
    loader = official.load_official_ncsnv2 if source == "official-ncsnv2" else \
        score_sde.load_score_sde
    return loader(path, spec, weights), spec


def run_convert(args: argparse.Namespace) -> int:
    from ncsn.nets.io import save_model

    files.check_output_model(args.out, "--out")
    net, spec = _converted(args)
    path = save_model(args.out, net, spec)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def run(args: argparse.Namespace) -> int:
    files.check_output_model(args.out, "--out")
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
