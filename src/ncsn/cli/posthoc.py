"""``ncsn posthoc-ema``: the EMA of any length after training, from a run's post-hoc EMA
snapshots (Karras et al. 2024, Sec. 3.2; :mod:`ncsn.training.posthoc`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn.cli.args import count, number
from ncsn.errors import UserError
from ncsn.spec.values import MAX_STEPS
from ncsn.training.posthoc import MAX_SIGMA_REL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "posthoc-ema", help="reconstruct an EMA of any length from a run's post-hoc snapshots",
        description="Combine the power-function EMA snapshots a run wrote "
                    "(training.posthoc_ema) into the EMA of the asked length at --step, by least "
                    "squares on their averaging profiles (Karras et al. 2024, Sec. 3.2), and "
                    "write it as a model file (OUT.safetensors + OUT.json) that ncsn sample "
                    "and ncsn.load read.")
    p.add_argument("run", type=Path, help="run directory (holding posthoc_ema/)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--sigma-rel", type=number(gt=0, lt=MAX_SIGMA_REL),
                        help="the EMA's relative length, in (0, 0.2887); the paper's snapshots "
                             "are 0.05 and 0.10")
    length.add_argument("--gamma", type=number(gt=0, le=1000),
                        help="instead of --sigma-rel: the power-function exponent")
    p.add_argument("--step", type=count(MAX_STEPS),
                   help="the training step to reconstruct at (default: the latest snapshot's)")
    p.add_argument("--out", required=True, type=Path,
                   help="model file stem to write (OUT.safetensors and OUT.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncsn import files
    from ncsn.nets.io import build_from_spec, load_weights, save_model
    from ncsn.training.posthoc import gamma_of_sigma_rel, reconstruct, sigma_rel_of_gamma

    stem = args.out.with_suffix("") if args.out.suffix in (".safetensors", ".json") else args.out
    if stem.suffix:
        raise UserError(f"--out {args.out}: a model file stem cannot hold a dot ({stem.suffix}); "
                        "the model would be written as "
                        f"{stem.with_suffix('.safetensors').name}: pass e.g. "
                        f"{stem.name.replace('.', 'p')}")
    files.check_output_file(stem.with_suffix(".safetensors"), "--out")
    gamma = args.gamma if args.gamma is not None else gamma_of_sigma_rel(args.sigma_rel)
    rec = reconstruct(args.run, gamma, args.step)
    net = build_from_spec(rec.spec)
    load_weights(net, rec.state, f"post-hoc EMA of {args.run}")
    sigma_rel = sigma_rel_of_gamma(gamma)
    record = {"posthoc_ema": {"run": str(args.run), "sigma_rel": sigma_rel, "gamma": gamma,
                              "step": rec.step, "snapshots": len(rec.snapshots),
                              "profile_error": rec.profile_error}}
    path = save_model(stem, net, rec.spec.model_copy(
        update={"provenance": {**rec.spec.provenance, **record}}))
    print(f"wrote {path} (sigma_rel {sigma_rel:.4g}, gamma {gamma:.4g}, step {rec.step}, from "
          f"{len(rec.snapshots)} snapshots; profile error {rec.profile_error:.2%})")
    return 0
