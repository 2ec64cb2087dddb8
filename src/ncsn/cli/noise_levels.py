"""``ncsn noise-levels``: NCSNv2's choices of noise levels and step size with the numbers behind
them (Song & Ermon 2020, "Improved Techniques for Training Score-Based Generative Models",
techniques 1, 2 and 4), beside the NCSN paper's defaults. See docs/core.md."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ncsn.cli.args import count, positive, sigma
from ncsn.errors import UserError
from ncsn.spec.values import MAX_IMAGE_SIZE, MAX_LEVELS, MAX_STEPS

# NCSN (Song & Ermon 2019) for images: 10 geometric levels 1 -> 0.01, T = 100 and, as its official
# code runs it, step_lr 2e-5 in the official convention (paper eps 4e-5; docs/core.md).
NCSN_DEFAULTS = {"sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10, "n_steps_each": 100,
                 "step_lr": 2e-5}
NCSNV2_STEPS = 5  # NCSNv2's T for CIFAR-10 (and its other 32 px data sets)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "noise-levels", help="NCSNv2's sigma_1, number of levels and step size for a data set",
        description="Print NCSNv2's data-driven choices with the numbers behind them: sigma_1 "
                    "= the largest distance between training images (technique 1), the ratio "
                    "gamma and number of levels L whose criterion meets the target (technique 2) "
                    "and the step size whose Eq. 4 variance ratio is closest to 1 for T steps "
                    "per level (technique 4, official convention), beside NCSN's defaults. Give "
                    "a data set name, --config, or --dim with --sigma-max.")
    p.add_argument("data", nargs="?", help="data set name (e.g. digits8, mnist, cifar10)")
    p.add_argument("--config", help="read the data set, noise levels and steps from a config "
                   "(file or packaged name)")
    p.add_argument("--data-root", help="where the data set's files are")
    p.add_argument("--download", action="store_true", help="download missing data set files")
    p.add_argument("--dim", type=count(3 * MAX_IMAGE_SIZE**2),
                   help="data dimension D (without a data set)")
    p.add_argument("--sigma-max", type=sigma, help="sigma_1 to use (default: technique 1)")
    p.add_argument("--sigma-min", type=sigma, help="sigma_L (default: the config's, else 0.01)")
    p.add_argument("--target", type=positive, default=0.5,
                   help="technique 2 criterion target (NCSNv2: about 0.5)")
    p.add_argument("--num-levels", type=count(MAX_LEVELS, minimum=2),
                   help="evaluate this L instead of technique 2's")
    p.add_argument("--steps", type=count(MAX_STEPS),
                   help=f"Langevin steps per level T (default: the "
                   f"config's, else NCSNv2's {NCSNV2_STEPS})")
    p.add_argument("--step-size", type=positive, help="evaluate this step_lr (official "
                   "convention) instead of technique 4's")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def criterion_report(dim: int, sigma_max: float, sigma_min: float, num_levels: int
                     ) -> dict[str, float]:
    """gamma of ``num_levels`` geometric levels and its technique-2 criterion."""
    from ncsn.core.noise import ncsnv2_ratio_criterion

    gamma = (sigma_max / sigma_min) ** (1.0 / (num_levels - 1)) if num_levels > 1 else math.inf
    return {"num_levels": num_levels, "gamma": gamma,
            "criterion": ncsnv2_ratio_criterion(gamma, dim) if num_levels > 1 else 0.0}


def variance_ratio(sigma_max: float, sigma_min: float, num_levels: int, steps: int,
                   step_lr: float) -> float:
    """NCSNv2 Eq. 4 ratio s_T^2 / sigma_i^2 for these levels, T and step_lr."""
    from ncsn.core.noise import ncsnv2_variance_ratio

    gamma = (sigma_max / sigma_min) ** (1.0 / (num_levels - 1))
    return ncsnv2_variance_ratio(step_lr, gamma, sigma_min, steps)


def noise_level_report(dim: int, sigma_max: float, sigma_min: float, *, target: float = 0.5,
                       num_levels: int | None = None, steps: int = NCSNV2_STEPS,
                       step_lr: float | None = None) -> dict[str, Any]:
    """Techniques 2 and 4 for data of dimension ``dim`` between ``sigma_max`` and ``sigma_min``:
    the levels for the ``target`` (and the given ``num_levels``, if any), the step size for
    ``steps`` (and the given ``step_lr``), and NCSN's defaults evaluated the same way."""
    from ncsn.core.noise import geometric_sigmas, ncsnv2_ratio_for_target, ncsnv2_step_size

    if not 0 < sigma_min < sigma_max:
        raise UserError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if steps < 1 or (num_levels is not None and num_levels < 2):
        raise UserError(f"need --steps >= 1 and --num-levels >= 2, got {steps} and {num_levels}")
    if step_lr is not None and not 0 < step_lr < sigma_min**2:
        raise UserError(f"--step-size must lie in (0, sigma_L^2 = {sigma_min**2:g}) for NCSNv2's "
                        f"Eq. 4, got {step_lr}")
    try:
        gamma = ncsnv2_ratio_for_target(dim, target)
    except ValueError as err:
        raise UserError(str(err)) from None
    derived = max(2, round(1.0 + math.log(sigma_max / sigma_min) / math.log(gamma)))
    used = num_levels or derived
    sigmas = geometric_sigmas(sigma_max, sigma_min, used)
    best_step = ncsnv2_step_size(sigmas, steps)
    step = step_lr if step_lr is not None else best_step
    ncsn = NCSN_DEFAULTS
    return {
        "dim": dim, "sigma_max": sigma_max, "sigma_min": sigma_min,
        "technique2": {"target": target, "gamma_for_target": gamma,
                       "levels_for_target": criterion_report(dim, sigma_max, sigma_min, derived),
                       "levels": criterion_report(dim, sigma_max, sigma_min, used),
                       "levels_given": num_levels is not None},
        "technique4": {"steps": steps, "step_lr_best": best_step, "step_lr": step,
                       "paper_eps": 2.0 * step, "step_given": step_lr is not None,
                       "variance_ratio": variance_ratio(sigma_max, sigma_min, used, steps, step)},
        "ncsn_defaults": {**ncsn, **criterion_report(dim, ncsn["sigma_max"], ncsn["sigma_min"],
                                                     ncsn["num_levels"]),
                          "variance_ratio": variance_ratio(
                              ncsn["sigma_max"], ncsn["sigma_min"], ncsn["num_levels"],
                              ncsn["n_steps_each"], ncsn["step_lr"])},
    }


