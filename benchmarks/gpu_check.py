"""One command that checks ncsn's GPU paths and prints one pass/fail table (docs/training.md,
"GPU check"); issue 12.

    python benchmarks/gpu_check.py [--quick] [--steps 10] [--out table.md]

On a CUDA machine: trains the paper's MNIST and CIFAR-10 networks (CondRefineNetDilated ngf 64
on 1x28x28 and ngf 128 on 3x32x32, batch 128, synthetic images through the real trainer) in
fp32, bf16 autocast, compile and channels_last (steps/s, peak memory, first loss against fp32's),
beside a CPU fp32 step (timed at batch 8, scaled to 128); resumes a CPU checkpoint on the GPU
and that one back on the CPU; runs ``ncsn sample`` and ``ncsn inpaint`` with ``--device cuda``;
compares Inception features on CUDA with the CPU's, TF32 off and on. Without CUDA, the CUDA rows
are skipped with the reason and the CPU-safe rows run (``--quick``: tiny networks, compile
with the aot_eager backend; ``tests/test_gpu_check.py`` runs that). Exit status 1 if a row fails.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ncsn.training.trainer as trainer_module
from ncsn.cli import main as ncsn_cli
from ncsn.config import Config, validate_config
from ncsn.errors import UserError
from ncsn.eval.features import InceptionExtractor
from ncsn.training import Trainer

MODES: dict[str, dict[str, bool]] = {"fp32": {}, "bf16 autocast": {"amp": True},
                                     "compile": {"compile": True},
                                     "channels_last": {"channels_last": True}}
# largest relative difference of the first training loss from fp32's that passes
LOSS_TOLERANCE = {"bf16 autocast": 0.05, "compile": 0.01, "channels_last": 0.01}
# largest max|f_cuda - f_cpu| / max|f_cpu| of Inception features that passes
FEATURE_TOLERANCE = {"off": 1e-3, "on": 2e-2}
CPU_TIMED_BATCH = 8


@dataclass(frozen=True)
class Net:
    """A network size to train: CondRefineNetDilated ``ngf`` on ``channels`` x ``size``^2."""

    name: str
    channels: int
    size: int
    ngf: int
    batch: int


PAPER = (Net("mnist", 1, 28, 64, 128), Net("cifar10", 3, 32, 128, 128))
TINY = (Net("mnist-tiny", 1, 8, 4, 8), Net("cifar10-tiny", 3, 8, 4, 8))


@dataclass
class Row:
    check: str
    device: str
    result: str  # pass | fail | skip
    detail: str


class Skipped(Exception):
    """A row that cannot run here; the message says why."""


def write_images(root: Path, channels: int, size: int, n: int = 160) -> Path:
    """A deterministic folder data set (train/ and test/ PNGs) of random images."""
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        pixels = (torch.rand(n, size, size, channels, generator=gen) * 255).to(torch.uint8)
        for k, image in enumerate(pixels.numpy()):
            Image.fromarray(image[..., 0] if channels == 1 else image).save(
                root / split / f"{k:03d}.png")
    return root


def config_for(net: Net, data: Path, device: str, n_iters: int, batch: int | None = None,
               **training: bool) -> Config:
    return validate_config({
        "data": {"name": "folder", "root": str(data), "channels": net.channels},
        "model": {"name": "cond_refinenet", "ngf": net.ngf},
        "noise": {"sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10},
        "training": {"batch_size": batch or net.batch, "n_iters": n_iters,
                     "snapshot_freq": n_iters, "log_freq": n_iters, "device": device,
                     **training},
        "sampling": {"n_steps_each": 2, "step_size": "auto", "num_samples": 4}})


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_training(config: Config, steps: int) -> dict[str, float]:
    """First loss, steps/s over ``steps`` steps after a warm-up step, peak CUDA memory (GiB)."""
    device = config.training.device
    with tempfile.TemporaryDirectory() as run_dir:
        tr = Trainer(config, run_dir, progress=False)
        first = tr.train_step()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        start = time.perf_counter()
        losses = [tr.train_step() for _ in range(steps)]
        _sync(device)
        seconds = time.perf_counter() - start
    if not all(math.isfinite(v) for v in [first, *losses]):
        raise RuntimeError(f"non-finite loss: {[first, *losses]}")
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else math.nan
    return {"first_loss": first, "steps_per_s": steps / seconds, "peak_gib": peak}


@contextlib.contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    before = trainer_module.COMPILE_BACKEND
    trainer_module.COMPILE_BACKEND = backend
    try:
        yield
    finally:
        trainer_module.COMPILE_BACKEND = before


class GpuCheck:
    """Runs the rows; ``quick`` uses tiny networks (the CPU-safe run of the test suite)."""

    def __init__(self, work: Path, *, quick: bool, steps: int,
                 nets: tuple[Net, ...] | None = None, modes: tuple[str, ...] = tuple(MODES)
                 ) -> None:
        self.work, self.quick, self.steps, self.modes = work, quick, steps, modes
        self.nets = nets or (TINY if quick else PAPER)
        self.cuda = torch.cuda.is_available()
        self.rows: list[Row] = []
        self.fp32_loss: dict[tuple[str, str], float] = {}

    def row(self, check: str, device: str, fn: Callable[[], str]) -> None:
        try:
            if "cuda" in device and not self.cuda:
                raise Skipped("no CUDA device")
            result, detail = "pass", fn()
        except Skipped as why:
            result, detail = "skip", str(why)
        except Exception as err:  # a failed row is reported, the others still run
            result, detail = "fail", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        self.rows.append(Row(check, device, result, detail))

    # ------------------------------------------------------------------ training
    def train(self, net: Net, mode: str, device: str) -> str:
        data = self.work / f"data-{net.channels}x{net.size}"
        if not data.is_dir():
            write_images(data, net.channels, net.size)
        batch = None
        if device == "cpu":
            if mode == "bf16 autocast":
                raise Skipped("training.amp is CUDA-only (refused on the CPU)")
            if mode != "fp32" and not self.quick:
                raise Skipped("the CPU figure is fp32 only")
            batch = min(net.batch, CPU_TIMED_BATCH)
        backend = "aot_eager" if device == "cpu" else "inductor"
        config = config_for(net, data, device, 1 + self.steps, batch, **MODES[mode])
        with compile_backend(backend):
            r = time_training(config, self.steps if device == "cuda" else 1)
        scale = (batch or net.batch) / net.batch
        detail = f"{r['steps_per_s'] * scale:.3g} steps/s at batch {net.batch}"
        if scale != 1:
            detail += f" (est. from batch {batch})"
        if device == "cuda":
            detail += f", peak {r['peak_gib']:.2f} GiB"
        if mode == "compile":
            detail += f", backend {backend}"
        if mode == "fp32":
            self.fp32_loss[(net.name, device)] = r["first_loss"]
        elif (net.name, device) in self.fp32_loss:
            rel = abs(r["first_loss"] / self.fp32_loss[(net.name, device)] - 1)
            detail += f", first loss {rel:.1e} from fp32's"
            if rel > LOSS_TOLERANCE[mode]:
                raise RuntimeError(f"{detail}: above {LOSS_TOLERANCE[mode]}")
        return detail

    # ------------------------------------------------------------------ resume, sample, inpaint
    def tiny_data(self) -> Path:
        data = self.work / "data-tiny"
        return data if data.is_dir() else write_images(data, 1, 8)

    def tiny_run(self) -> Path:
        """A 2-step CPU run of the tiny MNIST network (its model samples and inpaints)."""
        run = self.work / "tiny-run"
        if not run.is_dir():
            with contextlib.redirect_stdout(io.StringIO()):
                trainer_module.train(config_for(TINY[0], self.tiny_data(), "cpu", 2), run,
                                     progress=False)
        return run

    def resume(self, devices: tuple[str, str]) -> str:
        """Resume the tiny run's last checkpoint on ``devices[1]`` after ``devices[0]``."""
        run, data = self.work / f"resume-{devices[0]}-{devices[1]}", self.tiny_data()
        messages = io.StringIO()
        with contextlib.redirect_stdout(messages):
            for k, device in enumerate(devices):
                trainer_module.train(config_for(TINY[0], data, device, 2 * (k + 1)), run,
                                     resume=k > 0, progress=False)
        said = "re-seeded" in messages.getvalue()
        if said != (devices[0] != devices[1]):
            raise RuntimeError(f"re-seed message {'given' if said else 'missing'}")
        return f"{devices[0]} checkpoint resumed on {devices[1]}" + (", re-seeded" if said else "")

    def cli(self, command: str, device: str) -> str:
        run, out = self.tiny_run(), self.work / f"{command}-{device}"
        images = sorted((self.tiny_data() / "test").glob("*.png"))[:2]
        args = {"sample": ["-n", "4"],
                "inpaint": ["--images", *map(str, images), "-k", "2"]}[command]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = ncsn_cli([command, str(run), "--out", str(out), "--device", device,
                               "--no-progress", *args])
        if status != 0 or not (out / "grid.png").is_file():
            raise RuntimeError(f"ncsn {command} exited {status}")
        return f"ncsn {command} --device {device}: exit 0, grid.png written"

    # ------------------------------------------------------------------ Inception
    def inception(self, tf32: str) -> str:
        images = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        try:
            cpu, _ = InceptionExtractor(device="cpu")(images)
        except UserError as err:
            raise Skipped(str(err)) from None
        flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32 == "on"
        try:
            cuda, _ = InceptionExtractor(device="cuda")(images)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
        rel = float(np.abs(cuda - cpu).max() / np.abs(cpu).max())
        detail = f"max |f_cuda - f_cpu| / max |f_cpu| = {rel:.1e}"
        if rel > FEATURE_TOLERANCE[tf32]:
            raise RuntimeError(f"{detail}, above {FEATURE_TOLERANCE[tf32]}")
        return detail

    def run(self) -> list[Row]:
        for device in ("cpu", "cuda"):
            for net in self.nets:
                for mode in self.modes:
                    self.row(f"train {net.name} {mode}", device,
                             lambda n=net, m=mode, d=device: self.train(n, m, d))
        self.row("resume", "cpu -> cuda", lambda: self.resume(("cpu", "cuda")))
        self.row("resume", "cuda -> cpu", lambda: self.resume(("cuda", "cpu")))
        for device in ("cpu", "cuda"):
            for command in ("sample", "inpaint"):
                self.row(f"ncsn {command}", device, lambda c=command, d=device: self.cli(c, d))
        for tf32 in ("off", "on"):
            self.row(f"Inception features, TF32 {tf32}", "cuda", lambda t=tf32: self.inception(t))
        return self.rows


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table, under a line naming the date, torch and the card."""
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    lines = [f"{datetime.date.today()}, torch {torch.__version__}, {card}", "",
             "| check | device | result | detail |", "|---|---|---|---|"]
    lines += [f"| {r.check} | {r.device} | {r.result} | {r.detail} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks (CPU-safe run)")
    parser.add_argument("--steps", type=int, default=10, help="timed GPU steps per row")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        rows = GpuCheck(Path(work), quick=args.quick, steps=args.steps).run()
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if any(r.result == "fail" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
