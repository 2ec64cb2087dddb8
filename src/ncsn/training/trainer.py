"""The training loop: Adam on DSM or SSM over the noise levels (paper Sec. 4.2), EMA (NCSNv2),
post-hoc EMA snapshots (Karras et al. 2024), atomic checkpoints with exact resume, non-finite
guard, logs, DDP.

Exact resume: the data order of epoch e is a permutation drawn from a generator seeded with
(seed, e), and every other draw (flips, dequantization, levels, noise, projections) comes from one
generator whose state is checkpointed, so step k draws the same numbers whether or not the run
was interrupted. Each step draws the whole *global* batch on every process and each process
keeps its slice, so N processes compute the same loss as one process with the same batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ncsn.config import Config, config_to_dict, model_spec, save_config
from ncsn.core.losses import draw_levels, draw_projections, dsm_loss, ssm_loss
from ncsn.core.noise import draw_sigmas
from ncsn.data import apply_train_transforms, load_labels, to_float
from ncsn.devices import idle_core_threads
from ncsn.errors import UserError
from ncsn.files import RunLock, remove_partial_writes
from ncsn.nets import build_network, class_count, labelled
from ncsn.nets.io import save_model
from ncsn.seeding import derived_seed
from ncsn.spec.model import ModelSpec
from ncsn.training import checkpoint as ckpt
from ncsn.training import periodic, posthoc
from ncsn.training.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    local_rank_from_env,
    mean_over_ranks,
    raise_together,
    select_device,
    shutdown,
)
from ncsn.training.ema import EMA
from ncsn.training.logs import MetricsLog
from ncsn.training.setup import (
    check_device_options,
    check_noise_model,
    check_resume_config,
    claim_run_dir,
    load_split,
    prepare_run_dir,
    resolve_noise,
)
from ncsn.training.signals import StopRequest

COMPILE_BACKEND = "inductor"  # torch.compile's backend for ``training.compile``


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite and the config does not skip such steps."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    step: int
    loss: float | None
    seconds: float
    skipped_steps: int
    best: dict[str, Any] | None


def lr_factor(step: int, *, warmup: int, decay: str, final: float, n_iters: int) -> float:
    """The learning rate of 0-based step ``step`` over ``training.lr``: a linear warm-up
    (step + 1) / warmup for the first ``warmup`` steps (score_sde's), then 1 (``decay:
    none``) or a half cosine from 1 to ``final`` at the last step (``cosine``, Loshchilov &
    Hutter 2017)."""
    if step < warmup:
        return (step + 1) / warmup
    if decay == "none" or n_iters - 1 <= warmup:
        return 1.0
    progress = min((step - warmup) / (n_iters - 1 - warmup), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> Tensor:
    """Indices of global batch ``step``: epoch e is a permutation seeded by (seed, e); the last
    incomplete batch of an epoch is dropped."""
    per_epoch = n // batch_size
    epoch, pos = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(derived_seed(seed, epoch))
    return torch.randperm(n, generator=gen)[pos * batch_size:(pos + 1) * batch_size]


class Trainer:
    """One training run in ``run_dir`` (see docs/training.md). Use :meth:`run`."""

    def __init__(self, config: Config, run_dir: str | Path, *, resume: bool = False,
                 overwrite: bool = False, progress: bool = True, flag: str = "--run-dir") -> None:
        self.run_dir = Path(run_dir)
        self.progress = progress
        t = config.training
        if t.threads:
            torch.set_num_threads(idle_core_threads() if t.threads == "auto" else t.threads)
        self.device = select_device(t.device, local_rank_from_env())
        check_device_options(t, self.device)
        self.info: DistInfo = init_distributed(self.device)
        self.lock: RunLock | None = None
        try:
            self._setup(config, resume=resume, overwrite=overwrite, flag=flag)
        except BaseException:
            self._release_lock()
            shutdown(self.info)  # a process that stops leaves the group rather than abort in it
            raise

    def _setup(self, config: Config, *, resume: bool, overwrite: bool, flag: str) -> None:
        """Data, noise levels, network, optimizer, EMA, run directory and the resumed state."""
        t = config.training
        if t.batch_size % self.info.world_size:
            raise UserError(f"training.batch_size ({t.batch_size}) must be divisible by the "
                            f"number of processes ({self.info.world_size})")
        self.train_images = load_split(config, "train")
        if self.train_images.shape[0] < t.batch_size:
            raise UserError(f"training.batch_size ({t.batch_size}) exceeds the "
                            f"{self.train_images.shape[0]} training images")
        self.config, self.sigmas = resolve_noise(config, self.train_images)
        self.channels, self.image_size = self.train_images.shape[1], self.train_images.shape[-1]
        torch.manual_seed(t.seed)  # network initialisation
        self.net = build_network(self.config.model, channels=self.channels,
                                 image_size=self.image_size, sigmas=self.sigmas).to(self.device)
        if t.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.num_classes = class_count(self.net)
        self.train_labels = load_labels(config.data.name, "train",
                                        num_classes=self.num_classes) if self.num_classes else None
        self.optimizer = torch.optim.Adam(self.net.parameters(), **self._adam_settings())
        self.ema = EMA(self.net, t.ema_rate, warmup=t.ema_warmup) if t.ema_rate else \
            EMA(self.net, gamma=t.ema_gamma) if t.ema_gamma else None
        self.posthoc = [EMA(self.net, gamma=g) for g in t.posthoc_ema.gammas] \
            if t.posthoc_ema else []
        self.gen = torch.Generator(device=self.device).manual_seed(t.seed)
        self.step, self.skipped, self.best = 0, 0, None
        self.sigmas_dev = self.sigmas.to(self.device)
        self.loss_sigma_data = check_noise_model(self.config, self.net)
        self.ckpt_dir = self.run_dir / "checkpoints"
        error = None
        if self.info.is_main:  # after every check above: --overwrite deletes only a usable setup
            try:
                prepare_run_dir(self.run_dir, resume=resume, overwrite=overwrite, flag=flag)
                self.lock = claim_run_dir(self.run_dir)
            except UserError as err:
                error = err
        raise_together(error, self.info, self.device)  # the other ranks stop with rank 0
        if resume:
            self._resume()
        self.score_fn = self._wrap(self.net)
        self.log = MetricsLog(self.run_dir, enabled=self.info.is_main)
        self.periodic = periodic.Periodic(self)

    def _release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ------------------------------------------------------------------ setup helpers
    def _adam_settings(self) -> dict[str, Any]:
        """Adam's hyper-parameters from the config (they win over a resumed checkpoint's)."""
        t = self.config.training
        return {"lr": t.lr, "betas": t.betas, "eps": t.adam_eps, "weight_decay": t.weight_decay}

    def _wrap(self, net: nn.Module) -> nn.Module:
        """The training forward: ``net`` compiled in place (``training.compile``), then wrapped
        in DDP, the order PyTorch's compile docs advise. ``net`` keeps its own ``state_dict``
        keys (no ``_orig_mod.``), and the EMA copy, made before, stays uncompiled."""
        if self.config.training.compile:
            net.compile(backend=COMPILE_BACKEND)
        if not self.info.enabled:
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    def _resume(self) -> None:
        """Continue from rank 0's latest checkpoint (every process loads the same state, see
        :func:`~ncsn.training.checkpoint.latest_from_rank0`); an error on any process stops all."""
        latest = ckpt.latest_from_rank0(self.ckpt_dir, self.info, self.device)
        if latest is None:
            if self.info.is_main:
                print(f"--resume: no checkpoint in {self.ckpt_dir}; starting from step 0")
            return
        (path, data), error = latest, None
        try:
            self._load_state(ckpt.load_checkpoint(path, data=data), path)
        except UserError as err:
            error = err
        raise_together(error, self.info, self.device)
        if self.info.is_main:
            print(f"resuming from {path} (step {self.step})")

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        """Weights, EMA, Adam, step and generators from a loaded checkpoint ``state``."""
        check_resume_config(state["config"], config_to_dict(self.config), path)
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            for group in self.optimizer.param_groups:
                group.update(self._adam_settings())
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"] if state.get("ema") is not None
                                         else state["model"])
            self._load_posthoc(state.get("posthoc_ema"), path)
        except (RuntimeError, KeyError, ValueError) as err:
            raise UserError(f"checkpoint {path} was made with a different model config: {err}"
                            ) from None
        rng, seed = state["rng"], self.config.training.seed
        if ckpt.restore_generator(self.gen, rng, seed=seed, step=state["step"]) and \
                self.info.is_main:
            print(f"{path} holds a {ckpt.saved_generator_device(rng)} generator state and this "
                  f"run trains on {self.device.type}: the training generator is re-seeded from "
                  f"(seed {seed}, step {state['step']}), so later draws differ from an "
                  "uninterrupted run's")
        torch.set_rng_state(rng["torch"])
        self.step, self.skipped, self.best = state["step"], state["skipped"], state["best"]
        self._resume_threads(state.get("threads"))

    def _load_posthoc(self, saved: list[dict[str, Any]] | None, path: Path) -> None:
        """The post-hoc EMAs from a checkpoint; they must have run since step 0 with the
        config's gammas (an EMA started later would not have its power profile)."""
        if not self.posthoc:
            return
        gammas = [ema.gamma for ema in self.posthoc]
        if saved is None or [entry["gamma"] for entry in saved] != gammas:
            found = "none" if saved is None else [entry["gamma"] for entry in saved]
            raise UserError(f"checkpoint {path} holds post-hoc EMAs for gammas {found}, not "
                            f"training.posthoc_ema.gammas {gammas}: their snapshots must "
                            "cover the run from step 0; keep the run's gammas or start a new "
                            "run")
        for ema, entry in zip(self.posthoc, saved, strict=True):
            ema.load_state_dict(entry["state"])

    def _resume_threads(self, saved: int | None) -> None:
        """``threads: auto`` resumes with the count the run started with (recorded in its
        checkpoints): the count decides the order of floating-point sums, so this keeps a
        resumed run bit-identical to an uninterrupted one whatever the machine's load now. An
        explicit count in the config wins (and is noted when it differs)."""
        wanted = self.config.training.threads
        if saved is None or self.device.type != "cpu" or saved == torch.get_num_threads():
            return
        if wanted == "auto":
            torch.set_num_threads(saved)
        elif self.info.is_main:
            print(f"note: this run trained on {saved} CPU threads and resumes on "
                  f"{torch.get_num_threads()} (training.threads); the weights will differ from "
                  "an uninterrupted run's in the last bits")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, EMA, Adam, step, config, the
        trainer's generator (with its device type) and the CPU global generator (the global
        CUDA generators are never drawn from, so not saved)."""
        return {"format": 1, "step": self.step, "skipped": self.skipped, "best": self.best,
                "model": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "posthoc_ema": [{"gamma": ema.gamma, "state": ema.state_dict()}
                                for ema in self.posthoc] or None,
                "optimizer": self.optimizer.state_dict(), "config": config_to_dict(self.config),
                "sigmas": self.sigmas.clone(), "threads": torch.get_num_threads(),
                "rng": {**ckpt.generator_state(self.gen), "torch": torch.get_rng_state()}}

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/ckpt_<step>.pt`` atomically (rank 0) and prune old ones."""
        if not self.info.is_main:
            return None
        path = ckpt.save_atomic(self.state_dict(), self.ckpt_dir / ckpt.checkpoint_name(self.step))
        ckpt.prune_checkpoints(self.ckpt_dir, self.config.training.keep_last)
        return path

    @property
    def eval_model(self) -> nn.Module:
        """The network used for samples and test losses: the EMA copy when EMA is on."""
        return self.ema.model if self.ema is not None else self.net

    # ------------------------------------------------------------------ one step
    def _global_batch(self) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(images, per-sample sigma, noise, labels) of the whole global batch for the current
        step; labels (None for an unconditional net) are "no label" (``num_classes``) with
        probability ``training.label_dropout``."""
        t, d = self.config.training, self.config.data
        idx = batch_indices(self.step, self.train_images.shape[0], t.batch_size, t.seed)
        x = to_float(self.train_images[idx]).to(self.device)
        x = apply_train_transforms(x, dequantize=d.dequantize, hflip=d.hflip, logit=d.logit,
                                   max_shift=d.max_shift, generator=self.gen)
        sigma = self._draw_sigma(x.shape[0])
        noise = torch.randn(x.shape, generator=self.gen, device=self.device)
        if self.train_labels is None:
            return x, sigma, noise, None
        labels = self.train_labels[idx].to(self.device)
        dropped = torch.rand(labels.shape, generator=self.gen, device=self.device) < \
            t.label_dropout
        return x, sigma, noise, labels.masked_fill(dropped, self.num_classes)

    def _draw_sigma(self, batch: int) -> Tensor:
        """One of the discrete levels per sample (the paper), or a draw from the continuous
        ``noise.distribution``."""
        n = self.config.noise
        if n.distribution == "discrete":
            return self.sigmas_dev[draw_levels(batch, self.sigmas.numel(), self.gen, self.device)]
        return draw_sigmas(batch, n.distribution, sigma_min=n.sigma_min,
                           sigma_max=float(n.sigma_max), p_mean=n.p_mean, p_std=n.p_std,
                           generator=self.gen, device=self.device)

    def _loss(self) -> Tensor:
        t = self.config.training
        x, sigma, noise, labels = self._global_batch()
        per_rank = x.shape[0] // self.info.world_size
        part = slice(self.info.rank * per_rank, (self.info.rank + 1) * per_rank)
        projections = None
        if t.loss == "ssm":  # drawn for the global batch, so every world size sees the same v
            projections = draw_projections(x, 1, t.ssm_projection, self.gen)[:, part]
        x, sigma, noise = x[part], sigma[part], noise[part]
        score = self.score_fn if labels is None else labelled(self.score_fn, labels[part])
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if t.amp else contextlib.nullcontext()
        with amp:
            if t.loss == "dsm":
                return dsm_loss(score, x, sigma=sigma, noise=noise,
                                anneal_power=t.anneal_power, sigma_data=self.loss_sigma_data)
            return ssm_loss(score, x, sigma=sigma, noise=noise,
                            projections=projections, anneal_power=t.anneal_power,
                            variance_reduced=t.ssm_variance_reduced)

    def _nonfinite(self, problem: str) -> None:
        """Skip the step (``training.skip_nonfinite``) or stop before any checkpoint sees it."""
        t = self.config.training
        if t.skip_nonfinite:
            self.skipped += 1
            self.log.write({"step": self.step + 1, "event": "skipped_nonfinite",
                            "reason": problem})
            return
        found = ckpt.list_checkpoints(self.ckpt_dir)
        kept = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint yet"
        raise NonFiniteLossError(
            f"{problem} at step {self.step + 1}; training stopped ({kept}). Try a "
            f"lower training.lr (now {t.lr:g}), --resume after lowering it, or "
            "training.skip_nonfinite=true to skip such steps")

    def _gradient_norm(self, exact: bool = False) -> Tensor:
        """0-d tensor, no host sync: the global 2-norm of the gradients, one fused
        ``torch._foreach_norm`` over all of them. A NaN or infinity makes it non-finite, but so
        does a 2-norm beyond fp32's range (1.8e19): ``exact`` gives max |g| instead (far slower
        on the CPU, so only to confirm a non-finite gradient)."""
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads, math.inf if exact else 2.0, foreach=True)

    def _optimizer_step(self, grad_norm: Tensor) -> None:
        """Clip the gradients to ``training.grad_clip`` (by their global norm), set this step's
        learning rate (:func:`lr_factor`), step Adam and the EMA."""
        t = self.config.training
        if t.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.net.parameters(), t.grad_clip, grad_norm,
                                                 foreach=True)
        lr = t.lr * lr_factor(self.step, warmup=t.warmup, decay=t.lr_decay, final=t.lr_final,
                              n_iters=t.n_iters)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.net, self.step + 1)
        for ema in self.posthoc:
            ema.update(self.net, self.step + 1)

    def train_step(self) -> float:
        """One optimizer step on the global batch; returns the (global) loss value. The loss and
        the gradients' finiteness are read back together after backward, one host sync per
        step; a non-finite loss or gradient never reaches the weights (see :meth:`_nonfinite`)."""
        self.net.train()
        loss = self._loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mean_loss = mean_over_ranks(loss.detach().float(), self.info)
        grad_norm = self._gradient_norm()
        value, grads_finite = torch.stack([mean_loss, grad_norm.isfinite().float()]).tolist()
        problem = None
        if not math.isfinite(value):
            problem = f"loss became {value}"
        elif not grads_finite and not bool(self._gradient_norm(exact=True).isfinite()):
            problem = "the gradient became non-finite"
        if problem is None:
            self._optimizer_step(grad_norm)
        else:
            self._nonfinite(problem)
        self.step += 1
        return value

    # ------------------------------------------------------------------ the loop
    def _record(self, results: dict[str, float]) -> None:
        """Log the periodic work's results and keep ``best.pt`` when ``eval.metric`` improved
        (a NaN score never does; a resumed run with another metric starts its best afresh)."""
        if "test_loss" in results:
            self.log.write({"step": self.step, "test_loss": results["test_loss"]})
        e = self.config.eval
        if e.metric not in results:
            return
        value = results[e.metric]
        improved = math.isfinite(value) and (self.best is None or self.best["metric"] != e.metric
                                             or value < self.best["value"])
        if improved:
            self.best = {"metric": e.metric, "value": value, "step": self.step}
            ckpt.save_atomic(self.state_dict(), self.ckpt_dir / ckpt.BEST_NAME)
        self.log.write({"step": self.step, e.metric: value, "best": improved,
                        "eval_num_samples": e.num_samples})

    def model_spec(self) -> ModelSpec:
        """The spec written beside the weights (:mod:`ncsn.nets.io`), also used for grids."""
        return model_spec(self.config, channels=self.channels, image_size=self.image_size,
                          sigmas=self.sigmas.tolist())

    def _write_models(self) -> None:
        """``model`` and, with EMA on, ``model_ema`` (which ``load_model`` prefers: a stale one
        from before a resume that turned EMA off is removed)."""
        spec = self.model_spec()
        save_model(self.run_dir / "model", self.net, spec)
        if self.ema is not None:
            save_model(self.run_dir / "model_ema", self.ema.model, spec)
        else:
            for suffix in (".safetensors", ".json"):
                (self.run_dir / f"model_ema{suffix}").unlink(missing_ok=True)

    def write_posthoc_snapshots(self) -> None:
        """Each post-hoc EMA's weights at this step into ``<run>/posthoc_ema``
        (:func:`ncsn.training.posthoc.write_snapshot`)."""
        spec = self.model_spec()
        for ema in self.posthoc:
            assert ema.gamma is not None
            posthoc.write_snapshot(self.run_dir / posthoc.SNAPSHOT_DIR, ema.model.state_dict(),
                                   gamma=ema.gamma, step=self.step, spec=spec)

    def _stop_after_signal(self, stop: StopRequest) -> None:
        """End the run after SIGINT/SIGTERM, once the step's checkpoint is written."""
        if self.info.is_main:
            self.log.write({"event": "interrupted", "step": self.step})
            print(f"stopped at step {self.step} ({stop.interrupted()}); checkpoint written, "
                  "--resume continues from it")
        raise stop.interrupted()

    def run(self) -> TrainResult:
        """Train up to ``training.n_iters`` steps; write checkpoints, logs and model files."""
        t = self.config.training
        start, began = self.step, time.perf_counter()
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.run_dir / "config.yaml")
            remove_partial_writes(self.ckpt_dir)
            self.log.write({"event": "resume" if start else "start", "step": start,
                            "world_size": self.info.world_size, "device": str(self.device),
                            "threads": torch.get_num_threads()})
        barrier(self.info)
        bar = tqdm(total=t.n_iters, initial=start, unit="step", dynamic_ncols=True,
                   disable=not (self.progress and self.info.is_main), desc="train")
        value, window, losses = None, (start, time.perf_counter()), []
        stop = StopRequest().install()
        try:
            while self.step < t.n_iters:
                value = self.train_step()
                if math.isfinite(value):
                    losses.append(value)
                bar.update(1)
                if self.step % t.log_freq == 0 or self.step == t.n_iters:
                    now = time.perf_counter()
                    rate = (self.step - window[0]) / max(now - window[1], 1e-9)
                    mean = sum(losses) / len(losses) if losses else float("nan")
                    window, losses = (self.step, now), []
                    bar.set_postfix(loss=f"{mean:.4g}")
                    self.log.write({"step": self.step, "loss": mean, "steps_per_s": rate,
                                    "elapsed_s": now - began})
                if self.info.is_main:
                    self._record(self.periodic.after_step())
                    if t.posthoc_ema and (self.step % t.posthoc_ema.every == 0
                                          or self.step == t.n_iters):
                        self.write_posthoc_snapshots()
                stopping = stop.agreed(self.info, self.device)
                if stopping or self.step % t.snapshot_freq == 0 or self.step == t.n_iters:
                    self.save_checkpoint()
                if stopping and self.step < t.n_iters:
                    self._stop_after_signal(stop)
            if self.info.is_main:
                self._write_models()
            barrier(self.info)
        finally:
            stop.restore()
            bar.close()
            self.log.close()
            self.score_fn = self.net  # DDP holds the process group: release it, then leave
            self._release_lock()
            shutdown(self.info)
        return TrainResult(self.run_dir, self.step, value, time.perf_counter() - began,
                           self.skipped, self.best)


def train(config: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, flag: str = "--run-dir") -> TrainResult:
    """Train ``config`` in ``run_dir`` (resuming from its latest checkpoint with ``resume``);
    refusals about ``run_dir`` name ``flag``, the option it came from."""
    return Trainer(config, run_dir, resume=resume, overwrite=overwrite, progress=progress,
                   flag=flag).run()
