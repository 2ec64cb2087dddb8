"""Quality per network evaluation of every registered sampler.

Exact scores (no network; only the samplers' own errors show):
    .venv/bin/python benchmarks/samplers.py [--num-samples 4000] [--seed 0]
  the paper's 2-D mixture 0.2 N((-5,-5), I) + 0.8 N((5,5), I), sigma 40 -> 0.01, every chain
  started from exact draws of the data perturbed at sigma = 40; printed: fraction in the (-5,-5)
  mode (truth 0.2) and sliced Wasserstein-1 distance to exact samples (two exact sets of the same
  size give the noise floor).

A trained digit model:
    .venv/bin/python benchmarks/samplers.py --model runs/demo [--num-samples 500]
  every sampler at each budget of ``--nfe`` network evaluations where it is defined for the
  model (``ncsn.sampling.plan_sampling``: the sampler's default schedule over the model's sigma
  range, or the model's own levels for a network trained on discrete levels), scored with the
  digit classifier of ``ncsn.eval.digits``: share of confident digits, classes covered, class
  balance, KID in the classifier's features against the mnist5k test split; and wall time.
  Annealed Langevin runs the model's L levels with T = budget / L and ``--ald-step`` (default
  ``auto``: NCSNv2 technique 4 for that T) and the final denoising step.
"""

from __future__ import annotations

import argparse
import time

import torch

from ncsn.config import parse_yaml
from ncsn.core.toy import paper_mixture
from ncsn.errors import UserError
from ncsn.experiments.toy import mode_fraction, sliced_wasserstein
from ncsn.sampling import SAMPLERS, counting, load, plan_sampling, run_plan
from ncsn.spec.model import ModelSpec

SIGMA_MAX, SIGMA_MIN = 40.0, 0.01
NFES = (10, 20, 35, 50, 100, 250, 1000)


def _fixed() -> torch.Generator:
    """The same projection directions for every distance."""
    return torch.Generator().manual_seed(123)


def _settings(name: str, args: argparse.Namespace) -> dict[str, object]:
    """Annealed Langevin's benchmark settings, then every ``--setting`` the sampler has."""
    settings: dict[str, object] = {}
    if name == "annealed_langevin":
        settings = {"final_denoise": True, "step_size": args.ald_step if args.ald_step == "auto"
                    else float(args.ald_step)}
    own = SAMPLERS[name].settings.option_names()
    for item in args.setting:
        key, _, value = item.partition("=")
        if key in own:
            settings[key] = parse_yaml(value)
    return settings


def exact_table(args: argparse.Namespace) -> None:
    mix = paper_mixture()
    gen = torch.Generator().manual_seed(args.seed)
    exact, floor = mix.sample(args.num_samples, gen), mix.sample(args.num_samples, gen)
    prior = mix.perturbed(SIGMA_MAX).sample(args.num_samples, gen)
    spec = ModelSpec(network={"name": "exact"}, channels=1, image_size=1,
                     sigmas=(SIGMA_MAX, SIGMA_MIN))
    print(f"{args.num_samples} samples, exact scores of 0.2 N((-5,-5), I) + 0.8 N((5,5), I), "
          f"sigma {SIGMA_MAX:g} -> {SIGMA_MIN:g}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"| sampler | schedule | NFE | mode fraction (0.2) | SW1 to exact (floor "
          f"{sliced_wasserstein(floor, exact, generator=_fixed()):.3f}) | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.samplers:
        for nfe in args.nfe:
            try:
                plan = plan_sampling(spec, continuous=True, sampler=name, nfe=nfe,
                                     num_levels=10 if name == "annealed_langevin" else None,
                                     settings=_settings(name, args))
            except UserError:
                continue
            calls: list[int] = []
            start = time.perf_counter()
            x = run_plan(plan, counting(mix, lambda calls=calls: calls.append(1)), prior,
                         generator=torch.Generator().manual_seed(1))
            seconds = time.perf_counter() - start
            print(f"| {name} | {plan.schedule} {plan.sigmas.numel()} | {len(calls)} | "
                  f"{mode_fraction(x):.3f} | "
                  f"{sliced_wasserstein(x, exact, generator=_fixed()):.3f} | {seconds:.2f} |")


def model_table(args: argparse.Namespace) -> None:
    from ncsn.eval.digits import digit_metrics

    model = load(args.model)
    print(f"{args.model}: {args.num_samples} samples per row, seed {args.seed}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    guidance = f", classifier-free guidance {args.guidance:g}" if args.guidance else ""
    print(f"(confident: share +- its binomial standard error{guidance})")
    print("| sampler | schedule | NFE | confident | classes | balance | digit KID (std) "
          "| seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.samplers:
        for nfe in args.nfe:
            try:
                plan = model.plan(sampler=name, nfe=nfe, sigma_min=args.sigma_min,
                                  **_settings(name, args))
            except UserError:
                continue
            start = time.perf_counter()
            images = model.sample(args.num_samples, plan=plan, seed=args.seed,
                                  batch_size=args.batch_size, guidance=args.guidance)
            seconds = time.perf_counter() - start
            m = digit_metrics(images, labels=model.class_labels("balanced", args.num_samples))
            share = m["digit_confident"]
            error = (share * (1 - share) / args.num_samples) ** 0.5
            sig = plan.sigmas
            opts = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in plan.settings.options().items())
            print(f"| {name} {opts} | {plan.schedule} {sig.numel()} "
                  f"{float(sig[0]):.3g}->{float(sig[-1]):.3g} | {plan.nfe} | "
                  f"{share:.3f} +- {error:.3f} | {m['digit_classes']} | "
                  f"{m['digit_balance']:.3f} | {m['digit_kid']:.3f} ({m['digit_kid_std']:.3f}) | "
                  f"{seconds:.1f} |" + (f" asked class {m['digit_asked']:.3f} |"
                                        if "digit_asked" in m else ""),
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained model (run directory or model file)")
    parser.add_argument("--num-samples", type=int)
    parser.add_argument("--nfe", type=int, nargs="+", default=list(NFES))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--ald-step", default="auto",
                        help="annealed Langevin step size (paper eps) or 'auto'")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a sampler setting (e.g. eta=0.6) for the samplers that have it")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--sigma-min", type=float, help="schedules end here (plan sigma_min)")
    parser.add_argument("--guidance", type=float, default=0.0,
                        help="classifier-free guidance scale (class-conditional models)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.model is None:
        args.num_samples = args.num_samples or 4000
        exact_table(args)
    else:
        args.num_samples = args.num_samples or 500
        model_table(args)


if __name__ == "__main__":
    main()
