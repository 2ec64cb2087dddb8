"""``ncsn sample`` and ``ncsn inpaint``: annealed Langevin dynamics from a model file.

Both run in batches (memory bounded by ``--batch-size`` for any number of images), show a
progress bar over Langevin steps, take every random draw from one ``torch.Generator`` seeded by
``--seed`` and write a grid PNG plus individual PNGs or one ``.npz`` (streamed to disk).
Sampler settings come from :func:`ncsn.nets.io.sampling_settings`: the command line over the
model's ``spec["sampling"]`` over the paper's (T = 100, eps = 2e-5). A model trained on
logit-transformed data (``spec["sampling"]["logit"]``) samples in logit space; images are mapped
back to [0, 1] before they are written.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ncsn.core.noise import geometric_sigmas
from ncsn.core.samplers import (
    annealed_langevin,
    inpaint,
    predictor_corrector,
    probability_flow_heun,
)
from ncsn.data.transforms import inverse_logit_transform, logit_transform
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
from ncsn.nets.io import load_model, sampling_settings

MASKS = ("right", "lower", "center", "random")
SAMPLERS = ("annealed_langevin", "predictor_corrector", "probability_flow_ode")


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model .safetensors/.json, their stem, or a run directory")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps-each", type=int, help="Langevin steps per noise level T")
    p.add_argument("--step-size", type=float, help="eps (paper) or step_lr (official)")
    p.add_argument("--convention", choices=["paper", "official"],
                   help="paper: x += eps_i/2 s + sqrt(eps_i) z; official: x += a_i s + "
                        "sqrt(2 a_i) z")
    p.add_argument("--final-denoise", action=argparse.BooleanOptionalAction, default=None,
                   help="end with x + sigma_L^2 s(x, sigma_L) (NCSNv2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (memory bound)")
    p.add_argument("--format", choices=["png", "npz"], default="png",
                   help="individual PNGs (default) or one .npz (uint8 N,H,W,C under 'images')")
    p.add_argument("--grid-max", type=int, default=64, help="most images in grid.png")
    p.add_argument("--scale", type=int, default=1, help="enlarge grid pixels by this factor")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def register(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw images with annealed Langevin dynamics",
                       description="Sample N images from a model by annealed Langevin dynamics "
                                   "(paper Algorithm 1), starting from U[0, 1].")
    _add_common_args(p)
    p.add_argument("-n", "--num-samples", type=int, default=64, help="number of images")
    p.add_argument("--sampler", choices=SAMPLERS, default="annealed_langevin",
                   help="annealed_langevin (paper Algorithm 1, default); predictor_corrector "
                        "(VE SDE, Song et al. 2021: reverse diffusion + Langevin corrector); "
                        "probability_flow_ode (deterministic Heun steps, 2L-1 evaluations)")
    p.add_argument("--snr", type=float, default=0.16,
                   help="predictor_corrector: corrector signal-to-noise ratio (default 0.16)")
    p.add_argument("--corrector-steps", type=int, default=1,
                   help="predictor_corrector: Langevin corrector steps per level (default 1)")
    p.add_argument("--levels", type=int,
                   help="predictor_corrector / probability_flow_ode: re-space the model's "
                        "[sigma_1, sigma_L] geometrically into this many levels (networks "
                        "conditioned on continuous sigma only, e.g. unet_small, ncsnv2)")
    p.add_argument("--gif", help="write the annealing of the first batch as an animated GIF")
    p.add_argument("--gif-frames", type=int, default=100, help="about this many GIF frames")
    p.set_defaults(func=run_sample)

    q = sub.add_parser("inpaint", help="complete masked images (paper Algorithm 2)",
                       description="Fill the hidden pixels of images with annealed Langevin "
                                   "dynamics; observed pixels are kept exactly. grid.png rows: "
                                   "original, masked input, completions.")
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


def _pixels(x: Tensor, logit: bool) -> Tensor:
    """Model space -> images in [0, 1] on the CPU (inverse logit when the model uses it)."""
    return (inverse_logit_transform(x) if logit else x).clamp(0.0, 1.0).cpu()


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(start + size, total)


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
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True,
                disable=True if hide else None)


@dataclass
class _Session:
    """A loaded model with its noise levels, sampler settings and seeded generator."""

    net: nn.Module
    spec: dict[str, Any]
    sigmas: Tensor
    settings: dict[str, Any]
    generator: torch.Generator

    @property
    def logit(self) -> bool:
        """Whether the model works in logit space (images are mapped back for output)."""
        return bool(self.settings["logit"])

    def sampler_kwargs(self) -> dict[str, Any]:
        langevin = {k: v for k, v in self.settings.items() if k != "logit"}
        return {**langevin, "generator": self.generator}


def _setup(args: argparse.Namespace) -> _Session:
    _check_counts(batch_size=args.batch_size, grid_max=args.grid_max, scale=args.scale)
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise UserError(f"bad --device {args.device!r}: {err}") from err
    net, spec = load_model(args.model, device=device)
    given = {"n_steps_each": args.steps_each, "step_size": args.step_size,
             "convention": args.convention, "final_denoise": args.final_denoise}
    return _Session(net=net, spec=spec,
                    sigmas=torch.tensor(spec["sigmas"], dtype=torch.float32, device=device),
                    settings=sampling_settings(spec, given),
                    generator=torch.Generator(device=device).manual_seed(args.seed))


def _sampler_levels(args: argparse.Namespace, sigmas: Tensor) -> Tensor:
    """The model's noise levels, or ``--levels`` geometric ones over the same range."""
    if args.levels is None or args.sampler == "annealed_langevin":
        return sigmas
    _check_counts(levels=args.levels)
    return geometric_sigmas(float(sigmas[0]), float(sigmas[-1]), args.levels).to(sigmas.device)


