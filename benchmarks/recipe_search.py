"""The search behind the demo recipe: train UNetSmall on the embedded mnist5k digits with one
noise recipe, in a plain loop over the library's pieces, and save the EMA model.

    .venv/bin/python benchmarks/recipe_search.py --out runs/search/I --sigma-max 15.6 \\
        --dist log_normal --precond edm --edm-weight --p-mean -0.6 --bs 32 --steps 2400
    .venv/bin/python benchmarks/samplers.py --model runs/search/I/model_ema --num-samples 200 \\
        --nfe 35 --samplers edm consistent_annealed dpm_solver_2m

Batches are drawn with replacement from one seeded generator (simpler than the trainer's
epochs; the same arguments give the same weights for the same thread count). The rows of
docs/training.md, "How the demo recipe was chosen", name their arguments.
"""

from __future__ import annotations

import argparse
import time

import torch

from ncsn.core.losses import dsm_loss
from ncsn.core.noise import draw_sigmas, geometric_sigmas
from ncsn.data import apply_train_transforms, load_dataset, to_float
from ncsn.nets import build_network
from ncsn.nets.io import save_model
from ncsn.spec.model import ModelSpec
from ncsn.training.ema import EMA


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--dist", default="discrete", choices=["discrete", "log_uniform",
                                                          "log_normal"])
    p.add_argument("--precond", default="ncsnv2", choices=["ncsnv2", "edm"])
    p.add_argument("--sigma-data", type=float, default=0.5)
    p.add_argument("--data-mean", type=float, default=0.5)
    p.add_argument("--edm-weight", action="store_true")
    p.add_argument("--sigma-max", type=float, default=1.0)
    p.add_argument("--sigma-min", type=float, default=0.01)
    p.add_argument("--p-mean", type=float, default=-1.2)
    p.add_argument("--p-std", type=float, default=1.2)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--ch-mult", default="1,2,4")
    p.add_argument("--patch", type=int, default=1)
    p.add_argument("--nrb", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    train = load_dataset("mnist5k", "train")
    sigmas = geometric_sigmas(a.sigma_max, a.sigma_min, 10)
    ch_mult = [int(c) for c in a.ch_mult.split(",")]
    network = {"name": "unet_small", "ngf": a.ngf, "ch_mult": ch_mult, "patch": a.patch,
               "num_res_blocks": a.nrb, "precond": a.precond, "sigma_data": a.sigma_data,
               "data_mean": a.data_mean}
    net = build_network(network, channels=1, image_size=28, sigmas=sigmas)
    ema = EMA(net, a.ema)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(0)
    began, losses = time.perf_counter(), []
    for step in range(a.steps):
        idx = torch.randint(0, train.shape[0], (a.bs,), generator=gen)
        x = apply_train_transforms(to_float(train[idx]), dequantize=True, hflip=False,
                                   logit=False, generator=gen)
        if a.dist == "discrete":
            loss = dsm_loss(net, x, sigmas, generator=gen)
        else:
            sigma = draw_sigmas(a.bs, a.dist, sigma_min=a.sigma_min, sigma_max=a.sigma_max,
                                p_mean=a.p_mean, p_std=a.p_std, generator=gen)
            loss = dsm_loss(net, x, sigma=sigma, generator=gen,
                            sigma_data=a.sigma_data if a.edm_weight else None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(net)
        losses.append(loss.item())
        if (step + 1) % 200 == 0:
            print(f"step {step + 1} loss {sum(losses[-200:]) / 200:.4f} "
                  f"{time.perf_counter() - began:.0f}s", flush=True)
    spec = ModelSpec(network=network, channels=1, image_size=28, sigmas=tuple(sigmas.tolist()),
                     provenance={"recipe": vars(a)})
    save_model(f"{a.out}/model_ema", ema.model, spec)
    print(f"done in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
