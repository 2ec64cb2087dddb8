"""Post-hoc EMA on the demo recipe (Karras et al. 2024, Sec. 3.2): one training run of
`mnist5k_cpu` that also writes power-function EMA snapshots (the paper's gammas 16.97 and 6.94,
every 100 steps), then EMAs of several lengths reconstructed from them and scored with the
in-repo digit metric beside the run's own model_ema (constant rate 0.995, the demo's).

    python benchmarks/posthoc_ema.py train --out runs/posthoc      # one thread, 2,400 steps
    python benchmarks/posthoc_ema.py score --out runs/posthoc --num-samples 1000
    python benchmarks/posthoc_ema.py overhead                      # per-step cost of the EMAs
    python benchmarks/posthoc_ema.py table --out runs/posthoc

`score` writes each reconstruction with ``ncsn posthoc-ema`` into ``<out>/posthoc/sr<100 S>`` and
samples 1,000 digits from it with its stored sampler (consistent annealed sampling, 10
evaluations, eta 0.8; balanced labels; seed 0), like benchmarks/budget_study.py: the confident
share +- its binomial standard error, digit KID (std over 100 subsets), the share drawn as the
asked digit. `overhead` times, on the demo network, one training step and one update of the
two extra EMAs (medians of 5 windows of 20 calls, one thread) and one snapshot write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIGMA_RELS = (0.02, 0.05, 0.08, 0.10, 0.15, 0.20)
EVERY = 100


def train_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "ncsn", "train", "--config", "mnist5k_cpu", "--run-dir",
            str(out / "run"), "--no-progress", "--set", "training.threads=1", "--set",
            f"training.posthoc_ema={{every: {EVERY}}}"]


def train(out: Path) -> None:
    command = train_command(out)
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def score(out: Path, num_samples: int, seed: int) -> None:
    from budget_study import digit_scores  # the study's scoring (same folder)

    import ncsn
    from ncsn.cli import main as ncsn_main

    path = out / "scores.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    models = {"model_ema": out / "run" / "model_ema"}
    for sigma_rel in SIGMA_RELS:
        stem = out / "posthoc" / f"sr{sigma_rel * 100:03.0f}"  # sr008: 0.08
        if not stem.with_suffix(".safetensors").exists():
            assert ncsn_main(["posthoc-ema", str(out / "run"), "--sigma-rel", str(sigma_rel),
                              "--out", str(stem)]) == 0
        models[f"sigma_rel {sigma_rel:.2f}"] = stem
    for name, stem in models.items():
        if name in found:
            continue
        model = ncsn.load(stem)
        found[name] = {**digit_scores(model, num_samples, seed),
                       "profile_error": model.spec.provenance.get("posthoc_ema", {}).get(
                           "profile_error")}
        print(name, found[name], flush=True)
        path.write_text(json.dumps(found, indent=1))


def _median_seconds(call, windows: int = 5, calls: int = 20) -> float:
    times = []
    for _ in range(windows):
        began = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - began) / calls)
    return statistics.median(times)


def overhead() -> None:
    import torch

    from ncsn.config import load_config
    from ncsn.training import Trainer

    torch.set_num_threads(1)
    config = load_config("mnist5k_cpu", ["training.threads=1", "training.test_freq=0",
                                         f"training.posthoc_ema={{every: {EVERY}}}"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run", progress=False)
        for _ in range(10):  # warm-up
            trainer.train_step()
        step = _median_seconds(trainer.train_step)
        updates = _median_seconds(lambda: [e.update(trainer.net, trainer.step)
                                           for e in trainer.posthoc])
        began = time.perf_counter()
        trainer.write_posthoc_snapshots()
        write = time.perf_counter() - began
        size = sum(p.stat().st_size for p in (Path(tmp) / "run" / "posthoc_ema").iterdir())
        trainer._release_lock()
    params = sum(p.numel() for p in trainer.net.parameters())
    print(json.dumps({"parameters": params, "train_step_s": step, "two_ema_updates_s": updates,
                      "overhead": updates / step, "snapshot_write_s": write,
                      "snapshot_bytes_per_step": size}, indent=1))


def table(out: Path) -> None:
    scores = json.loads((out / "scores.json").read_text())
    print("| model | profile error | confident | digit KID (std) | asked digit |")
    print("|---|---:|---:|---:|---:|")
    for name, s in scores.items():
        error = f"{s['profile_error']:.2%}" if s.get("profile_error") is not None else ""
        print(f"| {name} | {error} | {s['confident']:.3f} +- {s['confident_se']:.3f} "
              f"| {s['kid']:.3f} ({s['kid_std']:.3f}) | {s['asked']:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["train", "score", "overhead", "table"])
    p.add_argument("--out", type=Path, default=Path("runs/posthoc"))
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.action == "train":
        train(a.out)
    elif a.action == "score":
        score(a.out, a.num_samples, a.seed)
    elif a.action == "overhead":
        overhead()
    else:
        table(a.out)


if __name__ == "__main__":
    main()
