"""Restoration of held-out digits against simple baselines.

    .venv/bin/python benchmarks/restore.py --model runs/demo [--num-images 100] [-k 4]
        [--sampler NAME] [--nfe N] [--noise-std 0.2] [--mask right] [--seed 0]

``--num-images`` digits drawn (``--seed``) from the mnist5k test split, which the model and the
digit classifier never saw, go through three tasks of ``ScoreModel.restore``: inpainting
(``--mask``), super-resolution x2 (2x2 block means observed) and denoising (``--noise-std``).
Each method's restorations are scored against the originals: PSNR (peak 1, per image, then
averaged over images; whole images, so inpainting's observed pixels count as exact), the
share that the in-repo digit classifier (``ncsn.eval.digits``) assigns to the original's label,
and its confident share (max probability >= 0.9). Methods: one sample per digit, the mean of
``-k`` samples (an estimate of the posterior mean, which maximises expected PSNR), and the
baselines: mean fill (hidden pixels = the train split's mean digit), nearest / bicubic
upsampling of the block means, and the noisy input. ``kept`` is the largest deviation of a
sample's observed coefficients from the observation (noiseless tasks). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ncsn.core.inverse import LinearObservation
from ncsn.data import load_dataset
from ncsn.data.embedded import mnist5k_labels
from ncsn.eval.digits import CONFIDENCE, classify, load_digit_classifier
from ncsn.sampling import ScoreModel, load


def psnr(images: torch.Tensor, originals: torch.Tensor) -> float:
    """Mean over images of 10 log10(1 / MSE) (images in [0, 1])."""
    mse = ((images - originals) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def digit_scores(images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(share classified as ``labels``, confident share) by the in-repo digit classifier."""
    probs = classify(load_digit_classifier(), images)[1]
    return (float((probs.argmax(1) == labels).float().mean()),
            float((probs.max(1).values >= CONFIDENCE).float().mean()))


def kept(samples: torch.Tensor, y: torch.Tensor, operator: LinearObservation, k: int) -> float:
    """Largest |observed coefficient of a sample - that of the observation|."""
    owner = torch.arange(y.shape[0]).repeat_interleave(k)
    got, want = operator.basis.forward(samples), operator.basis.forward(y[owner])
    mask = operator.rows(owner).observed(got)
    return float((got - want)[mask].abs().max())


def baselines(task: str, y: torch.Tensor, train_mean: torch.Tensor,
              operator: LinearObservation) -> dict[str, torch.Tensor]:
    """The simple restorations of each task from its observation ``y``."""
    if task == "inpaint":
        return {"mean fill": operator.impose(train_mean.expand_as(y), operator.basis.forward(y))}
    if task == "superres":
        low = F.avg_pool2d(y, 2)
        return {"nearest": F.interpolate(low, scale_factor=2, mode="nearest"),
                "bicubic": F.interpolate(low, scale_factor=2, mode="bicubic",
                                         align_corners=False).clamp(0, 1)}
    return {"noisy input": y.clamp(0, 1)}


def run_task(model: ScoreModel, task: str, images: torch.Tensor, labels: torch.Tensor,
             train_mean: torch.Tensor, args: argparse.Namespace) -> list[str]:
    """Table rows of one task: the model's sample and k-sample mean, then the baselines."""
    n, k = images.shape[0], args.k
    noise = args.noise_std if task == "denoise" else 0.0
    operator = model.operator(task, n, noise_std=noise, mask=args.mask, seed=args.seed)
    y = operator.observe(images, fill=0.5, generator=torch.Generator().manual_seed(args.seed))
    plan = model.plan(sampler=args.sampler, nfe=args.nfe)
    start = time.perf_counter()
    samples = model.restore(y, operator, k=k, plan=plan, seed=args.seed)
    seconds = time.perf_counter() - start
    per_image = samples.reshape(n, k, *images.shape[1:])
    methods = {f"{plan.sampler}, {plan.nfe} evals: one sample": per_image[:, 0]}
    if k > 1:
        methods[f"mean of {k} samples"] = per_image.mean(1)
    methods.update(baselines(task, y, train_mean, operator))
    rows = []
    for index, (name, restored) in enumerate(methods.items()):
        right, confident = digit_scores(restored, labels)
        note = f"{kept(samples, y, operator, k):.1e}" if noise == 0 and index == 0 else ""
        timing = f"{seconds:.0f} s ({n} x {k})" if index == 0 else ""
        rows.append(f"| {task} | {name} | {psnr(restored, images):.2f} | {right:.3f} | "
                    f"{confident:.3f} | {note} | {timing} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model file, stem or run directory")
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("-k", type=int, default=4, help="samples per digit")
    p.add_argument("--sampler", help="sampler (default: the model's)")
    p.add_argument("--nfe", type=int, help="network evaluations per sample")
    p.add_argument("--noise-std", type=float, default=0.2, help="denoising noise std")
    p.add_argument("--mask", default="right", help="inpainting mask (ncsn inpaint --mask)")
    p.add_argument("--tasks", nargs="+", default=["inpaint", "superres", "denoise"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model = load(args.model)
    test = load_dataset("mnist5k", "test").float() / 255.0
    pick = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(args.seed))
    pick = pick[: args.num_images]
    images = test[pick]
    labels = torch.from_numpy(mnist5k_labels("test").astype("int64"))[pick]
    train_mean = (load_dataset("mnist5k", "train").float() / 255.0).mean(0, keepdim=True)
    print(f"{args.num_images} mnist5k test digits, model {args.model}, seed {args.seed}")
    print("| task | method | PSNR (dB) | classified as original | confident | kept | time |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        print("\n".join(run_task(model, task, images, labels, train_mean, args)), flush=True)


if __name__ == "__main__":
    main()
