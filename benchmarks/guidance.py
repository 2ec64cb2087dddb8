"""Class-conditional sampling by classifier guidance against the guidance scale w.

    .venv/bin/python benchmarks/guidance.py --model runs/demo --classifier CLS
        [--per-class 30] [--scales 0 1 2 4 8] [--sampler NAME] [--nfe N] [--seed 0]
        [--classifier-input noisy|denoised]

For each w, ``--per-class`` samples of each of the 10 digits with ``ScoreModel.sample_class``
(the noise-conditional classifier ``CLS`` from ``ncsn train-classifier`` guides; w = 0 is
unguided sampling; ``--classifier-input denoised`` guides through the model's denoised
estimate x + sigma^2 s(x, sigma); a class-conditional model is run on its unconditional score,
``labels="none"``, plus the guidance). A class-conditional model adds a last row: its own
conditional sampling of each digit (``labels=y``, no classifier). Scored by the in-repo digit
classifier of ``ncsn.eval.digits`` (not the guiding one): the share assigned to the asked class
with its binomial standard error, the confident share (max probability >= 0.9) and the digit
KID (its std over subsets) against the mnist5k test split, with wall time. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from ncsn.eval.digits import classify, digit_metrics, load_digit_classifier
from ncsn.sampling import load


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    p.add_argument("--sampler")
    p.add_argument("--nfe", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifier-input", choices=["noisy", "denoised"], default="noisy")
    args = p.parse_args()
    model = load(args.model)
    plan = model.plan(sampler=args.sampler, nfe=args.nfe)
    judge = load_digit_classifier()
    print(f"model {args.model}, classifier {args.classifier}, {plan.describe()}, "
          f"{args.per_class} per class, classifier input {args.classifier_input}")
    print("| w | asked class (SE) | confident | digit KID (std) | time |")
    print("|---|---|---|---|---|")
    rows = {f"{w:g}": lambda label, w=w: model.sample_class(
        args.per_class, label, args.classifier, scale=w, plan=plan, seed=args.seed + label,
        classifier_input=args.classifier_input)
        for w in args.scales}
    if model.num_classes:
        rows["conditional model (labels=y, no classifier)"] = lambda label: model.sample(
            args.per_class, plan=plan, seed=args.seed + label, labels=label)
    asked = torch.arange(10).repeat_interleave(args.per_class)
    for name, draw in rows.items():
        start = time.perf_counter()
        images = torch.cat([draw(label) for label in range(10)])
        seconds = time.perf_counter() - start
        probs = classify(judge, images)[1]
        metrics = digit_metrics(images, seed=args.seed)
        share = float((probs.argmax(1) == asked).float().mean())
        print(f"| {name} | {share:.3f} ({math.sqrt(share * (1 - share) / len(asked)):.3f}) | "
              f"{metrics['digit_confident']:.3f} | {metrics['digit_kid']:.3f} "
              f"({metrics['digit_kid_std']:.3f}) | {seconds:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