def _steps_per_batch(args: argparse.Namespace, run: _Session, levels: Tensor) -> int:
    if args.sampler == "predictor_corrector":
        return len(levels) * (args.corrector_steps + 1)
    if args.sampler == "probability_flow_ode":
        return len(levels)
    return len(levels) * run.settings["n_steps_each"]


def _draw(args: argparse.Namespace, run: _Session, levels: Tensor, shape: tuple[int, ...],
          callback: Any) -> tuple[Tensor, Tensor]:
    """One batch: (initial images for the movie, samples in model space).

    Annealed Langevin starts from U[0, 1] (the paper); the SDE/ODE samplers start from
    U[0, 1] + sigma_1 z, an approximation of the data perturbed at the largest level.
    """
    x0 = torch.rand(shape, generator=run.generator, device=levels.device)
    start = logit_transform(x0) if run.logit else x0
    try:
        if args.sampler == "annealed_langevin":
            return x0, annealed_langevin(run.net, start, levels, **run.sampler_kwargs(),
                                         callback=callback)
        noise = torch.randn(shape, generator=run.generator, device=levels.device)
        start = start + float(levels[0]) * noise
        if args.sampler == "predictor_corrector":
            _check_counts(corrector_steps=args.corrector_steps)
            x = predictor_corrector(run.net, start, levels, n_corrector=args.corrector_steps,
                                    snr=args.snr, generator=run.generator, callback=callback)
        else:
            x = probability_flow_heun(run.net, start, levels, callback=callback)
    except ValueError as err:
        raise UserError(f"{args.sampler} with these noise levels failed: {err}; a network "
                        "trained on discrete levels only accepts its own sigmas (drop "
                        "--levels)") from err
    return start.clamp(0, 1), x


