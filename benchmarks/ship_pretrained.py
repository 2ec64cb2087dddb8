"""Measure a trained run and ship its EMA model inside the package as ``pretrained:NAME``.

    .venv/bin/ncsn train --config mnist5k_pretrained --run-dir runs/pretrained
    .venv/bin/python benchmarks/ship_pretrained.py --run runs/pretrained --name mnist5k \
        --set sampling.eta=0.8 [--num-samples 1000]

The model's stored sampling choice is the run's config ``sampling`` section with ``--set``
overrides (the sampler that won on this model, docs/sampling.md). Its quality (the digit metric
of ``ncsn.eval.digits`` on ``--num-samples`` samples, seeds ``--seeds``) and the run's training
time and threads (from its metrics.jsonl) go into the spec's provenance with the config, the
commit and the commands; ``ncsn.nets.io.save_model`` adds the weights' SHA-256, checked on
every load. Writes ``src/ncsn/nets/pretrained_models/NAME.{safetensors,json}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from ncsn.config import config_to_dict, load_config, model_spec
from ncsn.eval.digits import digit_metrics
from ncsn.nets.io import save_model
from ncsn.nets.pretrained import pretrained_dir
from ncsn.sampling import ScoreModel, load

REPO = Path(__file__).resolve().parents[1]


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or "unknown"


def _training_record(run: Path) -> dict[str, Any]:
    """Seconds, steps and threads of the run (its metrics.jsonl)."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    timed = [x for x in lines if "elapsed_s" in x]
    threads = sorted({x["threads"] for x in lines if "threads" in x})
    return {"steps": timed[-1]["step"] if timed else None,
            "train_seconds": round(sum(_segments(lines)), 1), "threads": threads}


def _segments(lines: list[dict[str, Any]]) -> list[float]:
    """Wall seconds of each training segment (a resumed run restarts ``elapsed_s``)."""
    out, last = [], 0.0
    for x in lines:
        if x.get("event") in ("start", "resume") and last:
            out.append(last)
            last = 0.0
        last = x.get("elapsed_s", last)
    return [*out, last]


def quality(model: ScoreModel, num_samples: int, seeds: list[int]) -> dict[str, Any]:
    """Digit metric of the model's stored sampler, one row per sampling seed."""
    rows = []
    for seed in seeds:
        m = digit_metrics(model.sample(num_samples, seed=seed, batch_size=250))
        rows.append({k: round(float(m[k]), 4) for k in
                     ("digit_confident", "digit_kid", "digit_kid_std", "digit_balance")})
        rows[-1]["seed"] = seed
        print(f"seed {seed}: {rows[-1]}", flush=True)
    return {"num_samples": num_samples, "plan": model.plan().describe(), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--title", default="class-conditional MNIST digits (28x28), "
                                           "the mnist5k_pretrained preset")
    args = parser.parse_args()
    config = load_config(args.run / "config.yaml", args.overrides)
    trained = load(args.run)
    spec = model_spec(config, channels=trained.image_shape[0], image_size=trained.image_shape[1],
                      sigmas=trained.spec.sigmas)
    model = ScoreModel(trained.net, spec, trained.device)
    measured = quality(model, args.num_samples, args.seeds)
    sets = " ".join(f"--set {o}" for o in args.overrides)
    provenance = {
        "title": args.title, "commit": _commit(), "config": config_to_dict(config),
        "command": f"ncsn train --config mnist5k_pretrained --run-dir {args.run}",
        "ship_command": f"python benchmarks/ship_pretrained.py --run {args.run} --name "
                        f"{args.name} {sets}".strip(),
        "training": _training_record(args.run), "quality": measured,
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}",
    }
    out = save_model(pretrained_dir() / args.name,
                     trained.net, spec.model_copy(update={"provenance": provenance}))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
