"""``ncsn likelihood``: bits per dimension of 8-bit images under a model's probability-flow ODE.

Each image (uint8 k) is dequantised once, y = (k + u) / 256 with u ~ U[0, 1)^D drawn from the
``--seed`` generator, mapped to the model's space (logit models: y -> logit, with its Jacobian),
and its log-density is integrated by :func:`ncsn.core.likelihood.ode_log_likelihood` from the
model's smallest to its largest sigma. bits/dim = -log p(y) / (D ln 2) + 8 (docs/likelihood.md).
All checks (settings, a network that only knows discrete levels, image shapes) run before the
integration.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ncsn.cli.args import count, finite, positive, seed
from ncsn.core.likelihood import (
    PROBE_KINDS,
    SOLVERS,
    ODESettings,
    bits_per_dim,
    logit_log_jacobian,
    ode_log_likelihood,
    prior_gap_bound,
)
from ncsn.devices import resolve_device
from ncsn.errors import UserError
from ncsn.spec.values import MAX_BATCH, MAX_IMAGES, MAX_STEPS

LEVELS = 256  # 8-bit pixels


def register(sub: Any) -> None:
    p = sub.add_parser(
        "likelihood", help="bits/dim of images through the probability-flow ODE",
        description="Bits per dimension of 8-bit images (uniformly dequantised) under the "
                    "model's probability-flow ODE (VE SDE, Song et al. 2021), integrated from "
                    "the model's smallest to its largest sigma, with the prior "
                    "N(prior_mean, sigma_max^2 I). Needs a network conditioned on continuous "
                    "sigma (unet_small, ncsnv2). See docs/likelihood.md.")
    p.add_argument("model", help="model .safetensors/.json, their stem, or a run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="data set name (see ncsn.data.DATASETS)")
    src.add_argument("--images", nargs="+", help="8-bit image files and/or folders of images")
    p.add_argument("--split", default="test", help="data set split (default test)")
    p.add_argument("--data-root", help="data set folder (default: the data set's own)")
    p.add_argument("--download", action="store_true", help="download missing data set files")
    p.add_argument("-n", "--num-images", type=count(MAX_IMAGES),
                   help="evaluate the first N images (default: all)")
    p.add_argument("--solver", choices=SOLVERS, default="rk45",
                   help="rk45: adaptive (scipy solve_ivp, default); heun: --steps fixed steps")
    p.add_argument("--rtol", type=positive, default=1e-5, help="rk45 relative tolerance (1e-5)")
    p.add_argument("--atol", type=positive, default=1e-5, help="rk45 absolute tolerance (1e-5)")
    p.add_argument("--steps", type=count(MAX_STEPS), default=100,
                   help="heun: steps uniform in ln sigma, 2 evaluations each (default 100)")
    p.add_argument("--probe", choices=PROBE_KINDS, default="rademacher",
                   help="divergence: Hutchinson with rademacher (default) or gaussian probes, "
                        "or exact (D vector-Jacobian products per evaluation; small images)")
    p.add_argument("--probes", type=count(MAX_BATCH), default=1,
                   help="Hutchinson probes per image (1)")
    p.add_argument("--prior-mean", type=finite, default=0.0,
                   help="mean of the prior N(m, sigma_max^2 I) in model space (default 0, "
                        "score_sde's VE prior)")
    p.add_argument("--seed", type=seed, default=0, help="seed for dequantisation and probes")
    p.add_argument("--batch-size", type=count(MAX_BATCH), default=32, help="images per ODE solve")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_likelihood)


def _settings(args: argparse.Namespace) -> ODESettings:
    for name in ("batch_size", "num_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    try:
        return ODESettings(solver=args.solver, rtol=args.rtol, atol=args.atol, steps=args.steps,
                           probe=args.probe, probes=args.probes)
    except ValueError as err:
        raise UserError(f"bad ODE settings: {err}") from err


def check_continuous_sigma(net: nn.Module, name: str, shape: tuple[int, ...], sigmas: list[float],
                           device: torch.device) -> None:
    """One-image probe: the network must accept a sigma between its levels and depend on sigma."""
    x = torch.full((1, *shape), 0.5, device=device)
    between = math.sqrt(sigmas[0] * sigmas[1])
    with torch.no_grad():
        try:
            at_between = net(x, torch.full((1,), between, device=device))
        except ValueError as err:
            raise UserError(f"network {name!r} knows only its {len(sigmas)} trained noise levels "
                            "and cannot be integrated between them; the probability-flow ODE "
                            "needs a network conditioned on continuous sigma (unet_small, "
                            "ncsnv2)") from err
        at_smallest = net(x, torch.full((1,), sigmas[-1], device=device))
    if torch.equal(at_between, at_smallest):
        raise UserError(f"network {name!r} ignores sigma (it models one noise level); the "
                        "probability-flow ODE needs a noise-conditional network")


def load_uint8_images(args: argparse.Namespace, shape: tuple[int, ...]) -> Tensor:
    """The images to evaluate as uint8 (N, C, H, W) of exactly the model's ``shape``."""
    if args.images:
        from ncsn.imageio import list_images, load_image

        files: list[Path] = []
        for item in map(Path, args.images):
            files.extend(list_images(item) if item.is_dir() else [item])
        files = files[: args.num_images]
        arrays = [(f, load_image(f, channels=shape[0])) for f in files]
        for f, a in arrays:
            if a.shape != shape:
                raise UserError(f"{f} is {_shape(a.shape)}, the model takes {_shape(shape)} "
                                "images; likelihoods of resized images are not comparable")
        images = np.stack([a for _, a in arrays])
        return torch.from_numpy(np.rint(images * 255.0)).to(torch.uint8)
    from ncsn.data import load_dataset

    data = load_dataset(args.dataset, args.split, root=args.data_root, download=args.download)
    if tuple(data.shape[1:]) != shape:
        raise UserError(f"{args.dataset}/{args.split} holds {_shape(data.shape[1:])} images, the "
                        f"model takes {_shape(shape)}; evaluate it on data of its own shape")
    return data[: args.num_images]


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    c, h, w = shape
    return f"{c}x{h}x{w}"


