"""Work done every N training steps on rank 0: test-split DSM loss, sample grids, FID/KID. It
measures and returns; the trainer logs the numbers and keeps the best checkpoint. Each uses its
own seeded generator, so it never changes the training random stream (a run with or without
these logs trains the same weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from ncsn.config import Config
from ncsn.core.losses import dsm_loss
from ncsn.data import load_labels, to_float, to_model_space
from ncsn.imageio import make_grid, save_grid
from ncsn.nets import class_count, labelled
from ncsn.sampling import ScoreModel
from ncsn.sampling.pipeline import NonFiniteSamplesError
from ncsn.spec.model import ModelSpec
from ncsn.training.distributed import DistInfo
from ncsn.training.logs import MetricsLog
from ncsn.training.setup import load_split

TEST_SEED_OFFSET = 1
SAMPLE_SEED_OFFSET = 2
EVAL_SEED_OFFSET = 3
GRID_MAX = 64
SAMPLE_BATCH = 500


class TrainingRun(Protocol):
    """What the periodic work reads from the run (the trainer provides it)."""

    config: Config
    info: DistInfo
    device: torch.device
    run_dir: Path
    log: MetricsLog
    step: int
    train_images: Tensor
    sigmas_dev: Tensor
    loss_sigma_data: float | None
    channels: int
    image_size: int

    @property
    def eval_model(self) -> nn.Module: ...

    def model_spec(self) -> ModelSpec: ...


class Periodic:
    """Test loss every ``training.test_freq``, a grid every ``training.sample_freq`` and the
    configured metric every ``eval.every`` steps (0 turns each off)."""

    def __init__(self, run: TrainingRun) -> None:
        self.tr = run
        cfg = run.config
        need_test = cfg.training.test_freq > 0 or (cfg.eval.every > 0
                                                   and cfg.eval.reference == "test")
        self.test_images = load_split(cfg, "test") if need_test and run.info.is_main else None
        self.test_labels = load_labels(cfg.data.name, "test") if self.test_images is not None \
            and class_count(run.eval_model) else None

    def _generator(self, offset: int) -> torch.Generator:
        seed = self.tr.config.training.seed + offset
        return torch.Generator(device=self.tr.device).manual_seed(seed)

    def after_step(self) -> dict[str, float]:
        """The work due at the run's step; returns what it measured (``test_loss`` and/or the
        ``eval.metric`` name, e.g. ``fid``)."""
        tr, cfg = self.tr, self.tr.config
        step, results = tr.step, {}
        if cfg.training.test_freq and step % cfg.training.test_freq == 0:
            results["test_loss"] = self.test_loss()
        if cfg.training.sample_freq and step % cfg.training.sample_freq == 0:
            self.sample_grid(tr.run_dir / "samples" / f"step_{step:08d}.png")
        if cfg.eval.every and step % cfg.eval.every == 0:
            results[cfg.eval.metric] = self.evaluate()
        return results

    @torch.no_grad()
    def test_loss(self) -> float:
        """DSM loss of the eval network on (up to) ``test_batch_size`` test images (with their
        labels for a class-conditional net), with the same levels and noise every time (so
        values are comparable across steps)."""
        tr = self.tr
        assert self.test_images is not None
        n = tr.config.training.test_batch_size
        x = to_model_space(to_float(self.test_images[:n]), tr.config.data.logit).to(tr.device)
        net = tr.eval_model.eval()
        score = net if self.test_labels is None else labelled(net, self.test_labels[:n]
                                                               .to(tr.device))
        loss = dsm_loss(score, x, tr.sigmas_dev, anneal_power=tr.config.training.anneal_power,
                        sigma_data=tr.loss_sigma_data,
                        generator=self._generator(TEST_SEED_OFFSET))
        return float(loss)

    @torch.no_grad()
    def samples(self, n: int, offset: int) -> Tensor:
        """``n`` images in [0, 1] from the eval network with the model's default sampler."""
        tr = self.tr
        model = ScoreModel(tr.eval_model.eval(), tr.model_spec(), tr.device)
        return model.sample(n, seed=tr.config.training.seed + offset, batch_size=SAMPLE_BATCH)

    def sample_grid(self, path: Path) -> Path | None:
        """The grid of the step's samples; None (and an event in the log) when the samples
        came out non-finite: a training step is not stopped by its grid."""
        n = min(self.tr.config.sampling.num_samples, GRID_MAX)
        try:
            images = self.samples(n, SAMPLE_SEED_OFFSET).cpu()
        except NonFiniteSamplesError:
            self.tr.log.write({"step": self.tr.step, "event": "nonfinite_samples"})
            return None
        self.tr.log.image("samples", make_grid(images), self.tr.step)
        return save_grid(images, path)

    def _reference(self) -> Tensor | str:
        ref = self.tr.config.eval.reference
        if ref == "test":
            assert self.test_images is not None
            return to_float(self.test_images)
        if ref == "train":
            return to_float(self.tr.train_images)
        return ref

    def evaluate(self) -> float:
        """``eval.metric`` of ``eval.num_samples`` samples (``ncsn.eval.score_samples``)."""
        from ncsn import eval as ncsn_eval

        tr, e = self.tr, self.tr.config.eval
        try:
            samples = self.samples(e.num_samples, EVAL_SEED_OFFSET)
        except NonFiniteSamplesError:
            return float("nan")  # never an improvement (see Trainer._record)
        result = ncsn_eval.score_samples(samples.cpu(), self._reference(), metrics=(e.metric,),
                                         device=tr.device)
        return float(result[e.metric])