def sigma_max_report(config: Any) -> tuple[int, dict[str, Any]]:
    """(D, technique 1 on the config's training split): the largest pairwise distance over the
    images ``sigma_max: auto`` measures, and bounds over all images (network space)."""
    from ncsn.core.noise import ncsnv2_sigma_max, ncsnv2_sigma_max_bounds
    from ncsn.data import to_float, to_model_space
    from ncsn.training.setup import load_split, sigma_max_sample

    images = load_split(config, "train")
    sample = sigma_max_sample(config, images)
    value = ncsnv2_sigma_max(sample)
    lower, upper = ncsnv2_sigma_max_bounds(images,
                                           transform=lambda part: to_model_space(to_float(part),
                                                                                 config.data.logit))
    exact = len(sample) == len(images)
    return int(images[0].numel()), {
        "value": value, "exact": exact, "images": len(sample), "of": len(images),
        "lower": value if exact else max(value, lower), "upper": value if exact else upper,
        "shape": list(images.shape[1:]), "logit": config.data.logit}


def _settings(config: Any) -> dict[str, Any]:
    """The config's annealed-Langevin settings (empty for other samplers)."""
    settings = config.sampling.settings
    return settings.given() if settings.sampler == "annealed_langevin" else {}


def _build(args: argparse.Namespace) -> dict[str, Any]:
    from ncsn.config import load_config, validate_config

    sources = [s for s, given in (("a data set", args.data), ("--config", args.config),
                                  ("--dim", args.dim)) if given is not None]
    if len(sources) != 1:
        raise UserError("give exactly one of a data set name, --config or --dim "
                        f"(got {', '.join(sources) or 'none'})")
    sigma_max, sigma_min, num_levels = args.sigma_max, args.sigma_min, args.num_levels
    steps, step_lr, technique1 = args.steps, args.step_size, None
    sources = {"sigma_max": "given", "num_levels": "given" if num_levels else "technique 2",
               "step_lr": "given" if step_lr is not None else "technique 4"}
    if args.dim is not None:
        if sigma_max is None:
            raise UserError("--dim needs --sigma-max (technique 1 needs the data)")
        dim = args.dim
    else:
        if args.config is not None:
            config = load_config(args.config)
        else:
            config = validate_config({"data": {"name": args.data, "root": args.data_root,
                                               "download": args.download}})
        dim, technique1 = sigma_max_report(config)
        noise, settings = config.noise, _settings(config)
        if sigma_max is None:
            from_config = args.config is not None and noise.sigma_max != "auto"
            sigma_max = float(noise.sigma_max) if from_config else technique1["value"]
            sources["sigma_max"] = "config" if from_config else "technique 1"
        if args.config is not None:
            sigma_min = sigma_min or noise.sigma_min
            if num_levels is None and noise.num_levels != "auto":
                num_levels, sources["num_levels"] = int(noise.num_levels), "config"
            steps = steps or settings.get("n_steps_each")
            step = settings.get("step_size")
            if step_lr is None and isinstance(step, (int, float)):
                step_lr = step / 2.0 if settings.get("convention", "paper") == "paper" else step
                sources["step_lr"] = "config"
    report = noise_level_report(dim, float(sigma_max), sigma_min or 0.01, target=args.target,
                                num_levels=num_levels, steps=steps or NCSNV2_STEPS,
                                step_lr=step_lr)
    return {"technique1": technique1, "sources": sources, **report}


