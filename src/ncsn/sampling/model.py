"""A loaded model: :func:`load` returns a :class:`ScoreModel`, the object that ``ncsn sample``,
``ncsn inpaint``, ``ncsn evaluate --model``, the trainer's grids, the demo and the Python API
(``ncsn.load``) all sample through.

    model = load("runs/demo")
    images = model.sample(16, sampler="dpm_solver_2m", nfe=20)   # (16, C, H, W) in [0, 1]
    sevens = model.sample(16, labels=7)                           # a class-conditional model

Mistakes in the arguments raise :class:`ncsn.errors.UserError` with a one-line message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ncsn.core import ScoreFn
from ncsn.core import samplers as core
from ncsn.core.inverse import LinearObservation
from ncsn.devices import resolve_device
from ncsn.errors import UserError, check_counts
from ncsn.nets.io import load_model, resolve_model_path
from ncsn.nets.registry import accepts_any_sigma, class_count, labelled
from ncsn.sampling.guidance import ClassifierInput, classifier_guidance
from ncsn.sampling.inpainting import check_masks, inpaint_batches, make_masks
from ncsn.sampling.pipeline import (
    BatchScores,
    SamplingPlan,
    counting,
    plan_sampling,
    restore_batches,
    sample_batches,
)
from ncsn.sampling.restoration import check_observation, make_operator
from ncsn.spec.model import ModelSpec
from ncsn.spec.values import MAX_BATCH, MAX_IMAGES, MAX_LEVELS, MAX_NFE, MAX_SEED

TORCH_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")
# what a class-conditional model is asked for: a class, one class per image, "balanced"
# (image i gets class i mod K, the default) or "none" (the unconditional score)
Labels = int | Sequence[int] | Tensor | str | None
LABEL_WORDS = ("balanced", "none")


def guided(net: Callable[..., Tensor], labels: Tensor, null: int, scale: float) -> ScoreFn:
    """Classifier-free guidance (Ho & Salimans 2022) as a score function:
    s(x, sigma | y) + w (s(x, sigma | y) - s(x, sigma)), both terms from one network call on
    the doubled batch; ``null`` is the "no label" class, ``scale`` w (0: s(x, sigma | y))."""
    if not scale:
        return labelled(net, labels)
    both_labels = torch.cat([labels, torch.full_like(labels, null)])

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        cond, uncond = net(torch.cat([x, x]), torch.cat([sigma, sigma]), both_labels).chunk(2)
        return cond + scale * (cond - uncond)

    return score


class ScoreModel:
    """A trained noise-conditional score network s(x, sigma) with its model spec.

    ``net`` is the network (eval mode) on ``device``; ``spec`` the model file's
    :class:`~ncsn.spec.model.ModelSpec` (network, image shape, noise levels, data space, stored
    sampling choice); ``path`` the model file's stem, when it came from one. Make one with
    :func:`load`.
    """

    def __init__(self, net: nn.Module, spec: ModelSpec, device: torch.device,
                 path: Path | None = None) -> None:
        self.net, self.spec, self.device, self.path = net, spec, device, path

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        s = self.spec.sigmas
        return (f"ScoreModel({self.spec.network['name']}, {c}x{h}x{w} images, "
                f"{len(s)} noise levels {s[0]:.4g} -> {s[-1]:.4g}, device {self.device})")

    @property
    def sigmas(self) -> Tensor:
        """The model's noise levels sigma_1 > ... > sigma_L (float32, on the CPU)."""
        return self.spec.sigma_tensor()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model's images."""
        return self.spec.image_shape

    @property
    def continuous(self) -> bool:
        """Whether the network accepts any sigma (False: only its trained levels, as the paper's
        CondRefineNetDilated; such a model samples only on its own schedule)."""
        return accepts_any_sigma(self.net)

    @property
    def num_classes(self) -> int:
        """Classes of a class-conditional model (0: unconditional)."""
        return class_count(self.net)

    def class_labels(self, labels: Labels, n: int, *, start: int = 0) -> Tensor | None:
        """The labels (n,) that ``labels`` asks for (see :meth:`sample`), None for an
        unconditional model; ``start`` offsets ``balanced`` (image i gets (start + i) mod K)."""
        k = self.num_classes
        if isinstance(labels, str) and labels not in LABEL_WORDS:
            raise UserError(f"labels (--class) must be a class, {' or '.join(LABEL_WORDS)}, "
                            f"got {labels!r}")
        if not k:
            if labels is None or labels == "none":
                return None
            raise UserError("this model is not class-conditional (its network has no "
                            "num_classes): sample it without labels (--class), or guide it "
                            "with a classifier (--classifier, from ncsn train-classifier)")
        if labels is None or labels == "balanced":
            return (torch.arange(n) + start) % k
        if labels == "none":
            return torch.full((n,), k)
        if isinstance(labels, bool) or not isinstance(labels, int | Sequence | Tensor):
            raise UserError(f"labels must be a class, a list of n classes, 'balanced' or "
                            f"'none', got {type(labels).__name__}")
        values = torch.as_tensor(labels)
        if values.is_floating_point() or values.is_complex():
            raise UserError(f"labels must be integers, got {values.dtype}")
        values = values.reshape(-1).long().cpu()
        if values.numel() == 1:
            values = values.expand(n)
        if values.numel() != n:
            raise UserError(f"labels: give one class or {n} (one per image), got {values.numel()}")
        if not bool(((values >= 0) & (values < k)).all()):
            raise UserError(f"labels (--class) must lie in 0..{k - 1} (the model's {k} classes), "
                            f"got {sorted(set(values.tolist()) - set(range(k)))[:3]}")
        return values.clone()

    def _completion_labels(self, labels: Labels, n: int, k: int) -> Tensor | None:
        """The labels of ``k`` completions of each of ``n`` images (completion j of image i at
        i k + j), from ``labels`` for the images (see :meth:`class_labels`)."""
        classes = self.class_labels(labels, n)
        return None if classes is None else classes.repeat_interleave(k)

    def _planned(self, plan: SamplingPlan | None, choices: dict[str, Any]) -> SamplingPlan:
        """``plan``, or the plan of the sampling ``choices`` (not both)."""
        if plan is None:
            return self.plan(**choices)
        if choices:
            raise UserError(f"give a plan or sampling choices, not both ({', '.join(choices)})")
        return plan

    def _guidance(self, guidance: float) -> float:
        if not isinstance(guidance, int | float) or isinstance(guidance, bool) \
                or not math.isfinite(guidance) or guidance < 0:
            raise UserError(f"guidance scale (--guidance-scale) must be a finite number >= 0, "
                            f"got {guidance!r}")
        if guidance and not self.num_classes:
            raise UserError("guidance needs a class-conditional model; this one has no "
                            "num_classes")
        return float(guidance)

    def to(self, device: str | torch.device) -> ScoreModel:
        """Move the network to ``device`` (checked first); returns this model."""
        self.device = resolve_device(device)
        self.net.to(self.device)
        return self

    def score(self, x: Tensor, sigma: float | Tensor, labels: Labels = "none") -> Tensor:
        """The network's estimate of grad_x log p_sigma(x) (paper Sec. 4.1, s_theta(x, sigma));
        for a class-conditional model, of grad_x log p_sigma(x | y) with ``labels`` (see
        :meth:`sample`; default ``none``, the unconditional score).

        ``x`` (B, C, H, W) is in the network's data space (pixels in [0, 1]; logits for a model
        trained on logit-transformed data); ``sigma`` is one float for all images or a (B,)
        tensor. A model trained on discrete levels takes only those. Runs without autograd
        unless ``x`` requires grad; the result is on the model's device.
        """
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise UserError(f"x must be a tensor (B, {', '.join(map(str, self.image_shape))}), "
                            f"got {shape}")
        batch = x.shape[0]
        sigma_t = torch.as_tensor(sigma, dtype=torch.float32).detach().reshape(-1).cpu()
        if sigma_t.numel() == 1:
            sigma_t = sigma_t.expand(batch)
        if sigma_t.numel() != batch or not bool((sigma_t > 0).all()):
            raise UserError(f"sigma must be one positive number or {batch} of them (one per "
                            f"image), got {tuple(torch.as_tensor(sigma).shape)} values")
        classes = self.class_labels(labels, batch)
        net = self.net if classes is None else labelled(self.net, classes.to(self.device))
        with torch.set_grad_enabled(x.requires_grad):
            try:  # a discrete-level network checks that each sigma is one of its levels
                return net(x.to(self.device, torch.float32), sigma_t.to(self.device))
            except ValueError as err:
                if self.continuous:
                    raise
                raise UserError(str(err)) from None

    def plan(self, *, sampler: str | None = None, nfe: int | None = None,
             schedule: str | None = None, num_levels: int | None = None,
             rho: float | None = None, sigma_min: float | None = None,
             label: Callable[[Any], str] | None = None, **settings: Any) -> SamplingPlan:
        """What :meth:`sample` and :meth:`inpaint` run with these arguments: the sampler, its
        complete settings, the noise schedule and the cost in network evaluations per image
        (``plan(...).describe()`` says it in one line). Arguments left None come from the model's
        stored choices (``ncsn samplers`` lists the samplers and their settings); ``label``
        names a setting in error messages."""
        check_counts(MAX_NFE, nfe=nfe)
        check_counts(MAX_LEVELS, num_levels=num_levels)
        return plan_sampling(self.spec, continuous=self.continuous, sampler=sampler, nfe=nfe,
                             schedule=schedule, num_levels=num_levels, rho=rho,
                             sigma_min=sigma_min, settings=settings, label=label)

    @contextmanager
    def _scores(self, labels: Tensor | None, guidance: float, total: int, desc: str,
                progress: bool) -> Iterator[BatchScores]:
        """Score functions for images start..stop (with their ``labels`` and classifier-free
        ``guidance``), ticking a tqdm bar per network evaluation if ``progress``."""
        bar = tqdm(total=total, desc=desc, unit="eval", dynamic_ncols=True) if progress else None

        def scores(start: int, stop: int) -> ScoreFn:
            score: ScoreFn = self.net if labels is None else guided(
                self.net, labels[start:stop].to(self.device), self.num_classes, guidance)
            return score if bar is None else counting(score, lambda: bar.update(1))

        with bar if bar is not None else nullcontext():
            yield scores

    @staticmethod
    def _check_run(seed: int, batch_size: int, **counts: int) -> None:
        """UserError (before any work) unless ``seed``, ``batch_size`` and the image
        ``counts`` are integers within the CLI's bounds (:mod:`ncsn.spec.values`)."""
        check_counts(MAX_SEED, minimum=0, seed=seed)
        check_counts(MAX_BATCH, batch_size=batch_size)
        check_counts(MAX_IMAGES, **counts)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def sample_batches(self, n: int, *, plan: SamplingPlan | None = None, seed: int = 0,
                       batch_size: int = 64, progress: bool = False,
                       callback: core.Callback | None = None, labels: Labels = None,
                       guidance: float = 0.0, batches: Sequence[int] | None = None,
                       **choices: Any) -> Iterator[Tensor]:
        """:meth:`sample` batch by batch: yields (at most ``batch_size``, C, H, W) images in
        [0, 1] on the CPU, so any number of images needs bounded memory. ``plan`` (from
        :meth:`plan`) replaces the sampling ``choices``; ``callback`` sees every update (see
        :func:`ncsn.sampling.sample_batches`). ``batches`` (batch numbers, default all) draws
        only those batches, each equal to the same batch of the whole set: batch b holds
        images b ``batch_size`` on and draws from its own seed (resumed runs, ranks). Every
        argument is checked when it is called, before the first batch is asked for."""
        self._check_run(seed, batch_size, n=n)
        chosen = _batch_numbers(n, batch_size, batches)
        classes, scale = self.class_labels(labels, n), self._guidance(guidance)
        plan = self._planned(plan, choices)
        return self._drawn(n, plan, seed, batch_size, chosen, callback, progress, "sampling",
                           classes=classes, scale=scale)

    def _drawn(self, n: int, plan: SamplingPlan, seed: int, batch_size: int,
               chosen: Sequence[int], callback: core.Callback | None, progress: bool, what: str,
               *, classes: Tensor | None = None, scale: float = 0.0,
               guide: Callable[[ScoreFn], ScoreFn] | None = None) -> Iterator[Tensor]:
        """The batches ``chosen`` of a checked sampling run (``guide``: classifier guidance)."""
        with self._scores(classes, scale, len(chosen) * plan.nfe, what, progress) as scores:
            draw = scores
            if guide is not None:
                guided = guide(scores(0, n))

                def draw(start: int, stop: int) -> ScoreFn:  # one score for every batch
                    return guided
            yield from sample_batches(draw, plan, n, self.image_shape, seed=seed,
                                      device=self.device, batch_size=batch_size,
                                      callback=callback, batches=chosen)

    def sample(self, n: int, *, plan: SamplingPlan | None = None, seed: int = 0,
               batch_size: int = 64, progress: bool = False, labels: Labels = None,
               guidance: float = 0.0, **choices: Any) -> Tensor:
        """``n`` images (N, C, H, W) in [0, 1] on the CPU, drawn in batches of ``batch_size``,
        batch b from a generator seeded with :func:`~ncsn.seeding.batch_seed` ``(seed, b)``
        (the images ``ncsn sample --seed`` writes).

        The sampling choices are those of :meth:`plan`: ``sampler``, ``nfe`` (a budget of
        network evaluations per image), ``schedule`` (``model``, ``geometric``, ``karras``),
        ``num_levels``, ``rho``, ``sigma_min`` and the sampler's own settings (e.g.
        ``n_steps_each=50``, ``s_churn=0``), or a ``plan``. ``progress`` shows a bar over network
        evaluations.

        A class-conditional model (:attr:`num_classes` > 0) takes ``labels``: a class for all
        images, one class per image, ``"balanced"`` (image i gets class i mod K; the default)
        or ``"none"`` (the unconditional score); ``guidance`` w > 0 samples with
        classifier-free guidance, s(x | y) + w (s(x | y) - s(x)), at twice the network work
        per evaluation.
        """
        return torch.cat(list(self.sample_batches(n, plan=plan, seed=seed, batch_size=batch_size,
                                                  progress=progress, labels=labels,
                                                  guidance=guidance, **choices)))

    def sample_class_batches(self, n: int, label: int, classifier: str | Path, *,
                             scale: float = 1.0, plan: SamplingPlan | None = None, seed: int = 0,
                             batch_size: int = 64, progress: bool = False,
                             callback: core.Callback | None = None,
                             batches: Sequence[int] | None = None,
                             classifier_input: ClassifierInput = "noisy",
                             **choices: Any) -> Iterator[Tensor]:
        """:meth:`sample_class` batch by batch (as :meth:`sample_batches`; the classifier is
        checked when it is called)."""
        self._check_run(seed, batch_size, n=n)
        chosen = _batch_numbers(n, batch_size, batches)
        plan = self._planned(plan, choices)
        guide = classifier_guidance(classifier, label, scale, plan, self.image_shape, self.device,
                                    classifier_input)
        return self._drawn(n, plan, seed, batch_size, chosen, callback, progress,
                           f"class {label}", guide=guide)

    def sample_class(self, n: int, label: int, classifier: str | Path, *, scale: float = 1.0,
                     plan: SamplingPlan | None = None, seed: int = 0, batch_size: int = 64,
                     progress: bool = False, classifier_input: ClassifierInput = "noisy",
                     **choices: Any) -> Tensor:
        """``n`` images (N, C, H, W) in [0, 1] of class ``label`` by classifier guidance: every
        sampler runs on s(x, sigma) + ``scale`` grad log p(label | x, sigma) with the
        noise-conditional classifier file ``classifier`` (``ncsn train-classifier``), which must
        fit the model's images and the plan's sigmas (:mod:`ncsn.sampling.guidance`). Each
        step costs one classifier forward and backward pass on top of the network.
        ``classifier_input="denoised"`` asks the classifier about the denoised estimate
        x + sigma^2 s(x, sigma) instead, the gradient through the network (its backward pass
        added; it helps a weak classifier, docs/controllable.md). The other
        arguments are those of :meth:`sample` (the images ``ncsn sample --class`` writes)."""
        return torch.cat(list(self.sample_class_batches(
            n, label, classifier, scale=scale, plan=plan, seed=seed, batch_size=batch_size,
            progress=progress, classifier_input=classifier_input, **choices)))

    def inpaint_batches(self, images: Tensor, mask: Tensor | str, *, k: int = 1,
                        plan: SamplingPlan | None = None, seed: int = 0, batch_size: int = 64,
                        progress: bool = False, fraction: float = 0.5, box: int | None = None,
                        labels: Labels = "none", guidance: float = 0.0,
                        **choices: Any) -> Iterator[tuple[int, Tensor]]:
        """:meth:`inpaint` batch by batch: yields (start, completions) with completion j of
        image i at number i k + j. Every argument is checked when it is called."""
        self._check_run(seed, batch_size, k=k)
        images = self._check_images(images)
        check_counts(MAX_IMAGES, **{"images x k": images.shape[0] * k})
        masks = self.masks(mask, images.shape[0], fraction=fraction, box=box, seed=seed)
        classes, scale = self._completion_labels(labels, images.shape[0], k), \
            self._guidance(guidance)
        plan = self._planned(plan, choices)
        total = math.ceil(images.shape[0] * k / batch_size) * plan.nfe
        return self._completed(classes, scale, total, "inpainting", progress, lambda scores:
                               inpaint_batches(scores, plan, images, masks, k,
                                               generator=self._generator(seed),
                                               device=self.device, batch_size=batch_size))

    def _completed(self, classes: Tensor | None, scale: float, total: int, what: str,
                   progress: bool, run: Callable[[Any], Iterator[tuple[int, Tensor]]]
                   ) -> Iterator[tuple[int, Tensor]]:
        """The (start, images) batches ``run(scores)`` yields for a checked completion run."""
        with self._scores(classes, scale, total, what, progress) as scores:
            yield from run(scores)

    def inpaint(self, images: Tensor, mask: Tensor | str, *, k: int = 1,
                plan: SamplingPlan | None = None, seed: int = 0, batch_size: int = 64,
                progress: bool = False, fraction: float = 0.5, box: int | None = None,
                labels: Labels = "none", guidance: float = 0.0, **choices: Any) -> Tensor:
        """``k`` completions of each image (paper Algorithm 2 for annealed Langevin; any
        registered sampler with the observed pixels imposed at every step): a tensor
        (N k, C, H, W) in [0, 1] on the CPU, completion j of image i at index i k + j, equal to
        ``images`` wherever the mask is 1 (the images ``ncsn inpaint --seed`` writes).

        ``images``: (N, C, H, W) floats in [0, 1]. ``mask``: see :meth:`masks`. ``labels``
        (one per image, or one for all) defaults to ``none``: the unconditional score. The
        other arguments are those of :meth:`sample`.
        """
        return torch.cat([batch for _, batch in self.inpaint_batches(
            images, mask, k=k, plan=plan, seed=seed, batch_size=batch_size, progress=progress,
            fraction=fraction, box=box, labels=labels, guidance=guidance, **choices)])

    def operator(self, task: str, n: int = 1, *, noise_std: float = 0.0, factor: int = 2,
                 keep_fraction: float = 0.25, mask: Tensor | str = "right",
                 fraction: float = 0.5, box: int | None = None,
                 seed: int = 0) -> LinearObservation:
        """The observation of a named ``task`` for ``n`` images of this model (see
        :func:`ncsn.sampling.restoration.make_operator`): ``inpaint`` (``mask``, ``fraction``,
        ``box`` as in :meth:`masks`), ``colorize``, ``superres`` (``factor``), ``denoise`` or
        ``frequencies`` (``keep_fraction``), with observation noise ``noise_std``.
        ``operator.observe(images)`` makes the observation :meth:`restore` takes."""
        check_counts(MAX_IMAGES, n=n)
        return make_operator(task, n, self.image_shape, noise_std=noise_std, factor=factor,
                             keep_fraction=keep_fraction, mask=mask, fraction=fraction, box=box,
                             seed=seed)

    def restore_batches(self, y: Tensor, operator: LinearObservation, *, k: int = 1,
                        plan: SamplingPlan | None = None, seed: int = 0, batch_size: int = 64,
                        progress: bool = False, labels: Labels = "none", guidance: float = 0.0,
                        **choices: Any) -> Iterator[tuple[int, Tensor]]:
        """:meth:`restore` batch by batch: yields (start, images) with sample j of observation i
        at number i k + j. Every argument is checked when it is called."""
        self._check_run(seed, batch_size, k=k)
        plan = self._planned(plan, choices)
        y = check_observation(y, operator, plan, self.image_shape)
        check_counts(MAX_IMAGES, **{"observations x k": y.shape[0] * k})
        classes, scale = self._completion_labels(labels, y.shape[0], k), self._guidance(guidance)
        total = math.ceil(y.shape[0] * k / batch_size) * plan.nfe
        return self._completed(classes, scale, total, "restoring", progress, lambda scores:
                               restore_batches(scores, plan, y, operator, k,
                                               generator=self._generator(seed),
                                               device=self.device, batch_size=batch_size))

    def restore(self, y: Tensor, operator: LinearObservation, *, k: int = 1,
                plan: SamplingPlan | None = None, seed: int = 0, batch_size: int = 64,
                progress: bool = False, labels: Labels = "none", guidance: float = 0.0,
                **choices: Any) -> Tensor:
        """``k`` samples of x given each observation y = M (U x) + s e (:mod:`ncsn.core.inverse`:
        Algorithm 2 generalised, with any registered sampler; noisy observations need one that
        follows the reverse process): a tensor (N k, C, H, W) in [0, 1] on the CPU, sample j of
        observation i at index i k + j, whose observed coefficients are those of ``y`` when
        s = 0 (up to clipping into [0, 1]).

        ``y``: (N, C, H, W) images whose observed coefficients are the observation, e.g.
        ``operator.observe(images)``; ``operator``: from :meth:`operator` or built with
        :mod:`ncsn.core.inverse`. ``labels`` (one per observation, or one for all; default
        ``none``) and ``guidance`` as in :meth:`inpaint`; the other arguments are those of
        :meth:`sample`.
        """
        return torch.cat([batch for _, batch in self.restore_batches(
            y, operator, k=k, plan=plan, seed=seed, batch_size=batch_size, progress=progress,
            labels=labels, guidance=guidance, **choices)])

    def masks(self, mask: Tensor | str, n: int, *, fraction: float = 0.5,
              box: int | None = None, seed: int = 0) -> Tensor:
        """Masks (n, 1 or C, H, W) of 0 (hidden) and 1 (observed) for ``n`` images: ``mask`` is
        a tensor (N or 1, 1 or C, H, W), or a name: ``right``/``lower`` hide that half,
        ``center`` a centred ``box`` x ``box`` square (default half the side), ``random`` each
        pixel with probability ``fraction`` (drawn from ``seed``); any other string is a mask
        image file (white = observed)."""
        check_counts(MAX_IMAGES, n=n)
        channels, size, _ = self.image_shape
        if isinstance(mask, str | Path):
            return make_masks(str(mask), n, size, fraction=fraction, box=box,
                              generator=torch.Generator().manual_seed(seed))
        return check_masks(mask, n, channels, size)

    def _check_images(self, images: Tensor) -> Tensor:
        """``images`` as float32 (N, C, H, W) in [0, 1] on the CPU (UserError otherwise)."""
        expected = f"(N, {', '.join(map(str, self.image_shape))})"
        if not isinstance(images, Tensor):
            raise UserError(f"images must be a float tensor {expected} in [0, 1], got "
                            f"{type(images).__name__}")
        if images.dim() != 4 or images.shape[0] < 1 or \
                tuple(images.shape[1:]) != self.image_shape:
            raise UserError(f"images have shape {tuple(images.shape)}; the model takes "
                            f"{expected}")
        if not images.is_floating_point():
            raise UserError(f"images are {images.dtype}; pass floats in [0, 1] (uint8 pixels: "
                            "images / 255)")
        images = images.detach().float().cpu()
        if not bool(((images >= 0) & (images <= 1)).all()):
            raise UserError("image values must lie in [0, 1]")
        return images


