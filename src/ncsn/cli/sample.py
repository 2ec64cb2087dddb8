"""``ncsn sample``, ``ncsn inpaint`` and ``ncsn samplers``: images from a model file through
:mod:`ncsn.sampling` (the one path shared with training grids, evaluation, the demo and the
Python API).

Both commands run in batches (memory bounded by ``--batch-size`` for any number of images), show
a progress bar over network evaluations, take every random draw from one ``torch.Generator``
seeded by ``--seed`` and write a grid PNG plus individual PNGs or one ``.npz`` (streamed to disk).
What runs is the model's stored default (``spec["sampling"]``) unless ``--sampler``, ``--nfe``,
``--schedule``, ``--levels``, ``--rho`` or a sampler setting flag says otherwise; each setting flag
belongs to the samplers that have that setting (``ncsn samplers`` lists them).
"""

from __future__ import annotations

import argparse
import math
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ncsn.devices import resolve_device
from ncsn.errors import UserError
from ncsn.imageio import (
    NpzStream,
    list_images,
    load_image,
    save_gif,
    save_grid,
    save_pngs,
    to_uint8,
)
from ncsn.nets.io import load_model
from ncsn.sampling import (
    SAMPLERS,
    SCHEDULES,
    SamplingPlan,
    accepts_any_sigma,
    counting,
    plan_sampling,
    sample_batches,
    stored_sampling,
    to_pixels,
)
from ncsn.sampling.inpainting import inpaint_batches, make_masks
from ncsn.sampling.pipeline import batch_ranges
from ncsn.sampling.registry import setting_fields

# CLI names of sampler settings whose flag is not just the field name with dashes
FLAG_NAMES = {"n_steps_each": "--steps-each", "n_corrector": "--corrector-steps"}
SETTING_HELP = {
    "n_steps_each": "steps per noise level T",
    "step_size": "annealed Langevin eps (paper) or step_lr (official), or 'auto' (NCSNv2 Eq. 4)",
    "convention": "paper: x += eps_i/2 s + sqrt(eps_i) z; official: x += a_i s + sqrt(2 a_i) z",
    "final_denoise": "end with x + sigma_L^2 s(x, sigma_L) (NCSNv2)",
    "eta": "consistent annealed sampling: step eta sigma^2, in (0, 1]",
    "n_corrector": "predictor_corrector: Langevin corrector steps per level",
    "snr": "predictor_corrector: corrector signal-to-noise ratio",
    "s_churn": "edm: total churn S_churn", "s_tmin": "edm: churn only for sigma >= this",
    "s_tmax": "edm: churn only for sigma <= this", "s_noise": "edm: noise inflation S_noise",
}