def format_report(r: dict[str, Any]) -> str:
    """The report as text, one technique per paragraph."""
    t1, t2, t4, ncsn = r["technique1"], r["technique2"], r["technique4"], r["ncsn_defaults"]
    sources = r["sources"]
    lines = [f"D = {r['dim']}"]
    if t1 is not None:
        space = " (logit space)" if t1["logit"] else ""
        how = (f"exact over all {t1['of']:,} training images" if t1["exact"] else
               f"over a random subset of {t1['images']:,} of {t1['of']:,} images (what "
               f"sigma_max: auto uses); all images: {t1['lower']:.4g} <= sigma_1 <= "
               f"{t1['upper']:.4g}")
        lines.append(f"technique 1, sigma_1 = largest pairwise distance{space}: "
                     f"{t1['value']:.4g}, {how}")
    lines.append(f"levels from sigma_1 = {r['sigma_max']:.4g} ({sources['sigma_max']}) to "
                 f"sigma_L = {r['sigma_min']:.4g}")
    aim, used = t2["levels_for_target"], t2["levels"]
    lines.append(f"technique 2, criterion Phi(sqrt(2D)(g-1) + 3g) - Phi(sqrt(2D)(g-1) - 3g) = "
                 f"{t2['target']}: gamma = {t2['gamma_for_target']:.5f}, L = "
                 f"{aim['num_levels']} (rounded: gamma {aim['gamma']:.5f}, criterion "
                 f"{aim['criterion']:.3f})")
    if t2["levels_given"]:
        lines.append(f"  L = {used['num_levels']} ({sources['num_levels']}): gamma "
                     f"{used['gamma']:.5f}, criterion {used['criterion']:.3f}")
    given = f" ({sources['step_lr']})" if t4["step_given"] else ""
    lines.append(f"technique 4, T = {t4['steps']} steps per level at L = {used['num_levels']}: "
                 f"step_lr {t4['step_lr']:.3g}{given} (official convention; paper eps "
                 f"{t4['paper_eps']:.3g}), Eq. 4 ratio s_T^2/sigma^2 = "
                 f"{t4['variance_ratio']:.4f} (1 is ideal; closest step_lr "
                 f"{t4['step_lr_best']:.3g})")
    lines.append(f"NCSN's defaults: L = {ncsn['num_levels']}, {ncsn['sigma_max']:g} -> "
                 f"{ncsn['sigma_min']:g} (gamma {ncsn['gamma']:.4f}, criterion "
                 f"{ncsn['criterion']:.3f}); T = {ncsn['n_steps_each']}, step_lr "
                 f"{ncsn['step_lr']:g}: Eq. 4 ratio {ncsn['variance_ratio']:.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = _build(args)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