def image_log_likelihood(net: nn.Module, images: Tensor, sigmas: list[float],
                         settings: ODESettings, *, logit: bool, prior_mean: float,
                         generator: torch.Generator) -> tuple[Tensor, Tensor, int]:
    """(log p(y) in [0, 1) pixel space, prior gap bound (nats), evaluations) for uint8
    ``images``: dequantise y = (k + u)/256, map to model space, integrate the ODE."""
    from ncsn.data import dequantize, logit_transform, to_float

    device = generator.device
    y = dequantize(to_float(images).to(device), generator)
    x = logit_transform(y) if logit else y
    result = ode_log_likelihood(net, x, sigmas[-1], sigmas[0], settings, prior_mean=prior_mean,
                                generator=generator)
    log_prob = result.log_prob + (logit_log_jacobian(y) if logit else 0.0)
    return log_prob.cpu(), prior_gap_bound(x, sigmas[0], prior_mean).cpu(), result.evaluations


def run_likelihood(args: argparse.Namespace) -> int:
    """``ncsn likelihood``: mean bits/dim with its standard error over the images."""
    settings = _settings(args)
    import ncsn

    device = resolve_device(args.device, "--device")
    model = ncsn.load(args.model, device=device)
    net, spec = model.net, model.spec
    net.requires_grad_(False)
    sigmas = list(spec.sigmas)
    if len(sigmas) < 2 or sigmas[-1] >= sigmas[0]:
        raise UserError(f"the model's sigmas {sigmas} give no range to integrate over; need "
                        "at least two distinct positive noise levels")
    shape = spec.image_shape
    name = spec.network["name"]
    check_continuous_sigma(net, name, shape, sigmas, device)
    images = load_uint8_images(args, shape)
    logit = spec.data.logit
    generator = torch.Generator(device=device).manual_seed(args.seed)
    dims = math.prod(shape)
    log_probs, gaps, evaluations = [], [], 0
    began = time.perf_counter()
    with tqdm(total=images.shape[0], desc="likelihood", unit="image", dynamic_ncols=True,
              disable=True if args.no_progress else None) as bar:
        for start in range(0, images.shape[0], args.batch_size):
            batch = images[start: start + args.batch_size]
            log_prob, gap, evals = image_log_likelihood(
                net, batch, sigmas, settings, logit=logit, prior_mean=args.prior_mean,
                generator=generator)
            log_probs.append(log_prob)
            gaps.append(gap)
            evaluations += evals
            bar.update(batch.shape[0])
            bar.set_postfix(evaluations=evaluations)
    seconds = time.perf_counter() - began
    bpd = bits_per_dim(torch.cat(log_probs), dims, levels=LEVELS).tolist()
    n = len(bpd)
    report = {
        "model": str(args.model), "network": name,
        "images": f"{args.dataset}/{args.split}" if args.dataset else "files",
        "n": n, "dims": dims, "bits_per_dim": statistics.fmean(bpd),
        "stderr": statistics.stdev(bpd) / math.sqrt(n) if n > 1 else None,
        "solver": settings.solver, "rtol": settings.rtol, "atol": settings.atol,
        "steps": settings.steps, "probe": settings.probe,
        "probes": dims if settings.probe == "exact" else settings.probes,
        "sigma_min": sigmas[-1], "sigma_max": sigmas[0], "prior_mean": args.prior_mean,
        "logit": logit, "prior_gap_bound_bits_per_dim":
            float(torch.cat(gaps).mean()) / (dims * math.log(2)),
        "sigma_min_floor_bits_per_dim": None if logit else sigma_min_floor(sigmas[-1], dims),
        "evaluations": evaluations, "batches": math.ceil(n / args.batch_size),
        "seconds": round(seconds, 2), "seed": args.seed, "per_image_bits_per_dim": bpd,
    }
    print(json.dumps(report) if args.json else _summary(report))
    return 0


