"""benchmarks/gpu_check.py: its CPU-safe rows run and pass here; its CUDA rows are skipped with
the reason when no GPU is present (and run on a CUDA machine)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_its_cpu_rows_and_skips_cuda_rows_with_the_reason(tmp_path) -> None:
    """All rows but compile, which compiling CondRefineNetDilated makes slow here (the
    trainer's compile path is tested on the CPU by test_train_devices.py, test_train_ranks.py)."""
    gpu_check = _load_script()
    modes = ("fp32", "bf16 autocast", "channels_last")
    check = gpu_check.GpuCheck(tmp_path, quick=True, steps=1, nets=gpu_check.TINY[:1],
                               modes=modes)
    rows = check.run()
    by_result = {r: [row for row in rows if row.result == r] for r in ("pass", "fail", "skip")}
    assert not by_result["fail"], by_result["fail"]
    passed = {(row.check, row.device) for row in by_result["pass"]}
    assert {("train mnist-tiny fp32", "cpu"), ("train mnist-tiny channels_last", "cpu"),
            ("ncsn sample", "cpu"), ("ncsn inpaint", "cpu")} <= passed
    assert all("steps/s at batch 8" in row.detail for row in by_result["pass"]
               if row.check.startswith("train"))
    nhwc = next(row for row in rows if row.check == "train mnist-tiny channels_last")
    # same batch, same loss up to float32 rounding (the NHWC kernels sum in another order)
    rel = float(re.search(r"first loss ([0-9.e+-]+) from fp32's", nhwc.detail).group(1))
    assert rel < 1e-5, nhwc.detail
    cuda_rows = [row for row in rows if "cuda" in row.device]
    assert len(cuda_rows) == 3 + 2 + 2 + 2  # train modes, resume both ways, sample/inpaint, TF32
    if not torch.cuda.is_available():
        assert all(row.result == "skip" and row.detail == "no CUDA device" for row in cuda_rows)
        bf16 = next(row for row in rows if row.check == "train mnist-tiny bf16 autocast"
                    and row.device == "cpu")
        assert bf16.result == "skip" and "CUDA-only" in bf16.detail
    text = gpu_check.table(rows)
    assert text.count("\n| ") == len(rows) + 1 and "| check | device | result | detail |" in text