def _batch_numbers(n: int, batch_size: int, batches: Sequence[int] | None) -> list[int]:
    """The batch numbers to draw of ``n`` images in batches of ``batch_size`` (None: all)."""
    count = math.ceil(n / batch_size)
    if batches is None:
        return list(range(count))
    chosen = list(batches)
    if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < count
               for b in chosen):
        raise UserError(f"batches must be batch numbers in 0..{count - 1} ({n} images in "
                        f"batches of {batch_size}), got {chosen[:5]}")
    return chosen


def load(path: str | Path, device: str | torch.device = "cpu") -> ScoreModel:
    """Load a model: a run directory (its ``model_ema`` or ``model`` files), a model's
    ``.safetensors`` or ``.json`` file, or their common stem (also what ``ncsn convert-official``
    writes from an official checkpoint). The network is put on ``device`` in eval mode."""
    path = Path(path)
    if path.suffix in TORCH_CHECKPOINT_SUFFIXES and path.is_file():
        raise UserError(f"{path} is a torch checkpoint, not a model file; convert it once with "
                        f"`ncsn convert {path} --from official-ncsn|official-ncsnv2|score-sde "
                        "--config NAME --out STEM` (official NCSN: also `ncsn convert-official "
                        "--preset`) and load STEM")
    resolved = resolve_device(device)
    net, spec = load_model(path, device=resolved)
    return ScoreModel(net, spec, resolved, resolve_model_path(path))
