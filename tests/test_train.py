"""Trainer: exact resume, checkpoints, non-finite guard, best-by-metric, run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ncsn
import ncsn.eval
import ncsn.training.trainer as trainer_module
from ncsn.config import load_config
from ncsn.data import logit_transform, to_float
from ncsn.errors import UserError
from ncsn.nets.io import load_model
from ncsn.training import (
    NonFiniteLossError,
    Trainer,
    batch_indices,
    list_checkpoints,
    load_checkpoint,
    train,
)
from ncsn.training.setup import resolve_noise
from ncsn.training.trainer import lr_factor
from test_train_support import assert_same_training_state, final_state, record_steps, tiny_config


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_batch_order_is_a_seeded_permutation_per_epoch() -> None:
    epoch0 = torch.cat([batch_indices(s, 10, 3, seed=5) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9 and epoch0.max() < 10
    assert torch.equal(epoch0, torch.cat([batch_indices(s, 10, 3, seed=5) for s in range(3)]))
    epoch1 = torch.cat([batch_indices(s, 10, 3, seed=5) for s in range(3, 6)])
    assert not torch.equal(epoch0, epoch1)
    assert not torch.equal(batch_indices(0, 10, 3, seed=6), batch_indices(0, 10, 3, seed=5))


def test_interrupted_run_resumes_to_identical_weights(tmp_path: Path, monkeypatch) -> None:
    config = tiny_config()
    train(config, tmp_path / "full", progress=False)

    real_step = Trainer.train_step

    def interrupted(self: Trainer) -> float:
        if self.step == 6:  # after checkpoint 4, before checkpoint 8
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path / "cut" / "checkpoints")] == [4]
    monkeypatch.setattr(Trainer, "train_step", real_step)
    steps = record_steps(monkeypatch)
    result = train(config, tmp_path / "cut", resume=True, progress=False)
    assert result.step == 8 and steps == [4, 5, 6, 7]  # from checkpoint 4, not from 0
    assert_same_training_state(final_state(tmp_path / "full"), final_state(tmp_path / "cut"))
    events = [m["event"] for m in _metrics(tmp_path / "cut") if "event" in m]
    assert events == ["start", "resume"]


def test_auto_threads_resume_with_the_count_the_run_started_with(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """A machine busier at the resume than at the start makes ``threads: auto`` pick fewer
    threads; the resumed run keeps the recorded count, so it equals an uninterrupted run."""
    before = torch.get_num_threads()
    try:
        train(tiny_config(training={"threads": 2}), tmp_path / "full", progress=False)
        picks = iter([2, 1])
        monkeypatch.setattr(trainer_module, "idle_core_threads", lambda: next(picks))
        train(tiny_config(training={"threads": "auto", "n_iters": 4}), tmp_path / "cut",
              progress=False)
        train(tiny_config(training={"threads": "auto"}), tmp_path / "cut", resume=True,
              progress=False)
    finally:
        torch.set_num_threads(before)
    assert [m["threads"] for m in _metrics(tmp_path / "cut") if "event" in m] == [2, 2]
    assert load_checkpoint(list_checkpoints(tmp_path / "cut" / "checkpoints")[-1][1]
                           )["threads"] == 2
    assert_same_training_state(final_state(tmp_path / "full"), final_state(tmp_path / "cut"))


def test_resume_can_extend_training(tmp_path: Path, monkeypatch) -> None:
    train(tiny_config(training={"n_iters": 8}), tmp_path / "full", progress=False)
    train(tiny_config(training={"n_iters": 4}), tmp_path / "ext", progress=False)
    steps = record_steps(monkeypatch)
    train(tiny_config(training={"n_iters": 8}), tmp_path / "ext", resume=True, progress=False)
    assert steps == [4, 5, 6, 7]
    assert_same_training_state(final_state(tmp_path / "full"), final_state(tmp_path / "ext"))


def test_checkpoint_contents_and_model_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(training={"snapshot_freq": 2, "keep_last": 2, "n_iters": 7}), run,
          progress=False)
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [6, 7]
    state = load_checkpoint(run / "checkpoints" / "ckpt_00000007.pt")
    assert state["step"] == 7 and state["config"]["training"]["n_iters"] == 7
    assert set(state["rng"]) == {"generator", "generator_device", "torch"}  # no global CUDA RNG
    assert torch.allclose(state["sigmas"], torch.tensor([1.0, 0.368403, 0.135721, 0.05]),
                          rtol=1e-4)
    net, spec = load_model(run)  # prefers model_ema
    for name, value in net.state_dict().items():
        assert torch.equal(value, state["ema"][name])
    stored = spec.sampling.settings
    assert stored.sampler == "annealed_langevin" and stored.final_denoise is True
    assert stored.step_size == "auto"  # NCSNv2 technique 4, resolved when sampling
    from ncsn.sampling import plan_sampling

    assert plan_sampling(spec, continuous=True).settings.step_size > 0
    assert (run / "config.yaml").is_file() and (run / "model.safetensors").is_file()


def test_no_ema_reproduces_the_paper(tmp_path: Path) -> None:
    train(tiny_config(training={"ema_rate": None, "n_iters": 2}), tmp_path / "r", progress=False)
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "ckpt_00000002.pt")["ema"] is None
    assert not (tmp_path / "r" / "model_ema.safetensors").exists()


def test_resume_without_ema_removes_the_stale_ema_model(tmp_path: Path) -> None:
    run = tmp_path / "r"
    train(tiny_config(training={"n_iters": 2}), run, progress=False)
    assert (run / "model_ema.safetensors").is_file()
    train(tiny_config(training={"ema_rate": None, "n_iters": 4}), run, resume=True,
          progress=False)
    assert not (run / "model_ema.safetensors").exists() and not (run / "model_ema.json").exists()
    net, _ = load_model(run)  # now the trained weights, not the old EMA of step 2
    trained = final_state(run)["model"]
    for name, value in net.state_dict().items():
        assert torch.equal(value, trained[name])


def _poison_call(monkeypatch, bad_call: int, *, gradient: bool = False) -> None:
    """Make the ``bad_call``-th DSM loss NaN or, with ``gradient``, finite with a NaN gradient
    (0 * d sqrt(|u|)/du at u = 0)."""
    real = trainer_module.dsm_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        if calls["n"] != bad_call:
            return loss
        if gradient:
            return loss + 0.0 * (loss - loss.detach()).abs().sqrt()
        return loss * float("nan")

    monkeypatch.setattr(trainer_module, "dsm_loss", flaky)


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path,
                                                                 monkeypatch) -> None:
    run = tmp_path / "run"
    _poison_call(monkeypatch, 6)
    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_config(), run, progress=False)
    message = str(info.value)
    assert "at step 6" in message and "ckpt_00000004.pt" in message
    assert "training.lr" in message and "skip_nonfinite" in message
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [4]
    assert load_checkpoint(run / "checkpoints" / "ckpt_00000004.pt")["step"] == 4
    assert not (run / "model.safetensors").exists()


def test_nonfinite_gradient_stops_before_a_checkpoint_stores_it(tmp_path: Path,
                                                                monkeypatch) -> None:
    run = tmp_path / "run"
    _poison_call(monkeypatch, 4, gradient=True)  # step 4 is also a checkpoint step
    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_config(), run, progress=False)
    message = str(info.value)
    assert "gradient became non-finite at step 4" in message and "no checkpoint yet" in message
    assert list_checkpoints(run / "checkpoints") == []


@pytest.mark.parametrize("gradient", [False, True], ids=["loss", "gradient"])
def test_nonfinite_step_is_skipped_when_configured(tmp_path: Path, monkeypatch,
                                                   gradient: bool) -> None:
    run = tmp_path / "run"
    _poison_call(monkeypatch, 3, gradient=gradient)
    result = train(tiny_config(training={"skip_nonfinite": True}), run, progress=False)
    assert (result.step, result.skipped_steps) == (8, 1)
    skipped = [m for m in _metrics(run) if m.get("event") == "skipped_nonfinite"]
    assert [m["step"] for m in skipped] == [3]
    state = final_state(run)
    assert state["skipped"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_applies_the_configs_adam_settings(tmp_path: Path) -> None:
    """The non-finite message says: lower training.lr and --resume; the new lr must be used."""
    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 4}), run, progress=False)
    train(tiny_config(training={"n_iters": 6, "lr": 1e-4, "betas": [0.5, 0.9]}), run,
          resume=True, progress=False)
    group = final_state(run)["optimizer"]["param_groups"][0]
    assert group["lr"] == 1e-4 and tuple(group["betas"]) == (0.5, 0.9)


def test_best_checkpoint_by_metric(tmp_path: Path, monkeypatch) -> None:
    scores = iter([3.0, 1.0, 2.0])
    seen = []

    def fake_score(samples, reference, *, metrics, **kwargs):
        seen.append((tuple(samples.shape), float(samples.min()), float(samples.max()),
                     tuple(reference.shape), metrics))
        return {"kid": next(scores)}

    monkeypatch.setattr(ncsn.eval, "score_samples", fake_score)
    run = tmp_path / "run"
    config = tiny_config(training={"n_iters": 6},
                         eval={"every": 2, "num_samples": 5, "metric": "kid"})
    result = train(config, run, progress=False)
    assert result.best == {"metric": "kid", "value": 1.0, "step": 4}
    assert all(s[0] == (5, 1, 8, 8) and 0.0 <= s[1] <= s[2] <= 1.0 for s in seen)
    assert all(s[3] == (297, 1, 8, 8) and s[4] == ("kid",) for s in seen)
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == 4 and best["best"]["value"] == 1.0
    logged = [(m["step"], m["kid"], m["best"]) for m in _metrics(run) if "kid" in m]
    assert logged == [(2, 3.0, True), (4, 1.0, True), (6, 2.0, False)]
    # periodic evaluation uses its own generators: the trained weights are unchanged by it
    train(tiny_config(training={"n_iters": 6}), tmp_path / "plain", progress=False)
    plain, scored = final_state(tmp_path / "plain"), final_state(run)
    for name, value in plain["model"].items():
        assert torch.equal(value, scored["model"][name])


def test_best_checkpoint_ignores_nan_scores_and_restarts_with_another_metric(
        tmp_path: Path, monkeypatch) -> None:
    scores = iter([float("nan"), 2.0, 50.0])
    monkeypatch.setattr(ncsn.eval, "score_samples",
                        lambda samples, reference, *, metrics, **kwargs:
                        {metrics[0]: next(scores)})
    run = tmp_path / "run"
    kid = {"every": 2, "num_samples": 4, "metric": "kid"}
    assert train(tiny_config(training={"n_iters": 4}, eval=kid), run,
                 progress=False).best == {"metric": "kid", "value": 2.0, "step": 4}
    fid = {**kid, "metric": "fid"}
    result = train(tiny_config(training={"n_iters": 6}, eval=fid), run, resume=True,
                   progress=False)
    assert result.best == {"metric": "fid", "value": 50.0, "step": 6}
    assert load_checkpoint(run / "checkpoints" / "best.pt")["best"]["metric"] == "fid"


def test_test_loss_and_sample_grids_are_logged(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 4, "test_freq": 2, "sample_freq": 4}), run,
          progress=False)
    test_losses = [m["test_loss"] for m in _metrics(run) if "test_loss" in m]
    assert len(test_losses) == 2 and all(v > 0 for v in test_losses)
    assert (run / "samples" / "step_00000004.png").is_file()
    losses = [m for m in _metrics(run) if "loss" in m]
    assert [m["step"] for m in losses] == [2, 4] and all(m["steps_per_s"] > 0 for m in losses)


def test_ssm_loss_trains(tmp_path: Path) -> None:
    result = train(tiny_config(training={"loss": "ssm", "n_iters": 2,
                                         "ssm_projection": "rademacher"}),
                   tmp_path / "r", progress=False)
    assert result.step == 2 and result.loss is not None and torch.isfinite(
        torch.tensor(result.loss))


def test_existing_run_directory_is_not_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 2}), run, progress=False)
    with pytest.raises(UserError, match="already exists; pass --resume"):
        train(tiny_config(training={"n_iters": 2}), run, progress=False)
    train(tiny_config(training={"n_iters": 2}), run, overwrite=True, progress=False)
    assert [m.get("event") for m in _metrics(run)][0] == "start"


def test_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 8}), run, progress=False)
    latest = run / "checkpoints" / "ckpt_00000008.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    with pytest.raises(UserError, match="ckpt_00000008.pt is corrupt/incomplete.*delete it"):
        train(tiny_config(training={"n_iters": 8}), run, resume=True, progress=False)


def test_resume_with_another_model_config_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 4}), run, progress=False)
    other = tiny_config(model={"ngf": 8}, training={"n_iters": 8})
    with pytest.raises(UserError, match=r"different model config: field model\.ngf is 4 there, "
                       r"8 here; .*--overwrite"):
        train(other, run, resume=True, progress=False)


def test_rejected_network_hyper_parameter_is_a_user_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 2}), run, progress=False)
    with pytest.raises(UserError, match=r"^model: .*patch must be >= 1 and divide image_size"):
        train(tiny_config(model={"patch": 3}), run, overwrite=True, progress=False)
    # --overwrite deletes the old run only once the new one is known to start
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [2]


@pytest.mark.parametrize("logit", [False, True])
def test_auto_sigma_max_is_the_largest_distance_where_the_network_sees_the_data(
        logit: bool) -> None:
    images = (torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 255).to(
        torch.uint8)
    config = tiny_config(noise={"sigma_max": "auto", "num_levels": "auto"}, data={"logit": logit})
    resolved, sigmas = resolve_noise(config, images)
    data = logit_transform(to_float(images)) if logit else to_float(images)
    flat = data.reshape(6, -1).double()
    assert resolved.noise.sigma_max == pytest.approx(float(torch.cdist(flat, flat).max()),
                                                     abs=1e-4)
    assert resolved.noise.num_levels == sigmas.numel() >= 2
    assert float(sigmas[0]) == pytest.approx(resolved.noise.sigma_max, rel=1e-6)


def test_amp_needs_cuda() -> None:
    with pytest.raises(UserError, match="training.amp"):
        Trainer(tiny_config(training={"amp": True}), "/nonexistent/never-created")


def test_channels_last_trains_the_same_model(tmp_path: Path) -> None:
    train(tiny_config(training={"n_iters": 3}), tmp_path / "nchw", progress=False)
    train(tiny_config(training={"n_iters": 3, "channels_last": True}), tmp_path / "nhwc",
          progress=False)
    a, b = final_state(tmp_path / "nchw"), final_state(tmp_path / "nhwc")
    for name, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][name], rtol=1e-5, atol=1e-6)


def test_a_renamed_checkpoint_is_neither_resumed_from_nor_prunes_the_latest(
        tmp_path: Path) -> None:
    from ncsn.training.checkpoint import prune_checkpoints

    run = tmp_path / "run"
    train(tiny_config(training={"n_iters": 8, "keep_last": 2}), run, progress=False)
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.glob("ckpt_*")) == [
        "ckpt_00000004.pt", "ckpt_00000004.pt.sha256", "ckpt_00000008.pt",
        "ckpt_00000008.pt.sha256"]
    (folder / "ckpt_00000099.pt").write_bytes((folder / "ckpt_00000004.pt").read_bytes())
    with pytest.raises(UserError, match=r"ckpt_00000099.pt records step 4, not the step its "
                                         r"name says"):
        train(tiny_config(training={"n_iters": 12}), run, resume=True, progress=False)
    (folder / "ckpt_00000099.pt.sha256").write_text(
        (folder / "ckpt_00000004.pt.sha256").read_text())  # its record names ckpt_00000004.pt
    assert [s for s, _ in list_checkpoints(folder)] == [4, 8]
    assert prune_checkpoints(folder, keep_last=1) == [folder / "ckpt_00000004.pt"]
    assert (folder / "ckpt_00000008.pt").is_file()

    data = bytearray((folder / "ckpt_00000008.pt").read_bytes())
    data[-1] ^= 1  # same size, one bit other
    (folder / "ckpt_00000008.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match its .sha256 record"):
        load_checkpoint(folder / "ckpt_00000008.pt")


def test_a_planted_link_in_the_run_directory_is_replaced_not_written_through(
        tmp_path: Path) -> None:
    run, victim = tmp_path / "run", tmp_path / "victim.json"
    train(tiny_config(training={"n_iters": 4}), run, progress=False)
    victim.write_text("precious")
    for name in ("model.json", "model.safetensors", "config.yaml"):
        (run / name).unlink()
        (run / name).symlink_to(victim)
    train(tiny_config(training={"n_iters": 8}), run, resume=True, progress=False)
    assert victim.read_text() == "precious"
    assert not (run / "model.json").is_symlink()
    assert load_model(run / "model")[1].image_size == 8


def test_lr_factor_warms_up_linearly_then_decays_by_a_half_cosine() -> None:
    kw = {"warmup": 4, "final": 0.1, "n_iters": 13}
    assert [lr_factor(s, decay="none", **kw) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    cosine = [lr_factor(s, decay="cosine", **kw) for s in range(13)]
    assert cosine[:5] == [0.25, 0.5, 0.75, 1.0, 1.0] and cosine[-1] == pytest.approx(0.1)
    assert cosine[8] == pytest.approx(0.55)  # half way through the decay: (1 + 0.1) / 2
    assert all(a > b for a, b in zip(cosine[4:], cosine[5:], strict=False))


def _record_adam_steps(monkeypatch) -> list[tuple[float, float]]:
    """(learning rate, global gradient norm) of every Adam step from now on."""
    seen: list[tuple[float, float]] = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen.append((self.param_groups[0]["lr"],
                     float(torch.nn.utils.get_total_norm(grads, 2.0))))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    return seen


def test_trainer_applies_warmup_clipping_and_the_power_ema(tmp_path: Path, monkeypatch) -> None:
    """Each Adam step sees the scheduled learning rate and gradients clipped to the global
    norm; the EMA follows the power profile from its step count."""
    seen = _record_adam_steps(monkeypatch)
    config = tiny_config(training={"n_iters": 6, "lr": 1e-3, "warmup": 3, "lr_decay": "cosine",
                                   "lr_final": 0.5, "grad_clip": 1e-3, "ema_rate": None,
                                   "ema_gamma": 3.0})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.run()
    expected = [1e-3 * lr_factor(s, warmup=3, decay="cosine", final=0.5, n_iters=6)
                for s in range(6)]
    assert [lr for lr, _ in seen] == pytest.approx(expected)
    assert all(norm <= 1e-3 * (1 + 1e-4) for _, norm in seen)
    assert trainer.ema is not None and trainer.ema.gamma == 3.0


def test_one_ema_profile_per_config() -> None:
    with pytest.raises(UserError, match="ema_rate .* ema_gamma"):
        tiny_config(training={"ema_rate": 0.9, "ema_gamma": 7.0})


def test_packaged_score_sde_recipe_trains_ncsnpp_with_its_warmup_and_clipping(
        tmp_path: Path, monkeypatch) -> None:
    """ve_cifar10_ncsnpp_continuous at toy size (8x8 digits, nf 8): Adam steps at score_sde's
    warm-up lr 2e-4 (step + 1) / 5000 on gradients clipped to norm 1, and the EMA model it
    writes samples with the config's predictor-corrector sampler."""
    seen = _record_adam_steps(monkeypatch)
    config = load_config("ve_cifar10_ncsnpp_continuous", [
        "data.name=digits8", "data.download=false", "data.hflip=false", "model.nf=8",
        "model.ch_mult=[1,2]", "model.num_res_blocks=1", "model.attn_resolutions=[4]",
        "training.batch_size=8", "training.n_iters=3", "training.snapshot_freq=3",
        "training.device=cpu", "noise.sigma_max=10"])
    train(config, tmp_path / "run", progress=False)
    assert [lr for lr, _ in seen] == pytest.approx([2e-4 * s / 5000 for s in (1, 2, 3)])
    assert all(norm <= 1.0 + 1e-5 for _, norm in seen)
    model = ncsn.load(tmp_path / "run")
    images = model.sample(2, nfe=4, seed=0)
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()
