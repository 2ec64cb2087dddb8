"""``ncsn toy figure1|figure2|figure3``: the paper's low-dimensional experiments."""

from __future__ import annotations

import argparse
import json

from ncsn import files
from ncsn.cli.args import count, seed
from ncsn.spec.values import MAX_IMAGES, MAX_STEPS


def register(sub: argparse._SubParsersAction) -> None:
    toy = sub.add_parser("toy", help="the paper's toy experiments (Figures 1-3)",
                         description="Reproduce the paper's low-dimensional experiments.")
    figures = toy.add_subparsers(dest="figure", metavar="FIGURE")
    figures.required = True
    f3 = figures.add_parser(
        "figure3", help="Langevin vs annealed Langevin on a 2-D mixture (exact scores)",
        description="Exact sampling vs Langevin (eps 0.1, T 1000) vs annealed Langevin "
                    "(sigma 20 -> 1, L 10, T 100, eps 0.1) on 0.2 N((-5,-5), I) + "
                    "0.8 N((5,5), I); 1280 chains from U[-8,8]^2. Writes figure3.png, "
                    "figure3_samples.npz and metrics.json.")
    f3.add_argument("--num-samples", type=count(MAX_IMAGES), default=1280)
    f2 = figures.add_parser(
        "figure2", help="SSM-VR score estimates are wrong in low-density regions",
        description="Train the 2-128-128-2 softplus MLP with sliced score matching (variance "
                    "reduced; Adam 1e-3, batch 128) on the mixture and plot data density, true "
                    "and learned score fields on [-8,8]^2. Writes figure2.png, figure2_loss.png, "
                    "figure2_fields.npz and metrics.json.")
    f2.add_argument("--steps", type=count(MAX_STEPS), default=10_000,
                    help="training steps (paper: 10000)")
    f1 = figures.add_parser(
        "figure1", help="SSM-VR on clean vs slightly noised image data (manifold hypothesis)",
        description="Train a small conv score network with SSM-VR on the embedded MNIST digits "
                    "twice: on clean data and on data perturbed with N(0, 1e-4) noise. The "
                    "loss on clean data is unstable; with tiny noise it converges. Writes "
                    "figure1.png, figure1_losses.npz and metrics.json.")
    f1.add_argument("--steps", type=count(MAX_STEPS), default=300)
    for p in (f1, f2, f3):
        p.add_argument("--out", required=True, help="output directory")
        p.add_argument("--seed", type=seed, default=0)
        p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ncsn.experiments import toy

    files.check_output_dir(args.out, "--out")
    if args.figure == "figure3":
        metrics = toy.figure3(args.out, num_samples=args.num_samples, seed=args.seed)
        summary = {k: round(v["fraction_in_lower_left_mode"], 4)
                   for k, v in metrics["methods"].items()}
        print(f"fraction of samples in the (-5,-5) mode (true 0.2): {json.dumps(summary)}")
    elif args.figure == "figure2":
        metrics = toy.figure2(args.out, steps=args.steps, seed=args.seed)
        print("score error (squared): density-weighted "
              f"{metrics['score_error_density_weighted']:.3f}, low-density mean "
              f"{metrics['score_error_low_density_mean']:.3f}, high-density mean "
              f"{metrics['score_error_high_density_mean']:.3f}")
    else:  # figure1: argparse admits only the three figures
        from ncsn.experiments.manifold import figure1

        metrics = figure1(args.out, steps=args.steps, seed=args.seed)
        print(f"SSM-VR loss over the last steps: clean {metrics['clean']['loss_tail_mean']:.1f} "
              f"(std {metrics['clean']['loss_tail_std']:.1f}), noised "
              f"{metrics['noised']['loss_tail_mean']:.1f} "
              f"(std {metrics['noised']['loss_tail_std']:.1f})")
    print(f"wrote {args.out}/metrics.json")
    return 0
