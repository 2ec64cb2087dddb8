"""``ncsn train-classifier``: a noise-conditional classifier for guiding a score model
(:mod:`ncsn.core.guidance`), trained on the sigma range and image shape of that model."""

from __future__ import annotations

import argparse
import time
from typing import Any, get_args

from ncsn import files
from ncsn.cli.args import count, seed
from ncsn.errors import UserError
from ncsn.spec.values import MAX_BATCH, MAX_STEPS


def register(sub: Any) -> None:
    from ncsn.training.classifier import PACKAGED, ClassifierRecipe

    p = sub.add_parser("train-classifier", help="train a noise-conditional classifier for "
                                                "classifier guidance",
                       description="Train p(y | x, sigma) on a labelled data set perturbed at "
                                   "log-uniform sigma over the score model's range, report its "
                                   "test accuracy per noise level and write STEM.safetensors + "
                                   "STEM.json (docs/controllable.md).")
    p.add_argument("model", help="the score model it will guide (its sigma range and images)")
    p.add_argument("--out", required=True, help="output stem (STEM.safetensors, STEM.json)")
    p.add_argument("--config", default=PACKAGED,
                   help=f"classifier YAML: a file or a packaged name (default {PACKAGED}; ncsn "
                        "configs lists them); the flags below override its fields")
    labelled = get_args(ClassifierRecipe.model_fields["dataset"].annotation)
    p.add_argument("--dataset", choices=labelled, help="labelled data set")
    p.add_argument("--steps", type=count(MAX_STEPS), help="Adam steps")
    p.add_argument("--batch-size", type=count(MAX_BATCH))
    p.add_argument("--seed", type=seed)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import ncsn
    from ncsn.core.noise import geometric_sigmas
    from ncsn.data import load_dataset
    from ncsn.data.embedded import mnist5k_labels
    from ncsn.nets.classifier import save_classifier
    from ncsn.training.classifier import (
        accuracy_per_level,
        load_classifier_config,
        train_classifier,
    )

    flags = {"dataset": args.dataset, "steps": args.steps, "batch_size": args.batch_size,
             "seed": args.seed}
    path, recipe = load_classifier_config(
        args.config, {k: v for k, v in flags.items() if v is not None})
    files.check_output_model(args.out, "--out")
    model = ncsn.load(args.model)
    channels, size, _ = model.image_shape
    if (channels, size) != (1, 28):
        raise UserError(f"{recipe.dataset} holds 1x28x28 digits; the model takes "
                        f"{channels}x{size}x{size} images")
    sigma_max, sigma_min = float(model.sigmas[0]), float(model.sigmas[-1])
    data = {split: (load_dataset(recipe.dataset, split).float() / 255.0,
                    torch.from_numpy(mnist5k_labels(split).astype("int64")))
            for split in ("train", "test")}
    start = time.perf_counter()
    net = train_classifier(*data["train"], sigma_min, sigma_max, steps=recipe.steps,
                           batch_size=recipe.batch_size, lr=recipe.lr, width=recipe.width,
                           seed=recipe.seed, log=print)
    seconds = time.perf_counter() - start
    levels = geometric_sigmas(sigma_max, sigma_min, 7).tolist()
    accuracy = accuracy_per_level(net, *data["test"], levels, seed=recipe.seed)
    record = {"dataset": recipe.dataset, "image_size": size, "sigma_min": sigma_min,
              "sigma_max": sigma_max, "config": str(path), "recipe": recipe.model_dump(),
              "test_accuracy_per_sigma": accuracy, "train_seconds": round(seconds, 1),
              "score_model": str(args.model)}
    out = save_classifier(args.out, net, record)
    print("test accuracy per sigma: " + ", ".join(f"{s}: {a:.3f}" for s, a in accuracy.items()))
    print(f"trained in {seconds:.0f} s: wrote {out} and {out.with_suffix('.json')}")
    return 0