def run_sample(args: argparse.Namespace) -> int:
    """``ncsn sample``: N images in batches -> grid.png + samples/ (PNGs) or samples.npz."""
    _check_counts(num_samples=args.num_samples, gif_frames=args.gif_frames)
    run = _setup(args)
    spec, sigmas, logit = run.spec, run.sigmas, run.logit
    levels = _sampler_levels(args, sigmas)
    shape = (int(spec["channels"]), int(spec["image_size"]), int(spec["image_size"]))
    out = Path(args.out)
    total_steps = _steps_per_batch(args, run, levels)
    every = max(1, total_steps // args.gif_frames)
    frames: list[Tensor] = []
    writer = _Output(out, args.format, (args.num_samples, *shape), args.grid_max, "samples")
    n_batches = math.ceil(args.num_samples / args.batch_size)
    with _progress(n_batches * total_steps, "sampling", args.no_progress) as bar:
        for start, stop in _batches(args.num_samples, args.batch_size):
            record = args.gif is not None and start == 0

            def callback(info: dict[str, Any], record: bool = record) -> None:
                bar.update(1)
                if record and info["index"] % every == 0:
                    frames.append(_pixels(info["x"][: args.grid_max], logit))

            x0, x = _draw(args, run, levels, (stop - start, *shape), callback)
            if record:
                frames.insert(0, x0[: args.grid_max].cpu())
            images = _pixels(x, logit)
            writer.add(images, start)
            if record and run.settings["final_denoise"]:
                frames.append(images[: args.grid_max])
    grid = save_grid(torch.cat(writer.grid), out / "grid.png", scale=args.scale)
    written = [str(grid), writer.close()]
    if args.gif is not None:
        written.append(str(save_gif(frames, args.gif, scale=args.scale)))
    settings = run.settings if args.sampler == "annealed_langevin" else {
        "levels": len(levels), **({"snr": args.snr, "corrector_steps": args.corrector_steps}
                                  if args.sampler == "predictor_corrector" else {})}
    print(f"{args.num_samples} samples, {args.sampler} ({settings}): "
          f"wrote {', '.join(written)}")
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


def make_masks(kind: str, n: int, size: int, *, fraction: float = 0.5, box: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """Masks (n, 1, S, S), 1 = observed pixel: ``right``/``lower`` hide that half, ``center``
    hides a centred ``box`` x ``box`` square, ``random`` hides each pixel with prob ``fraction``;
    any other ``kind`` is a mask image file (white = observed)."""
    mask = torch.ones(n, 1, size, size)
    if kind == "right":
        mask[..., size // 2:] = 0
    elif kind == "lower":
        mask[..., size // 2:, :] = 0
    elif kind == "center":
        side = size // 2 if box is None else box
        if not 1 <= side <= size:
            raise UserError(f"--box must lie in 1..{size}, got {side}")
        lo = (size - side) // 2
        mask[..., lo: lo + side, lo: lo + side] = 0
    elif kind == "random":
        if not 0.0 <= fraction <= 1.0:
            raise UserError(f"--fraction must lie in [0, 1], got {fraction}")
        mask = (torch.rand(n, 1, size, size, generator=generator) >= fraction).float()
    else:
        path = Path(kind)
        if not path.is_file():
            raise UserError(f"--mask {kind!r} is not one of {', '.join(MASKS)} nor an image file")
        image = torch.from_numpy(load_image(path, channels=1))
        if image.shape[-2:] != (size, size):
            raise UserError(f"mask image {path} is {image.shape[-1]}x{image.shape[-2]}, "
                            f"the model's images {size}x{size}")
        mask = (image > 0.5).float().expand(n, 1, size, size).clone()
    return mask


def run_inpaint(args: argparse.Namespace) -> int:
    """``ncsn inpaint``: k completions per image -> grid.png + completions/ or completions.npz.

    Completion j of image i is number i * k + j.
    """
    _check_counts(completions=args.completions)
    run = _setup(args)
    channels, size = int(run.spec["channels"]), int(run.spec["image_size"])
    images = load_inputs(args, channels, size)
    masks = make_masks(args.mask, images.shape[0], size, fraction=args.fraction, box=args.box,
                       generator=torch.Generator().manual_seed(args.seed))
    k, n = args.completions, images.shape[0]
    total = n * k
    out = Path(args.out)
    writer = _Output(out, args.format, (total, channels, size, size), args.grid_max * k,
                     "completions")
    steps = len(run.sigmas) * run.settings["n_steps_each"]
    with _progress(math.ceil(total / args.batch_size) * steps, "inpainting",
                   args.no_progress) as bar:
        def update(info: dict[str, Any]) -> None:
            bar.update(1)

        for start, stop in _batches(total, args.batch_size):
            owner = torch.arange(start, stop) // k
            observed, mask = images[owner], masks[owner]
            device = run.sigmas.device
            x = inpaint(run.net, (logit_transform(observed) if run.logit else observed).to(device),
                        mask.to(device), run.sigmas, **run.sampler_kwargs(), callback=update)
            # observed pixels exactly as given, also after a logit round trip
            writer.add(torch.where(mask > 0, observed, _pixels(x, run.logit)), start)
    shown = min(n, args.grid_max)
    completions = torch.cat(writer.grid).reshape(shown, k, channels, size, size)
    masked = images[:shown] * masks[:shown] + 0.5 * (1 - masks[:shown])
    rows = torch.cat([images[:shown, None], masked[:, None], completions], dim=1)
    grid = save_grid(rows.reshape(-1, channels, size, size), out / "grid.png", nrow=k + 2,
                     scale=args.scale)
    saved = writer.close(originals=to_uint8(images), masks=masks[:, 0].to(torch.uint8).numpy())
    print(f"{n} images x {k} completions ({run.settings}): wrote {grid}, {saved}")
    return 0