def sigma_min_floor(sigma_min: float, dims: int) -> float:
    """The fewest bits/dim any density smoothed by N(0, sigma_min^2 I) can give [0, 1) data:
    such a density never exceeds the peak (2 pi sigma_min^2)^(-D/2) of the Gaussian."""
    peak = torch.tensor([-0.5 * dims * math.log(2 * math.pi * sigma_min**2)])
    return float(bits_per_dim(peak, dims, levels=LEVELS))


def _summary(r: dict[str, Any]) -> str:
    solver = (f"rk45 rtol {r['rtol']:g} atol {r['atol']:g}" if r["solver"] == "rk45"
              else f"heun {r['steps']} steps")
    divergence = ("exact divergence" if r["probe"] == "exact"
                  else f"{r['probes']} {r['probe']} probe(s)")
    stderr = "n/a" if r["stderr"] is None else f"{r['stderr']:.4f}"
    lines = [
        f"{r['bits_per_dim']:.4f} +- {stderr} bits/dim (mean +- standard error, "
        f"{r['n']} {'image files' if r['images'] == 'files' else r['images'] + ' images'}, "
        "dequantised)",
        f"{solver}, {divergence}, sigma {r['sigma_min']:g} -> {r['sigma_max']:g}, prior "
        f"N({r['prior_mean']:g}, {r['sigma_max']:g}^2 I) (its mean cost with exact scores <= "
        f"{r['prior_gap_bound_bits_per_dim']:.4f} bits/dim)"
        + (", logit Jacobian included" if r["logit"] else ""),
        f"{r['evaluations']} score evaluations in {r['batches']} batch(es), "
        f"{r['seconds']:.1f} s ({r['seconds'] / r['n']:.2f} s/image)",
    ]
    if not r["logit"]:
        floor = r["sigma_min_floor_bits_per_dim"]
        lines.insert(1, f"(no density smoothed at sigma_min {r['sigma_min']:g} scores below "
                        f"{floor:.4f} bits/dim)")
        if r["bits_per_dim"] < floor:
            lines.insert(2, BELOW_FLOOR_NOTE)
    return "\n".join(lines)


BELOW_FLOOR_NOTE = (
    "note: below that floor. The exact score of a smoothed density has div s >= -D/sigma^2 "
    "(its Jacobian is (Cov[x0|x] - sigma^2 I)/sigma^4); this network's is more contracting "
    "somewhere, so the figure is the density of the model's own flow (normalised), not a fit "
    "the data smoothed at sigma_min could reach: compare it with care (docs/likelihood.md)")
