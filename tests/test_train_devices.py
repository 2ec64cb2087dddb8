"""GPU and multi-node readiness of the trainer, checked on the CPU (issue 12): resuming a
checkpoint made on another device type, the global CUDA generators left alone, compile (with
DDP, without SSM), device choice under launchers, the fused per-step checks and EMA."""

from __future__ import annotations

import torch
from torch import nn

import ncsn.training.trainer as trainer_module
from ncsn.errors import UserError
from ncsn.seeding import derived_seed
from ncsn.training import EMA, Trainer, load_checkpoint, train
from ncsn.training import checkpoint as ckpt
from ncsn.training.distributed import select_device
from test_train_support import assert_same_training_state, final_state, tiny_config

CUDA_GENERATOR_STATE = torch.arange(16, dtype=torch.uint8)  # a Philox state is 16 bytes


def test_generator_state_records_its_device_type_and_old_states_are_told_by_size() -> None:
    state = ckpt.generator_state(torch.Generator().manual_seed(3))
    assert state["generator_device"] == "cpu"
    assert ckpt.saved_generator_device(state) == "cpu"
    assert ckpt.saved_generator_device({"generator": state["generator"]}) == "cpu"
    assert ckpt.saved_generator_device({"generator": CUDA_GENERATOR_STATE}) == "cuda"


def test_a_state_from_another_device_type_reseeds_from_seed_and_step() -> None:
    saved = {"generator": CUDA_GENERATOR_STATE, "generator_device": "cuda"}
    gen = torch.Generator()
    assert ckpt.restore_generator(gen, saved, seed=5, step=40) is True
    expected = torch.Generator().manual_seed(ckpt.reseed_value(5, 40))
    assert torch.equal(torch.rand(6, generator=gen), torch.rand(6, generator=expected))
    values = {ckpt.reseed_value(seed, step) for seed in (0, 5) for step in (0, 40, 41)}
    assert len(values) == 6 and ckpt.reseed_value(5, 40) not in {5, derived_seed(5, 40)}
    # the same device type restores the stream exactly
    source = torch.Generator().manual_seed(11)
    torch.rand(3, generator=source)
    same = ckpt.generator_state(source)
    assert ckpt.restore_generator(gen, same, seed=5, step=40) is False
    assert torch.equal(torch.rand(6, generator=gen), torch.rand(6, generator=source))


def _as_if_saved_on_eight_gpus(path) -> None:
    """Rewrite a CPU checkpoint as an older 8-GPU run would have saved it: a CUDA generator
    state without a device record, and one global CUDA generator state per GPU."""
    state = load_checkpoint(path)
    state["rng"] = {"generator": CUDA_GENERATOR_STATE, "torch": state["rng"]["torch"],
                    "cuda": [CUDA_GENERATOR_STATE] * 8}
    ckpt.save_atomic(state, path)


def test_resume_of_a_gpu_checkpoint_on_the_cpu_reseeds_once_and_deterministically(
        tmp_path, monkeypatch, capsys) -> None:
    def fewer_gpus(*args, **kwargs):
        raise IndexError("list index out of range")  # what 8 states on 1 GPU would raise

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # even with "a GPU" present,
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", fewer_gpus)  # the global CUDA RNGs
    monkeypatch.setattr(torch.cuda, "set_rng_state", fewer_gpus)  # are never restored
    config = tiny_config()  # device: cpu
    train(config, tmp_path / "full", progress=False)
    runs = []
    for name in ("a", "b"):
        train(tiny_config(training={"n_iters": 4}), tmp_path / name, progress=False)
        _as_if_saved_on_eight_gpus(tmp_path / name / "checkpoints" / "ckpt_00000004.pt")
        capsys.readouterr()
        assert train(config, tmp_path / name, resume=True, progress=False).step == 8
        out = capsys.readouterr().out
        assert out.count("re-seeded") == 1
        assert "holds a cuda generator state and this run trains on cpu" in out
        assert "(seed 0, step 4)" in out
        runs.append(final_state(tmp_path / name))
    assert_same_training_state(runs[0], runs[1])  # deterministic
    reference = final_state(tmp_path / "full")["model"]
    assert any(not torch.equal(v, runs[0]["model"][k]) for k, v in reference.items())
    assert ckpt.saved_generator_device(runs[0]["rng"]) == "cpu" and "cuda" not in runs[0]["rng"]


def test_compile_with_ssm_is_refused_before_any_work(tmp_path) -> None:
    run = tmp_path / "run"
    config = tiny_config(training={"compile": True, "loss": "ssm"})
    try:
        Trainer(config, run)
    except UserError as err:
        assert str(err).startswith("training.compile cannot train loss ssm")
        assert "training.compile=false" in str(err) and "\n" not in str(err)
    else:
        raise AssertionError("compile + ssm was accepted")
    assert not run.exists()


