"""The paper's two-dimensional experiments (Song & Ermon 2019, Sec. 3): Figures 2 and 3.

Each ``figureN`` function writes PNG figure(s), raw samples (``.npz``) and ``metrics.json`` into
``out`` and returns the metrics dict.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from tqdm import tqdm

from ncsn import files
from ncsn.core.losses import ssm_loss
from ncsn.core.noise import geometric_sigmas
from ncsn.core.samplers import annealed_langevin, langevin
from ncsn.core.toy import GaussianMixture, paper_mixture
from ncsn.nets.mlp import ToyMLP

BOX = 8.0


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-1 distance between two equal-size point sets (random 1-D projections)."""
    if a.shape != b.shape:
        raise ValueError(f"point sets must have the same shape, got {a.shape} and {b.shape}")
    dirs = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, _ = (a.double() @ dirs).sort(dim=0)
    pb, _ = (b.double() @ dirs).sort(dim=0)
    return float((pa - pb).abs().mean())


def mode_fraction(x: torch.Tensor) -> float:
    """Fraction of 2-D points nearer (-5,-5) than (5,5), i.e. below the line x + y = 0."""
    return float((x.sum(dim=1) < 0).double().mean())


def save_figure(fig: Figure, path: Path, dpi: int) -> None:
    """Write ``fig`` as a PNG atomically (a crash never leaves half a file at ``path``)."""
    with files.atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=dpi)


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` as a compressed ``.npz`` atomically."""
    with files.atomic_open(path) as fh:
        np.savez_compressed(fh, **arrays)


def _scatter(ax: Axes, x: torch.Tensor, title: str) -> None:
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.6)
    ax.set(xlim=(-BOX, BOX), ylim=(-BOX, BOX), title=title, aspect="equal")


def figure3(out: str | Path, *, num_samples: int = 1280, seed: int = 0,
            langevin_steps: int = 1000, step_size: float = 0.1, sigma_max: float = 20.0,
            sigma_min: float = 1.0, num_levels: int = 10, steps_each: int = 100,
            mixture: GaussianMixture | None = None) -> dict[str, Any]:
    """Figure 3: exact samples vs Langevin vs annealed Langevin, all with exact scores.

    Chains start from U[-8, 8]^2. Langevin: eps = 0.1, T = 1000 (paper convention).
    Annealed: sigmas geometric 20 -> 1, L = 10, T = 100, eps = 0.1.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mix = mixture or paper_mixture()
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    exact = mix.sample(num_samples, gen)
    init = torch.rand(num_samples, 2, generator=gen) * 2 * BOX - BOX
    plain = langevin(mix, init, step_size, langevin_steps, generator=gen)
    sigmas = geometric_sigmas(sigma_max, sigma_min, num_levels)
    annealed = annealed_langevin(mix, init, sigmas, steps_each, step_size, generator=gen)
    true_weight = float(mix.weights[0])
    results = {}
    for name, x in (("exact", exact), ("langevin", plain), ("annealed_langevin", annealed)):
        frac = mode_fraction(x)
        results[name] = {
            "fraction_in_lower_left_mode": frac,
            "weight_error": abs(frac - true_weight),
            "sliced_wasserstein_to_exact": sliced_wasserstein(
                x, exact, generator=torch.Generator().manual_seed(seed + 1)),
        }
    save_arrays(out / "figure3_samples.npz", exact=exact.numpy(), langevin=plain.numpy(),
                annealed_langevin=annealed.numpy(), init=init.numpy())
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 3)
    for ax, (x, title) in zip(axes, ((exact, "(a) exact sampling"),
                                     (plain, "(b) Langevin dynamics"),
                                     (annealed, "(c) annealed Langevin dynamics")), strict=True):
        _scatter(ax, x, title)
    fig.suptitle(f"{num_samples} samples; true weight of the (-5,-5) mode = {true_weight:.2f}; "
                 f"measured: " + ", ".join(f"{k} {v['fraction_in_lower_left_mode']:.3f}"
                                           for k, v in results.items()), fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "figure3.png", dpi=120)
    metrics = {
        "figure": 3, "num_samples": num_samples, "seed": seed, "true_weight": true_weight,
        "settings": {"langevin": {"step_size": step_size, "n_steps": langevin_steps},
                     "annealed_langevin": {"sigma_max": sigma_max, "sigma_min": sigma_min,
                                           "num_levels": num_levels, "steps_each": steps_each,
                                           "step_size": step_size, "convention": "paper"}},
        "methods": results, "seconds": round(time.perf_counter() - start, 2),
    }
    files.write_json(out / "metrics.json", metrics, sort_keys=True)
    return metrics


def _grid(n: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    g = torch.linspace(-BOX, BOX, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    return torch.stack([xx.flatten(), yy.flatten()], 1), xx.numpy(), yy.numpy()


def score_errors(model_score: torch.Tensor, true_score: torch.Tensor, density: torch.Tensor,
                 low_density_fraction: float = 0.01) -> dict[str, float]:
    """Squared score errors on a grid: density-weighted overall, and mean in low/high density.

    The low-density region is where p(x) < ``low_density_fraction`` * max p.
    """
    err = ((model_score - true_score) ** 2).sum(dim=1)
    low = density < low_density_fraction * density.max()
    return {
        "score_error_density_weighted": float((err * density).sum() / density.sum()),
        "score_error_low_density_mean": float(err[low].mean()),
        "score_error_high_density_mean": float(err[~low].mean()),
        "low_density_threshold": low_density_fraction,
        "low_density_grid_fraction": float(low.double().mean()),
    }


def figure2(out: str | Path, *, steps: int = 10_000, batch_size: int = 128, lr: float = 1e-3,
            seed: int = 0, progress: bool = True,
            mixture: GaussianMixture | None = None) -> dict[str, Any]:
    """Figure 2: a 2-128-128-2 softplus MLP trained with SSM-VR is accurate only near the data.

    Adam (lr 1e-3), batch 128, 10k steps on fresh mixture samples each step; plots data density,
    true and learned score fields on [-8, 8]^2.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mix = mixture or paper_mixture()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ToyMLP(dim=mix.dim, hidden=128, depth=2, activation="softplus")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="figure2 SSM-VR", disable=not progress, dynamic_ncols=True)
    for step in bar:
        x = mix.sample(batch_size, gen)
        loss = ssm_loss(net, x, variance_reduced=True, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"SSM-VR loss became {losses[-1]} at step {step}")
        if step % 100 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    train_seconds = time.perf_counter() - start
    fine, _, _ = _grid(161)
    with torch.no_grad():
        density = mix.log_prob(fine).exp()
        errors = score_errors(net(fine.float()).double(), mix.score(fine), density)
        coarse, xx, yy = _grid(21)
        true_field = mix.score(coarse).numpy()
        learned_field = net(coarse.float()).numpy()
        dense, dx, dy = _grid(200)
        log_density = mix.log_prob(dense).numpy().reshape(200, 200)
    save_arrays(out / "figure2_fields.npz", grid=coarse.numpy(), true_score=true_field,
                learned_score=learned_field, losses=np.asarray(losses))
    fig = Figure(figsize=(13, 4.3))
    axes = fig.subplots(1, 3)
    axes[0].pcolormesh(dx, dy, np.exp(log_density), shading="auto", cmap="Oranges")
    axes[0].set_title("(a) data density p(x)")
    for ax, field, title in ((axes[1], true_field, "(b) data scores"),
                             (axes[2], learned_field, "(c) estimated scores (SSM-VR)")):
        ax.pcolormesh(dx, dy, log_density, shading="auto", cmap="Oranges",
                      vmin=log_density.max() - 12)
        ax.quiver(xx, yy, field[:, 0].reshape(xx.shape), field[:, 1].reshape(xx.shape),
                  angles="xy", color="k", width=0.004)
        ax.set_title(title)
    for ax in axes:
        ax.set(xlim=(-BOX, BOX), ylim=(-BOX, BOX), aspect="equal")
    fig.suptitle("Darker = higher density. Score error (squared, mean): high-density "
                 f"{errors['score_error_high_density_mean']:.2f}, low-density "
                 f"{errors['score_error_low_density_mean']:.2f}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "figure2.png", dpi=120)
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    ax.plot(losses, lw=0.5)
    ax.set(xlabel="step", ylabel="SSM-VR loss", title="Figure 2 training loss")
    fig.tight_layout()
    save_figure(fig, out / "figure2_loss.png", dpi=100)
    tail = losses[-min(500, len(losses)):]
    metrics = {
        "figure": 2, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
        "network": "MLP 2-128-128-2 softplus", "loss": "ssm (variance reduced, gaussian)",
        "final_loss_mean_last_500": float(np.mean(tail)), "train_seconds": round(train_seconds, 2),
        **errors,
    }
    files.write_json(out / "metrics.json", metrics, sort_keys=True)
    return metrics