def _flag(field: str) -> str:
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def _float_or_auto(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per sampler setting of the registry, typed from its pydantic annotation."""
    group = p.add_argument_group("sampler settings (each applies to the samplers that have it)")
    for field, owners in setting_fields().items():
        info = SAMPLERS[owners[0]].settings.model_fields[field]
        kind, choices = info.annotation, typing.get_args(info.annotation)
        help_text = f"{SETTING_HELP.get(field, field)} [{', '.join(owners)}]"
        if kind is bool:
            group.add_argument(_flag(field), dest=field, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        elif typing.get_origin(kind) is typing.Literal:
            group.add_argument(_flag(field), dest=field, choices=choices, help=help_text)
        elif kind in (int, float):
            group.add_argument(_flag(field), dest=field, type=kind, help=help_text)
        else:
            group.add_argument(_flag(field), dest=field, type=_float_or_auto, help=help_text)


def add_sampler_args(parser: argparse.ArgumentParser) -> None:
    """--sampler, --nfe, --schedule, --levels, --rho and every sampler-setting flag."""
    p = parser.add_argument_group("sampler (default: the model's own choice)")
    p.add_argument("--sampler", choices=list(SAMPLERS),
                   help="sampling algorithm (default: the model's; see `ncsn samplers`)")
    p.add_argument("--nfe", type=int,
                   help="budget of network evaluations per image: sets the number of levels or "
                        "the steps per level")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="noise levels: the model's own, or geometric / Karras (rho) over its "
                        "sigma range (networks conditioned on continuous sigma only)")
    p.add_argument("--levels", type=int, dest="num_levels", help="number of noise levels")
    p.add_argument("--rho", type=float, help="Karras schedule exponent (default 7)")
    _add_setting_flags(parser)


def sampler_choices(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`ncsn.sampling.plan_sampling` given on the command line
    (settings of samplers other than the chosen one are refused when planning)."""
    return {"sampler": args.sampler, "nfe": args.nfe, "schedule": args.schedule,
            "num_levels": args.num_levels, "rho": args.rho,
            "settings": {f: getattr(args, f) for f in setting_fields()
                         if getattr(args, f) is not None}}


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model .safetensors/.json, their stem, or a run directory")
    p.add_argument("--out", required=True, help="output folder")
    add_sampler_args(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (memory bound)")
    p.add_argument("--format", choices=["png", "npz"], default="png",
                   help="individual PNGs (default) or one .npz (uint8 N,H,W,C under 'images')")
    p.add_argument("--grid-max", type=int, default=64, help="most images in grid.png")
    p.add_argument("--scale", type=int, default=1, help="enlarge grid pixels by this factor")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def register(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw images from a model",
                       description="Sample N images from a model with any registered sampler "
                                   "(default: the model's own choice; the paper's annealed "
                                   "Langevin dynamics for the paper's models).")
    _add_common_args(p)
    p.add_argument("-n", "--num-samples", type=int, default=64, help="number of images")
    p.add_argument("--gif", help="write the sampling of the first batch as an animated GIF")
    p.add_argument("--gif-frames", type=int, default=100, help="about this many GIF frames")
    p.set_defaults(func=run_sample)

    q = sub.add_parser("inpaint", help="complete masked images (paper Algorithm 2)",
                       description="Fill the hidden pixels of images with a sampler that keeps "
                                   "the observed pixels at the current noise level after every "
                                   "step (paper Algorithm 2 for annealed Langevin); observed "
                                   "pixels are kept exactly. grid.png rows: original, masked "
                                   "input, completions.")
    _add_common_args(q)
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="image files and/or folders of images")
    src.add_argument("--dataset", help="data set name (see ncsn.data.DATASETS)")
    q.add_argument("--split", default="test", help="data set split (default test)")
    q.add_argument("--data-root", help="data set folder (default: the data set's own)")
    q.add_argument("--start", type=int, default=0, help="first data set image")
    q.add_argument("--num-images", type=int, default=8, help="data set images to complete")
    q.add_argument("--mask", default="right",
                   help="right | lower | center | random | a mask image file (white = observed)")
    q.add_argument("--fraction", type=float, default=0.5,
                   help="random mask: fraction of pixels hidden (default 0.5)")
    q.add_argument("--box", type=int, help="center mask: box side (default half the image)")
    q.add_argument("-k", "--completions", type=int, default=4, help="completions per image")
    q.set_defaults(func=run_inpaint)

    r = sub.add_parser("samplers", help="list the samplers, their settings and costs",
                       description="The sampler registry: name, cost in network evaluations, "
                                   "prior, default schedule and settings with defaults.")
    r.set_defaults(func=run_samplers)


def _check_counts(**counts: int | None) -> None:
    for name, value in counts.items():
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file; give a folder (it is created if "
                        "missing)")
    return out


class _Output:
    """Writes batches as PNGs or into a streamed .npz, and keeps the first images for the grid."""

    def __init__(self, folder: Path, fmt: str, shape: tuple[int, ...], grid_max: int,
                 name: str) -> None:
        self.folder, self.grid_max = folder, grid_max
        self.grid: list[Tensor] = []
        self.kept = 0
        n, c, h, w = shape
        self.npz = NpzStream(folder / f"{name}.npz", "images", (n, h, w, c)) if fmt == "npz" \
            else None
        self.png_dir = folder / name

    def add(self, images: Tensor, start: int) -> None:
        """Write a batch of images in [0, 1] numbered from ``start``."""
        if self.npz is not None:
            self.npz.append(to_uint8(images))
        else:
            save_pngs(images, self.png_dir, start=start)
        take = min(self.grid_max - self.kept, images.shape[0])
        if take > 0:
            self.grid.append(images[:take])
            self.kept += take

    def close(self, **extra: np.ndarray) -> str:
        """Finish writing; ``extra`` arrays go into the .npz (PNG output: the grid shows them)."""
        if self.npz is not None:
            self.npz.close(**extra)
            return str(self.folder / f"{self.png_dir.name}.npz")
        return f"{self.png_dir}/"


def _progress(total: int, desc: str, hide: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="eval", dynamic_ncols=True,
                disable=True if hide else None)


def _check_setting_owners(given: dict[str, Any], sampler: str) -> None:
    """A setting flag of another sampler than the one that runs is an error."""
    own = SAMPLERS[sampler].settings.model_fields
    for field in given:
        if field not in own:
            owners = ", ".join(setting_fields()[field])
            raise UserError(f"{_flag(field)} is a setting of {owners}, not of {sampler}; pick "
                            f"--sampler accordingly or drop the flag")


def setup_plan(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any], SamplingPlan,
                                                  torch.device]:
    """Load the model and plan its sampling from the command line (all checks before work)."""
    _check_counts(batch_size=args.batch_size, grid_max=args.grid_max, scale=args.scale,
                  nfe=args.nfe, levels=args.num_levels)
    device = resolve_device(args.device, "--device")
    net, spec = load_model(args.model, device=device)
    choices = sampler_choices(args)
    _check_setting_owners(choices["settings"], args.sampler or stored_sampling(spec)["sampler"])
    plan = plan_sampling(spec, continuous=accepts_any_sigma(net), **choices)
    return net, spec, plan, device