def test_compiled_training_equals_eager_and_saves_plain_keys(tmp_path, monkeypatch) -> None:
    """aot_autograd (the part of torch.compile that SSM breaks) on the CPU via aot_eager."""
    from torch._dynamo.backends.registry import lookup_backend

    graphs = []

    def recording_aot_eager(gm, example_inputs):
        graphs.append(gm)
        return lookup_backend("aot_eager")(gm, example_inputs)

    monkeypatch.setattr(trainer_module, "COMPILE_BACKEND", recording_aot_eager)
    overrides = {"n_iters": 2, "snapshot_freq": 2}
    train(tiny_config(training=overrides), tmp_path / "eager", progress=False)
    train(tiny_config(training={**overrides, "compile": True}), tmp_path / "compiled",
          progress=False)
    assert graphs, "the training network was not compiled"
    eager, compiled = final_state(tmp_path / "eager"), final_state(tmp_path / "compiled")
    assert list(compiled["model"]) == list(eager["model"])
    assert not any("_orig_mod" in k for k in [*compiled["model"], *compiled["ema"]])
    for name, value in eager["model"].items():
        torch.testing.assert_close(compiled["model"][name], value, rtol=1e-5, atol=1e-6)


def _cuda(monkeypatch, count: int, **env: str) -> None:
    """A process that sees ``count`` GPUs, with launcher variables ``env``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    for name in ("CUDA_VISIBLE_DEVICES", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_device_choice_under_launchers(monkeypatch) -> None:
    # SLURM / per-process binding: rank 3 of a node sees only its own GPU, as cuda:0
    _cuda(monkeypatch, 1, CUDA_VISIBLE_DEVICES="3", WORLD_SIZE="8", LOCAL_WORLD_SIZE="4")
    assert select_device("cuda", local_rank=3) == torch.device("cuda:0")
    assert select_device("auto", local_rank=3) == torch.device("cuda:0")
    # torchrun: every process sees the node's 4 GPUs and takes GPU LOCAL_RANK
    _cuda(monkeypatch, 4, WORLD_SIZE="8", LOCAL_WORLD_SIZE="4")
    assert select_device("auto", local_rank=2) == torch.device("cuda:2")
    # more processes than visible GPUs
    _cuda(monkeypatch, 2, WORLD_SIZE="4", LOCAL_WORLD_SIZE="4")
    try:
        select_device("cuda", local_rank=3)
    except UserError as err:
        assert "needs GPU 3, but this process sees 2 GPU(s)" in str(err)
    else:
        raise AssertionError("LOCAL_RANK beyond the visible GPUs was accepted")
    # two processes would share a node's single GPU
    _cuda(monkeypatch, 1, WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    try:
        select_device("cuda", local_rank=0)
    except UserError as err:
        assert "2 processes on this node would share its one GPU" in str(err)
    else:
        raise AssertionError("two processes on one GPU were accepted")
    # one process: an explicit index must exist; no CUDA: auto is the CPU
    _cuda(monkeypatch, 1)
    assert select_device("cuda:0") == torch.device("cuda:0")
    try:
        select_device("cuda:1")
    except UserError as err:
        assert "'cuda:1' needs GPU 1" in str(err)
    else:
        raise AssertionError("cuda:1 was accepted with one GPU")
    _cuda(monkeypatch, 0)
    assert select_device("auto") == torch.device("cpu")


def test_gradient_norm_is_one_fused_tensor_that_sees_every_nonfinite_value(tmp_path) -> None:
    tr = Trainer(tiny_config(), tmp_path / "run", progress=False)
    tr.train_step()
    params = [p for p in tr.net.parameters() if p.grad is not None]
    assert len(params) > 10
    for exact in (False, True):
        flag = tr._gradient_norm(exact).isfinite()
        assert isinstance(flag, torch.Tensor) and flag.dim() == 0 and bool(flag)
        for bad in (float("nan"), float("inf"), -float("inf")):
            for p in (params[0], params[len(params) // 2], params[-1]):
                saved = p.grad.flatten()[-1].item()
                p.grad.view(-1)[-1] = bad
                assert not bool(tr._gradient_norm(exact).isfinite()), (exact, bad, p.shape)
                p.grad.view(-1)[-1] = saved
    # huge but finite: the fast 2-norm overflows, max |g| confirms that all is finite
    params[0].grad.view(-1)[0] = 3e38
    assert not bool(tr._gradient_norm().isfinite())
    assert bool(tr._gradient_norm(exact=True).isfinite())


def test_a_huge_finite_gradient_does_not_stop_training(tmp_path, monkeypatch) -> None:
    real, calls = trainer_module.dsm_loss, []

    def scaled(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * 1e30 if len(calls) == 3 else loss  # |g| ~ 1e30: its 2-norm overflows

    monkeypatch.setattr(trainer_module, "dsm_loss", scaled)
    result = train(tiny_config(training={"n_iters": 4}), tmp_path / "run", progress=False)
    assert (result.step, result.skipped_steps) == (4, 0) and len(calls) == 4
    assert all(torch.isfinite(v).all() for v in final_state(tmp_path / "run")["model"].values())


def test_fused_ema_equals_the_per_tensor_average_and_copies_integer_buffers() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Linear(4, 2))
    ema = EMA(net, rate=0.9)
    expected = {k: v.clone() for k, v in ema.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net[1].num_batches_tracked += 5
        ema.update(net)
        for name, value in net.state_dict().items():
            if value.dtype.is_floating_point:
                expected[name] = expected[name].lerp(value, 0.1)
            else:
                expected[name] = value.clone()
    for name, value in ema.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert int(ema.model[1].num_batches_tracked) == 15
