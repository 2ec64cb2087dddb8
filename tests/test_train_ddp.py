"""Distributed data-parallel training: 2 CPU processes (gloo) equal 1 process on the same
global batch: each process sees its half of that batch, and the first step's gradients are the
one-process gradients (averaged over processes, not summed), before Adam could hide a scale."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ncsn.config import validate_config
from ncsn.errors import UserError
from ncsn.nets import build_network
from ncsn.nets.io import load_model
from ncsn.training import Trainer, distributed, train
from test_train_support import folder_raw, write_image_folder

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _record_first_step(out: Path):
    """A ``Trainer.train_step`` that also saves, for the first step, what this process fed the
    score network and the gradients it holds after the step (after DDP's all-reduce)."""
    original = Trainer.train_step

    def train_step(self: Trainer) -> float:
        if self.step > 0:
            return original(self)
        inputs, score_fn = [], self.score_fn
        self.score_fn = lambda x, sigma: (inputs.append(x.detach().clone()), score_fn(x, sigma))[1]
        try:
            value = original(self)
        finally:
            self.score_fn = score_fn
        grads = {n: p.grad.detach().clone() for n, p in self.net.named_parameters()
                 if p.grad is not None}
        torch.save({"inputs": torch.cat(inputs), "grads": grads}, out)
        return value

    return train_step


def _worker(rank: int, raw: dict, run_dir: str, port: int, record: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD)})
    torch.set_num_threads(1)
    Trainer.train_step = _record_first_step(Path(record) / f"rank{rank}.pt")
    train(validate_config(raw), run_dir, progress=False)


def test_two_processes_match_one_process(tmp_path: Path, monkeypatch) -> None:
    raw = folder_raw(write_image_folder(tmp_path / "images"),
                     training={"n_iters": 4, "batch_size": 8, "ema_rate": 0.5})
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setattr(Trainer, "train_step", _record_first_step(record / "one.pt"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(validate_config(raw), tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(before)
    mp.spawn(_worker, args=(raw, str(tmp_path / "two"), _free_port(), str(record)),
             nprocs=WORLD, join=True)

    # the global batch of 8 is split: each process feeds the network its own 4 inputs, and
    # together they are the one-process batch, in order
    one = torch.load(record / "one.pt")
    ranks = [torch.load(record / f"rank{r}.pt") for r in range(WORLD)]
    assert [len(r["inputs"]) for r in ranks] == [4, 4] and len(one["inputs"]) == 8
    torch.testing.assert_close(torch.cat([r["inputs"] for r in ranks]), one["inputs"],
                               rtol=0, atol=0)
    # the gradients after the first step are the one-process gradients on every process: DDP
    # averages the per-process gradients of the per-process mean loss (a sum would double them)
    assert one["grads"].keys() == ranks[0]["grads"].keys() and one["grads"]
    for r in ranks:
        for name, grad in one["grads"].items():
            torch.testing.assert_close(r["grads"][name], grad, rtol=1e-4, atol=1e-6)
    assert max(float(g.abs().max()) for g in one["grads"].values()) > 1e-3

    one, _ = load_model(tmp_path / "one" / "model")
    two, _ = load_model(tmp_path / "two" / "model")
    worst = 0.0
    for name, a in one.state_dict().items():
        b = two.state_dict()[name]
        worst = max(worst, float((a - b).abs().max()))
    assert worst < 1e-6, f"largest weight difference {worst:g}"
    # the 2-process run really trained: its weights moved away from the initialisation
    torch.manual_seed(0)
    init = build_network(raw["model"], channels=1, image_size=8, sigmas=torch.ones(4))
    moved = max(float((v - two.state_dict()[k]).abs().max()) for k, v in init.state_dict().items())
    assert moved > 1e-3
    records = (tmp_path / "two" / "metrics.jsonl").read_text()
    assert '"world_size": 2' in records


def test_collectives_outlast_a_long_rank0_evaluation(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    info = distributed.init_distributed(torch.device("cpu"))
    assert (info.rank, info.world_size, info.enabled, info.is_main) == (1, 2, True, False)
    assert calls == [{"backend": "gloo", "timeout": distributed.COLLECTIVE_TIMEOUT}]
    assert distributed.COLLECTIVE_TIMEOUT.total_seconds() >= 3600


def test_an_explicit_gpu_index_is_refused_under_torchrun(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="every process on one GPU"):
        distributed.select_device("cuda:1", local_rank=0)
    assert distributed.select_device("cpu", local_rank=1) == torch.device("cpu")
