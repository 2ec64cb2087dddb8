"""Record the compatibility references of tests/test_compat.py (run once, from the repository
root, with the code whose behaviour must be kept):

    .venv/bin/python tests/data/compat/record.py

Writes beside this file: two tiny model files as ncsn wrote them at commit 45bc4f9
(``continuous``: UNetSmall with EDM preconditioning, ``discrete``: CondRefineNetDilated on 3
trained levels with a stored annealed-Langevin choice, ``legacy``: the discrete model's spec in
the oldest form, annealed-Langevin settings at the top of ``sampling``), and ``hashes.json``: the
SHA-256 of the uint8 images that ``ScoreModel.sample`` / ``ScoreModel.inpaint`` returned for
every sampler (1 intra-op thread). The weights are drawn from fixed seeds; nothing is trained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

import ncsn
from ncsn.imageio import to_uint8
from ncsn.nets import build_network
from ncsn.nets.io import save_model

HERE = Path(__file__).resolve().parent
SIGMAS = [8.0, 2.0, 0.5, 0.1, 0.02]
CONTINUOUS = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2,
              "precond": "edm", "sigma_data": 0.5, "data_mean": 0.5}
DISCRETE = {"name": "cond_refinenet", "ngf": 4}
# (label, sampler, keyword arguments of ScoreModel.sample) for the continuous model
CONTINUOUS_RUNS = [
    ("default", None, {}),
    ("annealed_langevin", "annealed_langevin", {"nfe": 30, "step_size": "auto",
                                                "final_denoise": True}),
    ("consistent_annealed", "consistent_annealed", {"nfe": 12}),
    ("consistent_annealed_eta", "consistent_annealed", {"nfe": 12, "eta": 0.8,
                                                         "schedule": "karras", "rho": 5.0}),
    ("predictor_corrector", "predictor_corrector", {"nfe": 12, "snr": 0.2}),
    ("probability_flow_ode", "probability_flow_ode", {"nfe": 11}),
    ("edm", "edm", {"nfe": 11, "s_churn": 10.0}),
    ("dpm_solver_2m", "dpm_solver_2m", {"nfe": 10, "schedule": "geometric"}),
]
DISCRETE_RUNS = [
    ("default", None, {}),
    ("consistent_annealed", "consistent_annealed", {"nfe": 6}),
    ("predictor_corrector", "predictor_corrector", {}),
]


def digest(images: torch.Tensor) -> str:
    """SHA-256 of the images as uint8 (N, H, W, C)."""
    return hashlib.sha256(to_uint8(images).tobytes()).hexdigest()


def write_models() -> None:
    torch.manual_seed(0)
    sigmas = torch.tensor(SIGMAS)
    net = build_network(CONTINUOUS, channels=1, image_size=8, sigmas=sigmas)
    save_model(HERE / "continuous", net, {
        "network": CONTINUOUS, "channels": 1, "image_size": 8, "sigmas": SIGMAS,
        "sampling": {"sampler": "consistent_annealed", "schedule": None, "nfe": 8,
                     "num_levels": None, "rho": 7.0, "settings": {"eta": 0.6}, "logit": False}})
    torch.manual_seed(1)
    levels = [1.0, 0.3, 0.05]
    net = build_network(DISCRETE, channels=1, image_size=8, sigmas=torch.tensor(levels))
    save_model(HERE / "discrete", net, {
        "network": DISCRETE, "channels": 1, "image_size": 8, "sigmas": levels,
        "sampling": {"sampler": "annealed_langevin", "schedule": None, "nfe": None,
                     "num_levels": None, "rho": 7.0,
                     "settings": {"n_steps_each": 3, "step_size": 1e-4,
                                  "convention": "official"}, "logit": False}})
    spec = json.loads((HERE / "discrete.json").read_text())
    spec["sampling"] = {"n_steps_each": 2, "step_size": 5e-5, "convention": "paper",
                        "final_denoise": True}
    (HERE / "legacy.json").write_text(json.dumps(spec, indent=2) + "\n")
    (HERE / "legacy.safetensors").write_bytes((HERE / "discrete.safetensors").read_bytes())


def main() -> None:
    torch.set_num_threads(1)
    write_models()
    hashes: dict[str, str] = {}
    for stem, runs in (("continuous", CONTINUOUS_RUNS), ("discrete", DISCRETE_RUNS),
                       ("legacy", [("default", None, {})])):
        model = ncsn.load(HERE / stem)
        for label, sampler, kwargs in runs:
            images = model.sample(6, sampler=sampler, seed=3, batch_size=6, **kwargs)
            hashes[f"{stem}/sample/{label}"] = digest(images)
        observed = model.sample(2, seed=5)
        done = model.inpaint(observed, "right", k=2, seed=7, batch_size=3)
        hashes[f"{stem}/inpaint/default"] = digest(done)
    (HERE / "hashes.json").write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(hashes)} hashes to {HERE / 'hashes.json'}")


if __name__ == "__main__":
    main()
