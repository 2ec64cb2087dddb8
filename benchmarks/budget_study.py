"""Learning per CPU-second: variants of the demo recipe (`mnist5k_cpu`), each trained for the
same budget of 2-thread CPU time and scored with the in-repo digit metric.

    python benchmarks/budget_study.py rates --out runs/study        # idle box: steps/s, 2 threads
    python benchmarks/budget_study.py train --out runs/study --base-steps 2400 --jobs 2
    python benchmarks/budget_study.py score --out runs/study --num-samples 1000
    python benchmarks/budget_study.py table --out runs/study

The budget is fixed in compute but run in steps: `rates` measures each row's training steps per
second on 2 threads of the idle machine (after 15 warm-up steps, the median of 4 windows of
25 steps, the data pipeline and a plain 3x3 convolution timed beside it), and `train` gives
every row the time that ``--base-steps`` steps of the base row take (the demo's 2,400 steps,
232-240 s on 2 idle cores), i.e. ``base_steps * rate / base_rate`` steps. A row's weights
then depend only on its config and step count, not on the machine's load, so rows can train
side by side (`--jobs 2`, one thread each) and be re-run exactly. `score` samples each row's
model with its stored default (consistent annealed sampling, 10 network evaluations, eta 0.8;
balanced labels for the class-conditional rows) and reports the confident share +- its
binomial standard error, digit KID (std over 100 subsets) and, for conditional rows, the share
drawn as the asked digit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# name -> (what changes, --set overrides of the mnist5k_cpu config)
ROWS: dict[str, tuple[str, list[str]]] = {
    "base": ("the demo recipe of 2026-12-03 (UNetSmall ngf 16, ch_mult 1,2,4, batch 32, lr 2e-3, "
             "EMA 0.995, p_mean -0.6)",
             []),
    "ngf12": ("width: ngf 12", ["model.ngf=12"]),
    "ngf24": ("width: ngf 24", ["model.ngf=24"]),
    "blocks2": ("depth: 2 residual blocks per level", ["model.num_res_blocks=2"]),
    "mult122": ("ch_mult 1,2,2", ["model.ch_mult=[1,2,2]"]),
    "attention": ("self-attention (4 heads) at 7x7", ["model.attention_heads=4"]),
    "patch2": ("patch 2 (U-Net at 14x14), ngf 32", ["model.patch=2", "model.ngf=32"]),
    "cosine": ("lr warm-up 100 steps, cosine decay to 0.05 lr",
               ["training.warmup=100", "training.lr_decay=cosine", "training.lr_final=0.05"]),
    "lr4e-3_cosine": ("lr 4e-3, warm-up 100, cosine decay to 0.05 lr",
                      ["training.lr=4e-3", "training.warmup=100", "training.lr_decay=cosine",
                       "training.lr_final=0.05"]),
    "betas099": ("Adam betas 0.9, 0.99", ["training.betas=[0.9,0.99]"]),
    "batch16": ("batch 16", ["training.batch_size=16"]),
    "batch64": ("batch 64", ["training.batch_size=64"]),
    "clip1": ("gradient clipping to norm 1", ["training.grad_clip=1.0"]),
    "ema999": ("EMA rate 0.999", ["training.ema_rate=0.999"]),
    "ema_warmup": ("EMA warm-up: rate min(0.995, (1 + t) / (10 + t))",
                   ["training.ema_warmup=true"]),
    "power_ema": ("power-function EMA, gamma 6.94 (sigma_rel 0.10, Karras et al. 2024)",
                  ["training.ema_rate=null", "training.ema_gamma=6.94"]),
    "pmean-0.3": ("sigma distribution: log-normal p_mean -0.3", ["noise.p_mean=-0.3"]),
    "power_weight": ("loss weight sigma^2 (the paper's) instead of EDM's",
                     ["training.weighting=power"]),
    "shift1": ("augmentation: random shifts of up to 1 pixel", ["data.max_shift=1"]),
    "uncond": ("unconditional (model.num_classes 0)", ["model.num_classes=0"]),
    "ncsnpp": ("NCSN++ (score_sde), nf 16, ch_mult 1,2,2, 1 block, attention at 7x7, "
               "unconditional, sigma^2 weight",
               ["model={name: ncsnpp, nf: 16, ch_mult: [1, 2, 2], num_res_blocks: 1, "
                "attn_resolutions: [7], dropout: 0.0, fourier_scale: 16.0}",
                "training.weighting=power"]),
}
# throughput-only variants of the base row (same learning, other speed)
SPEED_ROWS: dict[str, tuple[str, list[str]]] = {
    "threads1": ("1 thread", []),
    "channels_last": ("channels_last memory format", ["training.channels_last=true"]),
    "compile": ("torch.compile (inductor)", ["training.compile=true"]),
}
# rows whose network and batch are the base row's: their steps cost the same, so they share one
# rate (the median of their measured rates, which is steadier than any one measurement)
SAME_COMPUTE = {"base", "cosine", "lr4e-3_cosine", "betas099", "clip1", "ema999", "ema_warmup",
                "power_ema", "pmean-0.3", "power_weight", "shift1", "uncond"}
# a row "NAME@S" is row NAME trained with seed S (training.seed; the others use the config's 0)
# the study's base is the demo recipe of 2026-12-03 (p_mean -0.6; the demo moved to -0.3, the
# `pmean-0.3` row, after this study), so every row keeps -0.6 unless it overrides it
STUDY_RECIPE = ["noise.p_mean=-0.6"]
COMMON = ["training.test_freq=0", "training.log_freq=1000000", "training.keep_last=1",
          "training.sample_freq=0", *STUDY_RECIPE]


def _overrides(name: str) -> list[str]:
    """The --set overrides of row ``name`` ("NAME" or the seed replicate "NAME@S")."""
    base, _, seed = name.partition("@")
    return [*{**ROWS, **SPEED_ROWS}[base][1], *([f"training.seed={int(seed)}"] if seed else [])]


def _config(name: str, threads: int, n_iters: int):
    from ncsn.config import load_config

    overrides = _overrides(name)
    return load_config("mnist5k_cpu", [*COMMON, *overrides, f"training.threads={threads}",
                                       f"training.n_iters={n_iters}",
                                       f"training.snapshot_freq={n_iters}"])


def _conv_gflops(batch: int = 32, width: int = 32, size: int = 28) -> float:
    """GFLOP/s of a plain 3x3 convolution, forward and backward, at this thread count."""
    conv = torch.nn.Conv2d(width, width, 3, padding=1)
    x = torch.randn(batch, width, size, size, requires_grad=True)
    flop = 3 * 2 * batch * width * width * 9 * size * size  # forward + 2 backward products
    for _ in range(3):
        conv(x).sum().backward()
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        conv(x).sum().backward()
    return flop * reps / (time.perf_counter() - start) / 1e9


def rate_one(name: str, threads: int) -> dict[str, float]:
    """Steps/s of row ``name`` (median of 4 windows of 25 steps after 15 warm-up steps), the
    data pipeline's share, FLOP per step and the plain-convolution reference."""
    import tempfile

    from torch.utils.flop_counter import FlopCounterMode

    from ncsn.training import Trainer

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(_config(name, threads, 10_000), Path(tmp) / "run", progress=False)
        params = sum(p.numel() for p in trainer.net.parameters())
        with FlopCounterMode(display=False) as counter:
            trainer._loss().backward()
        flop = counter.get_total_flops()
        for _ in range(15):
            trainer.train_step()
        windows = []
        for _ in range(4):
            start = time.perf_counter()
            for _ in range(25):
                trainer.train_step()
            windows.append(25 / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(25):
            trainer._global_batch()
        data_s = (time.perf_counter() - start) / 25
        trainer._release_lock()
    rate = statistics.median(windows)
    return {"steps_per_s": rate, "data_share": data_s * rate, "params": params,
            "gflop_per_step": flop / 1e9, "gflop_per_s": flop / 1e9 * rate,
            "conv_gflop_per_s": _conv_gflops(), "threads": threads}


def _child(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)


def rates(out: Path, rows: list[str], threads: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "rates.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    for name in rows:
        row_threads = 1 if name == "threads1" else threads
        done = _child([__file__, "rate-one", name, "--threads", str(row_threads)])
        if done.returncode:
            print(f"{name}: failed\n{done.stderr[-2000:]}")
            continue
        found[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, found[name], flush=True)
        path.write_text(json.dumps(found, indent=1))


def budget_steps(out: Path, base_steps: int) -> dict[str, int]:
    """Each row's steps: ``base_steps`` of the base row scaled by the row's measured speed
    relative to the base row's (the shared rate of :data:`SAME_COMPUTE`)."""
    found = json.loads((out / "rates.json").read_text())
    base = statistics.median(found[n]["steps_per_s"] for n in SAME_COMPUTE if n in found)
    return {name: round(base_steps * (base if name in SAME_COMPUTE else r["steps_per_s"]) / base)
            for name, r in found.items()}


def _row_steps(found: dict[str, int], name: str) -> int:
    """A seed replicate "NAME@S" trains as many steps as row NAME; a row of the base row's
    compute (:data:`SAME_COMPUTE`) needs no rate of its own."""
    row = name.partition("@")[0]
    return found[row] if row in found or row not in SAME_COMPUTE else found["base"]


def train_rows(out: Path, rows: list[str], base_steps: int, jobs: int, threads: int,
               steps_override: int | None = None) -> None:
    """Train ``rows`` side by side (``jobs`` at a time), each for its budget or, given
    ``steps_override``, that many steps (seed replicates of a row trained in another session)."""
    found = budget_steps(out, base_steps)
    pending = [name for name in rows if not (out / name / "model_ema.safetensors").exists()]
    running: list[tuple[str, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            steps = steps_override or _row_steps(found, name)
            overrides = [*COMMON, *_overrides(name), f"training.threads={threads}",
                         f"training.n_iters={steps}", f"training.snapshot_freq={min(steps, 500)}"]
            cmd = [sys.executable, "-m", "ncsn", "train", "--config", "mnist5k_cpu",
                   "--run-dir", str(out / name), "--no-progress"]
            cmd += ["--resume"] if (out / name).exists() else []
            for item in overrides:
                cmd += ["--set", item]
            (out / f"{name}.cmd").write_text(" ".join(cmd[1:]) + "\n")
            log = (out / f"{name}.log").open("a")
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=log, env=env)))
            print(f"{name}: {steps} steps", flush=True)
        time.sleep(2)
        for name, proc in list(running):
            if proc.poll() is not None:
                print(f"{name}: exit {proc.returncode}", flush=True)
                running.remove((name, proc))


def digit_scores(model, num_samples: int, seed: int) -> dict:
    """``num_samples`` of ``model``'s stored sampler (balanced labels for a class-conditional
    model) scored by the digit metric: confident share +- its binomial standard error, digit KID
    (std over subsets) and the share drawn as the asked digit."""
    from ncsn.eval.digits import digit_metrics

    labels = model.class_labels(None, num_samples)
    images = model.sample(num_samples, seed=seed, batch_size=250)
    m = digit_metrics(images, labels=labels)
    share = m["digit_confident"]
    return {"confident": share, "confident_se": (share * (1 - share) / num_samples) ** 0.5,
            "kid": m["digit_kid"], "kid_std": m["digit_kid_std"], "asked": m.get("digit_asked"),
            "num_samples": num_samples, "seed": seed}


def score(out: Path, rows: list[str], num_samples: int, seed: int) -> None:
    import ncsn

    path = out / "scores.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    for name in rows:
        if name in found or not (out / name / "model_ema.safetensors").exists():
            continue
        found[name] = digit_scores(ncsn.load(out / name), num_samples, seed)
        print(name, found[name], flush=True)
        path.write_text(json.dumps(found, indent=1))


def table(out: Path, base_steps: int) -> None:
    rates_found = json.loads((out / "rates.json").read_text())
    steps = budget_steps(out, base_steps)
    scores = json.loads((out / "scores.json").read_text()) if (out / "scores.json").exists() \
        else {}
    print("| row | change | parameters | steps/s | steps | GFLOP/s (conv) "
          "| confident | digit KID (std) | asked digit |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (what, _) in {**ROWS, **SPEED_ROWS}.items():
        if name not in rates_found and not (name in SAME_COMPUTE and name in scores):
            continue
        # a row of the base row's compute, trained but not timed, costs what the base row does
        r, s = rates_found.get(name, rates_found["base"]), scores.get(name)
        quality = "| | |" if s is None else (
            f"| {s['confident']:.3f} +- {s['confident_se']:.3f} | {s['kid']:.3f} "
            f"({s['kid_std']:.3f}) | " + ("" if s["asked"] is None else f"{s['asked']:.3f}"))
        print(f"| {name} | {what} | {r['params']:,} | {r['steps_per_s']:.1f} | "
              f"{steps.get(name, steps['base']):,} | {r['gflop_per_s']:.0f} "
              f"({r['conv_gflop_per_s']:.0f}) {quality} |")
    replicates: dict[str, list[dict]] = {}
    for name, s in scores.items():
        if "@" in name:
            replicates.setdefault(name.partition("@")[0], []).append({**s, "name": name})
    if replicates:
        print("\n| row | training seeds | confident per seed | mean +- sd | digit KID per seed "
              "| mean +- sd |")
        print("|---|---|---|---:|---|---:|")
    for base, runs in replicates.items():
        runs.sort(key=lambda s: int(s["name"].partition("@")[2]))
        conf, kid = [s["confident"] for s in runs], [s["kid"] for s in runs]
        seeds = ", ".join(s["name"].partition("@")[2] for s in runs)
        print(f"| {base} | {seeds} | {', '.join(f'{c:.3f}' for c in conf)} | "
              f"{statistics.mean(conf):.3f} +- {statistics.stdev(conf):.3f} | "
              f"{', '.join(f'{k:.3f}' for k in kid)} | "
              f"{statistics.mean(kid):.3f} +- {statistics.stdev(kid):.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["rates", "rate-one", "train", "score", "table"])
    p.add_argument("rows", nargs="*", help="rows (default: all)")
    p.add_argument("--out", type=Path, default=Path("runs/study"))
    p.add_argument("--base-steps", type=int, default=2400,
                   help="the budget: this many steps of the base row (the demo's 2,400 steps: "
                        "232-240 s on the 2 idle cores)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads (rates: 2; train: 1 per job)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--steps", type=int, default=None,
                   help="train: this many steps per row instead of the budget")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_intermixed_args()
    if a.action == "rate-one":
        print(json.dumps(rate_one(a.rows[0], a.threads or 2)))
        return
    rows = a.rows or list(ROWS) + (list(SPEED_ROWS) if a.action == "rates" else [])
    if a.action == "rates":
        rates(a.out, rows, a.threads or 2)
    elif a.action == "train":
        train_rows(a.out, rows, a.base_steps, a.jobs, a.threads or 1, a.steps)
    elif a.action == "score":
        score(a.out, rows, a.num_samples, a.seed)
    else:
        table(a.out, a.base_steps)


if __name__ == "__main__":
    main()
