"""Sampler cost vs accuracy on the paper's 2-D mixture with exact scores (no network).

Run: .venv/bin/python benchmarks/samplers.py [--num-samples 4000] [--seed 0]
Every sampler starts from exact draws of the data perturbed at sigma = 20 (so only the sampler's
own error shows) and anneals to sigma = 0.01, then to the data (Tweedie's denoising step for
annealed Langevin, the noise-free last step of predictor-corrector and of the ODE). Printed
per sampler: score evaluations per sample, fraction in the (-5,-5) mode (truth 0.2), sliced
Wasserstein-1 distance to exact samples (exact vs exact of the same size gives the noise floor),
and wall time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from ncsn.core.noise import geometric_sigmas, karras_sigmas
from ncsn.core.samplers import annealed_langevin, predictor_corrector, probability_flow_heun
from ncsn.core.toy import paper_mixture
from ncsn.experiments.toy import mode_fraction, sliced_wasserstein

SIGMA_MAX, SIGMA_MIN = 20.0, 0.01


def _fixed() -> torch.Generator:
    """The same projection directions for every distance."""
    return torch.Generator().manual_seed(123)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mix = paper_mixture()
    gen = torch.Generator().manual_seed(args.seed)
    exact = mix.sample(args.num_samples, gen)
    floor = mix.sample(args.num_samples, gen)
    prior = mix.perturbed(SIGMA_MAX).sample(args.num_samples, gen)

    def annealed(levels: int, steps: int, eps: float) -> Callable[[], torch.Tensor]:
        sigmas = geometric_sigmas(SIGMA_MAX, SIGMA_MIN, levels)
        return lambda: annealed_langevin(mix, prior, sigmas, steps, eps, final_denoise=True,
                                         generator=torch.Generator().manual_seed(1))

    def pc(levels: int, correctors: int) -> Callable[[], torch.Tensor]:
        sigmas = geometric_sigmas(SIGMA_MAX, SIGMA_MIN, levels)
        return lambda: predictor_corrector(mix, prior, sigmas, n_corrector=correctors,
                                           generator=torch.Generator().manual_seed(1))

    def ode(levels: int) -> Callable[[], torch.Tensor]:
        sigmas = karras_sigmas(SIGMA_MAX, SIGMA_MIN, levels)
        return lambda: probability_flow_heun(mix, prior, sigmas)

    runs = [
        ("annealed Langevin, L=10, T=100, eps=2e-5", 10 * 100 + 1, annealed(10, 100, 2e-5)),
        ("annealed Langevin, L=10, T=10, eps=2e-5", 10 * 10 + 1, annealed(10, 10, 2e-5)),
        ("predictor-corrector, L=100, 1 corrector", 100 * 2, pc(100, 1)),
        ("predictor-corrector, L=20, 1 corrector", 20 * 2, pc(20, 1)),
        ("probability-flow ODE (Heun), 18 EDM levels", 2 * 18 - 1, ode(18)),
        ("probability-flow ODE (Heun), 8 EDM levels", 2 * 8 - 1, ode(8)),
    ]
    print(f"{args.num_samples} samples, exact scores of 0.2 N((-5,-5), I) + 0.8 N((5,5), I); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"| sampler | evaluations | mode fraction (0.2) | SW1 to exact (floor "
          f"{sliced_wasserstein(floor, exact, generator=_fixed()):.3f}) | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, evaluations, run in runs:
        start = time.perf_counter()
        x = run()
        seconds = time.perf_counter() - start
        print(f"| {name} | {evaluations} | {mode_fraction(x):.3f} | "
              f"{sliced_wasserstein(x, exact, generator=_fixed()):.3f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
