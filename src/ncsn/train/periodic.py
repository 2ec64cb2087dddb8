"""Work done every N training steps on rank 0: test-split DSM loss, sample grids, FID/KID with
best-checkpoint keeping. Each uses its own seeded generator, so it never changes the training
random stream (a run with or without these logs trains the same weights)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ncsn.config import Config
from ncsn.core.losses import dsm_loss
from ncsn.core.samplers import Callback, annealed_langevin
from ncsn.data import inverse_logit_transform, logit_transform, to_float
from ncsn.imageio import make_grid, save_grid
from ncsn.train import checkpoint as ckpt
from ncsn.train.setup import load_split, resolve_step_size

if TYPE_CHECKING:
    from ncsn.train.trainer import Trainer

TEST_SEED_OFFSET = 1
SAMPLE_SEED_OFFSET = 2
EVAL_SEED_OFFSET = 3
GRID_MAX = 64
SAMPLE_BATCH = 500


@torch.no_grad()
def sample_images(net: nn.Module, config: Config, sigmas: Tensor, n: int, channels: int,
                  image_size: int, generator: torch.Generator, device: torch.device,
                  callback: Callback | None = None) -> Tensor:
    """``n`` samples by annealed Langevin dynamics from uniform noise (Algorithm 1), in [0, 1]."""
    s, logit = config.sampling, config.data.logit
    step = resolve_step_size(s, sigmas)
    out = []
    for start in range(0, n, SAMPLE_BATCH):
        b = min(SAMPLE_BATCH, n - start)
        x = torch.rand((b, channels, image_size, image_size), generator=generator, device=device)
        if logit:
            x = logit_transform(x)
        x = annealed_langevin(net, x, sigmas.to(device), s.n_steps_each, step,
                              convention=s.convention, final_denoise=s.final_denoise,
                              generator=generator, callback=callback)
        out.append(inverse_logit_transform(x) if logit else x)
    return torch.cat(out).clamp(0.0, 1.0)


class Periodic:
    """Test loss every ``training.test_freq``, a grid every ``training.sample_freq`` and the
    configured metric every ``eval.every`` steps (0 turns each off)."""

    def __init__(self, trainer: Trainer) -> None:
        self.tr = trainer
        cfg = trainer.config
        need_test = cfg.training.test_freq > 0 or (cfg.eval.every > 0
                                                   and cfg.eval.reference == "test")
        self.test_images = load_split(cfg, "test") if need_test and trainer.info.is_main else None

    def _generator(self, offset: int) -> torch.Generator:
        seed = self.tr.config.training.seed + offset
        return torch.Generator(device=self.tr.device).manual_seed(seed)

    def after_step(self) -> None:
        tr, cfg = self.tr, self.tr.config
        step = tr.step
        if cfg.training.test_freq and step % cfg.training.test_freq == 0:
            tr.log.write({"step": step, "test_loss": self.test_loss()})
        if cfg.training.sample_freq and step % cfg.training.sample_freq == 0:
            self.sample_grid(tr.run_dir / "samples" / f"step_{step:08d}.png")
        if cfg.eval.every and step % cfg.eval.every == 0:
            self.evaluate()

    @torch.no_grad()
    def test_loss(self) -> float:
        """DSM loss of the eval network on (up to) ``test_batch_size`` test images, with the
        same levels and noise every time (so values are comparable across steps)."""
        tr = self.tr
        assert self.test_images is not None
        x = to_float(self.test_images[:tr.config.training.test_batch_size]).to(tr.device)
        if tr.config.data.logit:
            x = logit_transform(x)
        net = tr.eval_model.eval()
        loss = dsm_loss(net, x, tr.sigmas_dev, anneal_power=tr.config.training.anneal_power,
                        generator=self._generator(TEST_SEED_OFFSET))
        return float(loss)

    def samples(self, n: int, offset: int) -> Tensor:
        tr = self.tr
        net = tr.eval_model.eval()
        return sample_images(net, tr.config, tr.sigmas, n, tr.channels, tr.image_size,
                             self._generator(offset), tr.device)

    def sample_grid(self, path: Path) -> Path:
        n = min(self.tr.config.sampling.num_samples, GRID_MAX)
        images = self.samples(n, SAMPLE_SEED_OFFSET).cpu()
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

    def evaluate(self) -> None:
        """Score samples with ``ncsn.eval.score_samples``; save ``best.pt`` when improved (a NaN
        score never is; a resumed run with another ``eval.metric`` starts its best afresh)."""
        from ncsn import eval as ncsn_eval

        tr, e = self.tr, self.tr.config.eval
        samples = self.samples(e.num_samples, EVAL_SEED_OFFSET)
        result = ncsn_eval.score_samples(samples.cpu(), self._reference(), metrics=(e.metric,),
                                         device=tr.device)
        value = float(result[e.metric])
        improved = math.isfinite(value) and (tr.best is None or tr.best["metric"] != e.metric
                                             or value < tr.best["value"])
        if improved:
            tr.best = {"metric": e.metric, "value": value, "step": tr.step}
            ckpt.save_atomic(tr.state_dict(), tr.ckpt_dir / ckpt.BEST_NAME)
        tr.log.write({"step": tr.step, e.metric: value, "best": improved,
                      "eval_num_samples": e.num_samples})
