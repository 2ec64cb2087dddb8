"""Where a trained network's probability-flow ODE beats the sigma_min floor (docs/likelihood.md).

    .venv/bin/python benchmarks/likelihood_floor.py --model runs/demo [--num-images 8]

The exact score of any density smoothed at sigma has d s/d x = (Cov[x0 | x] - sigma^2 I) /
sigma^4, so r = sigma^2 div s / D >= -1; a likelihood below the floor needs r < -1 somewhere on
the ODE's trajectory. For the first test digits of ``mnist5k`` (dequantised), the script follows
the ODE from sigma_min to sigma_max with Heun steps and prints, at the points it visits, r on the
trajectory, r at noisy digits y + sigma z at the same sigma (the points the network was trained
on), and how far the trajectory is from its digit in units of sigma sqrt(D) (noisy digits: 1).
Divergences by 4 Rademacher probes; the ODE's log-density terms per dimension are printed last.
"""

from __future__ import annotations

import argparse
import math

import torch

from ncsn.core.likelihood import (
    ODESettings,
    draw_probes,
    ode_log_likelihood,
    probe_quadratic_forms,
)
from ncsn.data import dequantize, load_dataset, to_float
from ncsn.nets.io import load_model

PROBES = 4


def contraction(net: torch.nn.Module, x: torch.Tensor, sigma: float,
                generator: torch.Generator) -> float:
    """Mean over the batch of sigma^2 div s(x, sigma) / D (Hutchinson, Rademacher probes)."""
    probes = draw_probes(x, "rademacher", PROBES, generator)
    sigmas = torch.full((x.shape[0],), sigma)
    _, forms = probe_quadratic_forms(net, x, sigmas, probes)
    return float(forms.mean(0).mean()) * sigma**2 / x[0].numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained model on 28x28 digits")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="Heun steps in ln sigma")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    net, spec = load_model(args.model)
    net.requires_grad_(False)
    sigmas = sorted(spec.sigmas)
    generator = torch.Generator().manual_seed(args.seed)
    digits = dequantize(to_float(load_dataset("mnist5k", "test")[:args.num_images]), generator)
    dims = digits[0].numel()
    visited: list[tuple[torch.Tensor, float]] = []

    def recording_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        visited.append((x.detach().clone(), float(sigma.flatten()[0])))
        return net(x, sigma)

    result = ode_log_likelihood(recording_score, digits, sigmas[0], sigmas[-1],
                                ODESettings(solver="heun", steps=args.steps), generator=generator)
    print(f"{args.model}: {args.num_images} test digits, Heun {args.steps} steps, "
          f"{PROBES} Rademacher probes; true scores have r >= -1")
    print("| sigma | r on the ODE trajectory | r at noisy digits | distance / (sigma sqrt D) |")
    print("|---:|---:|---:|---:|")
    for x, sigma in visited[::2]:
        noisy = digits + sigma * torch.randn(digits.shape, generator=generator)
        distance = float(((x - digits).flatten(1).norm(dim=1) / (sigma * math.sqrt(dims))).mean())
        print(f"| {sigma:.4f} | {contraction(net, x, sigma, generator):+.3f} | "
              f"{contraction(net, noisy, sigma, generator):+.3f} | {distance:.2f} |")
    bound = math.log(sigmas[-1] / sigmas[0])
    print(f"per dimension: change of log-density {float(result.delta_log_prob.mean()) / dims:.3f} "
          f"(true scores: <= ln(sigma_max / sigma_min) = {bound:.3f}), prior log-density "
          f"{float(result.prior_log_prob.mean()) / dims:.3f} (<= "
          f"{-0.5 * math.log(2 * math.pi * sigmas[-1] ** 2):.3f})")


if __name__ == "__main__":
    main()