def run_sample(args: argparse.Namespace) -> int:
    """``ncsn sample``: N images in batches -> grid.png + samples/ (PNGs) or samples.npz."""
    _check_counts(num_samples=args.num_samples, gif_frames=args.gif_frames)
    out = _out_dir(args.out)
    net, spec, plan, device = setup_plan(args)
    shape = (int(spec["channels"]), int(spec["image_size"]), int(spec["image_size"]))
    every = max(1, plan.nfe // args.gif_frames)
    frames: list[Tensor] = []
    seen = {"last": -1, "recorded": -1}

    def record(info: dict[str, Any]) -> None:
        if info["batch_start"] != 0:
            return
        seen["last"] = info["index"]
        if (info["index"] + 1) % every == 0:
            frames.append(to_pixels(info["x"][: args.grid_max], plan.logit).cpu())
            seen["recorded"] = info["index"]

    writer = _Output(out, args.format, (args.num_samples, *shape), args.grid_max, "samples")
    n_batches = math.ceil(args.num_samples / args.batch_size)
    with _progress(n_batches * plan.nfe, "sampling", args.no_progress) as bar:
        score = counting(net, lambda: bar.update(1))
        batches = sample_batches(score, plan, args.num_samples, shape,
                                 generator=torch.Generator(device=device).manual_seed(args.seed),
                                 device=device, batch_size=args.batch_size,
                                 callback=record if args.gif is not None else None)
        for (start, _), images in zip(batch_ranges(args.num_samples, args.batch_size), batches,
                                      strict=True):
            writer.add(images, start)
    grid = save_grid(torch.cat(writer.grid), out / "grid.png", scale=args.scale)
    written = [str(grid), writer.close()]
    if args.gif is not None:
        if seen["recorded"] != seen["last"]:
            frames.append(writer.grid[0])
        written.append(str(save_gif(frames, args.gif, scale=args.scale)))
    print(f"{args.num_samples} samples, {plan.describe()}: wrote {', '.join(written)}")
    return 0


def _fit(image: np.ndarray, size: int, source: str) -> Tensor:
    """(C, H, W) image -> (C, size, size); resizes square images (bilinear, antialiased)."""
    x = torch.from_numpy(image)
    if x.shape[-2:] != (size, size):
        if x.shape[-1] != x.shape[-2]:
            raise UserError(f"{source} is {x.shape[-1]}x{x.shape[-2]}; the model takes square "
                            f"{size}x{size} images; crop it first")
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    return x


def load_inputs(args: argparse.Namespace, channels: int, size: int) -> Tensor:
    """Images to complete, (N, C, S, S) in [0, 1], from files/folders or a data set split."""
    if args.images:
        files: list[Path] = []
        for item in map(Path, args.images):
            files.extend(list_images(item) if item.is_dir() else [item])
        return torch.stack([_fit(load_image(f, channels), size, str(f))
                            for f in files])
    from ncsn.data import load_dataset, to_float

    _check_counts(num_images=args.num_images)
    data = load_dataset(args.dataset, args.split, root=args.data_root, image_size=size,
                        channels=channels)
    if not 0 <= args.start < data.shape[0]:
        raise UserError(f"--start {args.start} is outside the {data.shape[0]} images of "
                        f"{args.dataset}/{args.split}")
    return to_float(data[args.start: args.start + args.num_images])


def run_inpaint(args: argparse.Namespace) -> int:
    """``ncsn inpaint``: k completions per image -> grid.png + completions/ or completions.npz.

    Completion j of image i is number i * k + j.
    """
    _check_counts(completions=args.completions)
    out = _out_dir(args.out)
    net, spec, plan, device = setup_plan(args)
    channels, size = int(spec["channels"]), int(spec["image_size"])
    images = load_inputs(args, channels, size)
    masks = make_masks(args.mask, images.shape[0], size, fraction=args.fraction, box=args.box,
                       generator=torch.Generator().manual_seed(args.seed))
    k, n = args.completions, images.shape[0]
    total = n * k
    writer = _Output(out, args.format, (total, channels, size, size), args.grid_max * k,
                     "completions")
    generator = torch.Generator(device=device).manual_seed(args.seed)
    with _progress(math.ceil(total / args.batch_size) * plan.nfe, "inpainting",
                   args.no_progress) as bar:
        score = counting(net, lambda: bar.update(1))
        for start, completions in inpaint_batches(score, plan, images, masks, k,
                                                  generator=generator, device=device,
                                                  batch_size=args.batch_size):
            writer.add(completions, start)
    shown = min(n, args.grid_max)
    completions = torch.cat(writer.grid).reshape(shown, k, channels, size, size)
    masked = images[:shown] * masks[:shown] + 0.5 * (1 - masks[:shown])
    rows = torch.cat([images[:shown, None], masked[:, None], completions], dim=1)
    grid = save_grid(rows.reshape(-1, channels, size, size), out / "grid.png", nrow=k + 2,
                     scale=args.scale)
    saved = writer.close(originals=to_uint8(images), masks=masks[:, 0].to(torch.uint8).numpy())
    print(f"{n} images x {k} completions, {plan.describe()}: wrote {grid}, {saved}")
    return 0


def run_samplers(args: argparse.Namespace) -> int:
    """``ncsn samplers``: the registry, one block per sampler."""
    del args
    for entry in SAMPLERS.values():
        settings = ", ".join(f"{name}={info.default}" for name, info in
                             entry.settings.model_fields.items()) or "none"
        print(f"{entry.name}: {entry.summary}\n    prior {entry.prior}, default schedule "
              f"{entry.default_schedule}, settings: {settings}")
    return 0
