"""``ncsn train`` (any config; torchrun for several processes) and ``ncsn demo`` (CPU digits)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ncsn import files
from ncsn.cli.args import count
from ncsn.errors import UserError
from ncsn.spec.samplers import SCHEDULES
from ncsn.spec.values import MAX_NFE, MAX_STEPS

DEFAULT_DEMO_DIR = "runs/demo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a score network from a YAML config",
        description="Train a noise-conditional score network. The same command runs on one "
                    "process or under torchrun (several GPUs/nodes; rank 0 writes the run "
                    "directory: config.yaml, checkpoints/, metrics.jsonl, model files).")
    p.add_argument("--config", type=Path,
                   help="YAML config: a file or a packaged name such as mnist5k_cpu (ncsn "
                        "configs lists them); with --resume defaults to <run-dir>/config.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted path, value parsed as YAML "
                        "(repeatable), e.g. --set training.lr=2e-4")
    p.add_argument("--run-dir", type=Path,
                   help="run directory (default runs/<config file stem>)")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from the latest checkpoint in the run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run directory and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    d = sub.add_parser(
        "demo", help="train a small CPU model on embedded MNIST digits and sample from it",
        description="Train UNetSmall on the embedded 5,000 MNIST digits (the packaged recipe "
                    "mnist5k_cpu; a few minutes on 2 CPU cores), sample 64 digits with a fast "
                    "sampler, score them with the digit classifier, and write samples.png, "
                    "loss.png, metrics.jsonl and demo.json into --out. --sampler "
                    "annealed_langevin draws with the paper's 1,000-evaluation sampler instead.")
    d.add_argument("--out", type=Path, default=Path(DEFAULT_DEMO_DIR),
                   help=f"run directory (default {DEFAULT_DEMO_DIR})")
    d.add_argument("--steps", type=count(MAX_STEPS), help="training steps (default: the recipe's)")
    d.add_argument("--quick", action="store_true",
                   help="a tiny network and a few steps: checks the pipeline in seconds")
    d.add_argument("--overwrite", action="store_true",
                   help="start afresh in an existing --out (default: resume it)")
    d.add_argument("--sampler", help="sampler (default: the recipe's; see ncsn samplers)")
    d.add_argument("--nfe", type=count(MAX_NFE), help="budget of network evaluations per digit")
    d.add_argument("--schedule", choices=SCHEDULES,
                   help="noise schedule (default: the sampler's)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=run_demo_command)


def run_train(args: argparse.Namespace) -> int:
    from ncsn.config import load_config
    from ncsn.training import train

    config_path = args.config
    if config_path is None:
        if not (args.resume and args.run_dir):
            raise UserError("pass --config FILE (or --resume --run-dir DIR to continue a run "
                            "with its saved config.yaml)")
        config_path = args.run_dir / "config.yaml"
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one")
    run_dir = files.check_output_dir(args.run_dir or Path("runs") / config_path.stem,
                                     "--run-dir")
    config = load_config(config_path, args.overrides)
    result = train(config, run_dir, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.no_progress)
    if result.loss is not None and os.environ.get("RANK", "0") == "0":
        print(f"trained to step {result.step} in {result.seconds:.0f} s (last loss "
              f"{result.loss:.4g}); model files in {result.run_dir}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    from ncsn.experiments.demo import run_demo

    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if args.nfe is not None and args.nfe < 1:
        raise UserError(f"--nfe must be >= 1, got {args.nfe}")
    files.check_output_dir(args.out, "--out")
    result = run_demo(args.out, steps=args.steps, quick=args.quick, overwrite=args.overwrite,
                      progress=not args.no_progress, sampler=args.sampler, nfe=args.nfe,
                      schedule=args.schedule)
    d = result.digits
    quality = (f"\n  digits:     {d['digit_confident']:.0%} confident, {d['digit_classes']} of 10 "
               f"classes, digit KID {d['digit_kid']:.3f}" if d else "")
    if "digit_asked" in d:
        quality += f", {d['digit_asked']:.0%} drawn as the asked digit"
    print(f"demo done: trained {result.train_seconds:.0f} s, sampled "
          f"{result.sample_seconds:.1f} s with {result.plan}{quality}\n  samples:    "
          f"{result.grid}\n  loss curve: {result.loss_curve}\n  metrics:    {result.metrics}")
    return 0
