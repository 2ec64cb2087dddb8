"""Restoration with every sampler on exact scores, and of held-out images against baselines.

Exact scores (no network; only the mechanism's and the samplers' own errors show):
    .venv/bin/python benchmarks/restore.py [--seed 0]
  the correlated Gaussian on 4x4 images of ``ncsn.core.toy.smooth_image_gaussian``, 4000
  posterior draws per case given one observation of one exact draw: a pixel mask (left half
  observed), the 25% lowest DCT frequencies, the 2x2 block means (super-resolution x2), the
  pixel mask with noise std 0.3, and denoising (std 0.3). Printed per sampler and case: the
  largest error of a posterior mean component and the largest entry of cov - I, both after
  whitening by the exact posterior (so in posterior standard deviations; the sampling noise
  alone gives about 0.05 / 0.1). Annealed Langevin (sigma 3 -> 0.05, T = 100,
  eps = 2 sigma_L^2) ends at sigma_L, so its exact target differs from the posterior by ~0.03
  here (tests/test_inverse.py); the samplers that ``ncsn`` refuses
  for noisy observations are run anyway and marked.

A trained model:
    .venv/bin/python benchmarks/restore.py --model runs/demo [--dataset mnist5k]
        [--num-images 100] [-k 4] [--tasks ...] [--sampler NAME] [--nfe N]
        [--noise-std 0.2] [--mask right] [--seed 0]

``--num-images`` images drawn (``--seed``) from the test split of ``--dataset`` go through tasks
of ``ScoreModel.restore``: by default for ``mnist5k`` digits (which the model and the digit
classifier never saw) inpainting (``--mask``), super-resolution x2 (2x2 block means observed)
and denoising (``--noise-std``); for ``photos32`` crops (from photos the model never saw)
colorization. Each method's restorations are scored against the originals: PSNR (peak 1, per
image, then averaged over images; whole images, so observed pixels or grey count as exact) and,
for digits, the share that the in-repo digit classifier (``ncsn.eval.digits``) assigns to the
original's label and its confident share (max probability >= 0.9). Methods: one sample per
image, the mean of ``-k`` samples (an estimate of the posterior mean, which maximises expected
PSNR), and the baselines: mean fill (hidden pixels = the train split's mean image), nearest /
bicubic upsampling of the block means, the noisy input, and for colorization the grey input
(the grey in all three channels) and mean colour (the observed grey with the colour
coefficients of the train split's mean image). ``kept`` is the largest deviation of a sample's
observed coefficients from the observation (noiseless tasks; with noise their RMS difference,
to compare with the noise std). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ncsn.core import inverse
from ncsn.core import samplers as S
from ncsn.core.inverse import LinearObservation
from ncsn.core.noise import geometric_sigmas, karras_sigmas
from ncsn.core.toy import smooth_image_gaussian
from ncsn.data import load_dataset, load_labels
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


def kept(samples: torch.Tensor, y: torch.Tensor, operator: LinearObservation, k: int) -> str:
    """Without noise, the largest |observed coefficient of a sample - that of the observation|;
    with noise std s, their RMS difference (a posterior sample of x + s e's clean part differs
    from y by about s)."""
    owner = torch.arange(y.shape[0]).repeat_interleave(k)
    got, want = operator.basis.forward(samples), operator.basis.forward(y[owner])
    diff = (got - want)[operator.rows(owner).observed(got)]
    if operator.noise_std == 0:
        return f"{float(diff.abs().max()):.1e}"
    return f"rms {float(diff.pow(2).mean().sqrt()):.3f} (s {operator.noise_std:g})"


def baselines(task: str, y: torch.Tensor, train_mean: torch.Tensor,
              operator: LinearObservation) -> dict[str, torch.Tensor]:
    """The simple restorations of each task from its observation ``y``."""
    mean_fill = operator.impose(train_mean.expand_as(y), operator.basis.forward(y))
    if task == "inpaint":
        return {"mean fill": mean_fill}
    if task == "superres":
        low = F.avg_pool2d(y, 2)
        return {"nearest": F.interpolate(low, scale_factor=2, mode="nearest"),
                "bicubic": F.interpolate(low, scale_factor=2, mode="bicubic",
                                         align_corners=False).clamp(0, 1)}
    if task == "colorize":  # observed with fill 0.5, whose colour coefficients are 0: grey
        return {"grey input": y.clamp(0, 1), "mean colour": mean_fill.clamp(0, 1)}
    return {"noisy input": y.clamp(0, 1)}


def run_task(model: ScoreModel, task: str, images: torch.Tensor, labels: torch.Tensor | None,
             train_mean: torch.Tensor, args: argparse.Namespace) -> list[str]:
    """Table rows of one task: the model's sample and k-sample mean, then the baselines (digit
    columns only with ``labels``)."""
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
        cells = [task, name, f"{psnr(restored, images):.2f}"]
        if labels is not None:
            cells += [f"{score:.3f}" for score in digit_scores(restored, labels)]
        cells += [kept(samples, y, operator, k) if index == 0 else "",
                  f"{seconds:.0f} s ({n} x {k})" if index == 0 else ""]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


GAUSSIAN_SAMPLERS = {
    "annealed_langevin": (S.annealed_langevin, geometric_sigmas(3.0, 0.05, 10),
                          {"n_steps_each": 100, "step_size": 2 * 0.05**2}),
    "consistent_annealed": (S.consistent_annealed, geometric_sigmas(5.0, 0.01, 200), {}),
    "predictor_corrector": (S.predictor_corrector, geometric_sigmas(5.0, 0.01, 200), {}),
    "predictor_corrector, n_corrector 0": (S.predictor_corrector,
                                           geometric_sigmas(5.0, 0.01, 200), {"n_corrector": 0}),
    "edm (s_churn 10)": (S.edm_sampler, karras_sigmas(5.0, 0.01, 80), {"s_churn": 10.0}),
    "probability_flow_ode": (S.probability_flow_ode, karras_sigmas(5.0, 0.01, 50), {}),
    "dpm_solver_2m": (S.dpm_solver_2m, karras_sigmas(5.0, 0.01, 50), {}),
}


DEFAULT_TASKS = {"mnist5k": ["inpaint", "superres", "denoise"], "photos32": ["colorize"]}
REFUSE_NOISE = ("annealed_langevin", "predictor_corrector")  # ncsn refuses them for noisy y


def gaussian_errors(operator: LinearObservation, name: str, seed: int,
                    n: int = 4000) -> tuple[float, float]:
    """(largest |mean error|, largest |cov - I| entry) of ``n`` posterior draws by sampler
    ``name``, whitened by the exact posterior of the unobserved (noisy: all) coefficients."""
    side = 4
    gaussian, (sampler, sigmas, settings) = smooth_image_gaussian(side), GAUSSIAN_SAMPLERS[name]
    gen = torch.Generator().manual_seed(seed)
    truth = gaussian.sample(1, gen).reshape(1, 1, side, side)
    y = operator.observe(truth, generator=gen).expand(n, 1, side, side).clone()
    x_init = torch.rand(y.shape, generator=gen, dtype=torch.float64)
    if sampler is not S.annealed_langevin:  # the prior of the single-pass samplers
        x_init = x_init + float(sigmas[0]) * torch.randn(y.shape, generator=gen,
                                                         dtype=torch.float64)
    out = inverse.restore(gaussian, y, operator, sigmas.double(), sampler=sampler,
                          x_init=x_init, generator=gen, **settings)
    u = operator.basis.forward(torch.eye(side * side, dtype=torch.float64).reshape(
        -1, 1, side, side)).reshape(side * side, -1).T
    obs = operator.observed(truth).flatten()
    coefficients, observed = out.reshape(n, -1) @ u.T, u @ y[0].flatten()
    mean, cov, _ = gaussian.transformed(u).condition(obs, observed[obs], operator.noise_std**2)
    free = ~obs if operator.noise_std == 0 else torch.ones_like(obs)
    chol = torch.linalg.cholesky(cov[free][:, free])
    w = torch.linalg.solve_triangular(chol, (coefficients[:, free] - mean[free]).T,
                                      upper=False).T
    eye = torch.eye(w.shape[1], dtype=w.dtype)
    return float(w.mean(0).abs().max()), float((torch.cov(w.T) - eye).abs().max())


def gaussian_table(seed: int) -> None:
    """Print the exact-score table (module docstring)."""
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1.0
    cases = {"pixel mask": inverse.pixel_observation(mask),
             "DCT, 25% lowest": inverse.low_frequencies((1, 4, 4), 0.25),
             "2x2 block means": inverse.super_resolution((1, 4, 4), 2),
             "pixel mask, s 0.3": inverse.pixel_observation(mask, 0.3),
             "denoising, s 0.3": inverse.denoising((1, 4, 4), 0.3)}
    print("| sampler | " + " | ".join(cases) + " |")
    print("|---" * (len(cases) + 1) + "|")
    for name in GAUSSIAN_SAMPLERS:
        cells = []
        for op in cases.values():
            a, b = gaussian_errors(op, name, seed)
            refused = op.noise_std > 0 and name in REFUSE_NOISE
            cells.append(f"{a:.2f} / {b:.2f}" + (" (refused)" if refused else ""))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model file, stem or run directory (default: exact scores)")
    p.add_argument("--dataset", default="mnist5k", choices=list(DEFAULT_TASKS),
                   help="whose test split to restore")
    p.add_argument("--num-images", type=int, default=100)
    p.add_argument("-k", type=int, default=4, help="samples per digit")
    p.add_argument("--sampler", help="sampler (default: the model's)")
    p.add_argument("--nfe", type=int, help="network evaluations per sample")
    p.add_argument("--noise-std", type=float, default=0.2, help="denoising noise std")
    p.add_argument("--mask", default="right", help="inpainting mask (ncsn inpaint --mask)")
    p.add_argument("--tasks", nargs="+", help="default: by data set (module docstring)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    if args.model is None:
        gaussian_table(args.seed)
        return
    model = load(args.model)
    test = load_dataset(args.dataset, "test").float() / 255.0
    pick = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(args.seed))
    pick = pick[: args.num_images]
    images = test[pick]
    digits = args.dataset == "mnist5k"
    labels = load_labels("mnist5k", "test")[pick] if digits else None
    train_mean = (load_dataset(args.dataset, "train").float() / 255.0).mean(0, keepdim=True)
    print(f"{args.num_images} {args.dataset} test images, model {args.model}, seed {args.seed}")
    header = ["task", "method", "PSNR (dB)",
              *(["classified as original", "confident"] if digits else []), "kept", "time"]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for task in args.tasks or DEFAULT_TASKS[args.dataset]:
        print("\n".join(run_task(model, task, images, labels, train_mean, args)), flush=True)


if __name__ == "__main__":
    main()
