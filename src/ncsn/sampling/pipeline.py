"""From a network and its :class:`~ncsn.spec.model.ModelSpec` to images: the one path under
``ncsn sample``, ``ncsn inpaint``, the trainer's grids, ``ncsn evaluate --model``, the demo and
the Python API (all through :class:`ncsn.sampling.ScoreModel`).

1. :func:`plan_sampling` resolves what to run from the model's stored sampling choice and the
   caller's: the sampler with its complete settings, the noise schedule (the model's own levels,
   geometric or Karras over the model's sigma range) and the cost in network evaluations (at
   most ``nfe`` when a budget is given).
2. :func:`draw_prior` draws the sampler's starting point in the model's data space
   (:func:`ncsn.data.to_model_space` / :func:`ncsn.data.to_pixels` are the round trip).
3. :func:`sample_batches` and :func:`restore_images` (:func:`inpaint_images`) run the plan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ncsn.core import ScoreFn, inverse
from ncsn.core import samplers as core
from ncsn.core.noise import geometric_sigmas, karras_sigmas
from ncsn.data.transforms import to_model_space, to_pixels
from ncsn.errors import UserError
from ncsn.sampling.registry import SCHEDULES, Sampler, sampler_entry
from ncsn.seeding import batch_seed
from ncsn.spec.model import ModelSpec, StoredSampling
from ncsn.spec.samplers import DEFAULT_RHO, SamplerSettings, fit_steps, levels_for_budget
from ncsn.spec.validation import build_settings
from ncsn.spec.values import MAX_NFE


@dataclass(frozen=True)
class SamplingPlan:
    """Everything needed to draw samples: the sampler's complete settings, the schedule, the
    cost in network evaluations per image and the data space."""

    settings: SamplerSettings
    sigmas: Tensor
    schedule: str
    nfe: int
    logit: bool = False
    rho: float = DEFAULT_RHO

    @property
    def sampler(self) -> str:
        return self.settings.sampler

    @property
    def entry(self) -> Sampler:
        return sampler_entry(self.sampler)

    def describe(self) -> str:
        """One line: sampler, schedule, levels, evaluations and settings."""
        s = self.sigmas
        levels = f"{s.numel()} {self.schedule} levels {float(s[0]):.4g} -> {float(s[-1]):.4g}"
        opts = "".join(f"; {k}={v}" for k, v in self.settings.options().items())
        return f"{self.sampler} ({levels}; {self.nfe} network evaluations{opts})"

    def record(self) -> dict[str, Any]:
        """A JSON-ready record (for sample folders and run summaries)."""
        return {"sampler": self.sampler, "schedule": self.schedule, "nfe": self.nfe,
                "num_levels": int(self.sigmas.numel()), "rho": self.rho,
                "sigma_max": float(self.sigmas[0]), "sigma_min": float(self.sigmas[-1]),
                "settings": self.settings.options(), "logit": self.logit}


def _schedule_sigmas(kind: str, sigma_max: float, sigma_min: float, levels: int,
                     rho: float) -> Tensor:
    if kind == "geometric":
        return geometric_sigmas(sigma_max, sigma_min, levels)
    return karras_sigmas(sigma_max, sigma_min, levels, rho)


def plan_sampling(spec: ModelSpec, *, continuous: bool, sampler: str | None = None,
                  nfe: int | None = None, schedule: str | None = None,
                  num_levels: int | None = None, rho: float | None = None,
                  sigma_min: float | None = None,
                  settings: Mapping[str, Any] | None = None,
                  label: Callable[[Any], str] | None = None) -> SamplingPlan:
    """Resolve what to run. Arguments left None come from the model's stored choice when the
    sampler is the stored one, else from the sampler's defaults. ``continuous`` says whether the
    network accepts any sigma; a network that knows only its trained levels runs only on the
    ``model`` schedule and only samplers that evaluate the score on the schedule's levels.
    ``nfe`` is a budget: the plan costs at most that many network evaluations. ``sigma_min``
    ends a geometric or Karras schedule above the model's smallest level (few-step samplers
    gain from it: docs/sampling.md). ``label`` names a setting in error messages (the CLI gives
    its flag)."""
    stored = spec.sampling
    name = sampler or stored.sampler
    sampler_entry(name)
    base = stored if name == stored.sampler else StoredSampling(
        settings=build_settings(name, {}))
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    chosen = build_settings(name, {**base.settings.given(), **given}, label=label)
    nfe = nfe if nfe is not None else base.nfe
    num_levels = num_levels if num_levels is not None else base.num_levels
    rho = float(rho if rho is not None else base.rho)
    sigma_min = sigma_min if sigma_min is not None else base.sigma_min
    model_sigmas = spec.sigma_tensor()
    kind = schedule or base.schedule or (chosen.default_schedule if continuous else "model")
    if kind not in SCHEDULES:
        raise UserError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if nfe is not None and nfe < 1:
        raise UserError(f"nfe must be >= 1, got {nfe}")
    if not continuous:
        if kind != "model":
            raise UserError(f"this network knows only its {model_sigmas.numel()} trained noise "
                            f"levels, so it cannot follow a {kind} schedule; use schedule "
                            "'model' (--schedule model)")
        if chosen.between_levels():
            raise UserError(f"sampler {name} with these settings evaluates the score between the "
                            "noise levels, which this network (trained on discrete levels only) "
                            "cannot do; choose another sampler or settings (e.g. s_churn 0)")
    respaced = kind != "model" and chosen.respace and nfe is not None and num_levels is None
    try:
        if kind == "model":
            if num_levels is not None and num_levels != model_sigmas.numel():
                raise ValueError(f"the model's schedule has {model_sigmas.numel()} levels, not "
                                 f"{num_levels}; drop the number of levels (--levels)"
                                 + ("" if not continuous else " or pick another schedule"))
            sigmas = model_sigmas
            if sigma_min is not None:
                raise ValueError("a sigma_min (--sigma-min) needs a geometric or karras schedule; "
                                 "the model's own levels are fixed")
        else:
            levels = levels_for_budget(chosen, nfe) if respaced else \
                num_levels or model_sigmas.numel()
            lowest = float(model_sigmas[-1]) if sigma_min is None else float(sigma_min)
            if not 0 < lowest < float(model_sigmas[0]):
                raise ValueError(f"sigma_min must lie in (0, {float(model_sigmas[0]):.4g}), the "
                                 f"model's largest level; got {lowest:g}")
            sigmas = _schedule_sigmas(kind, float(model_sigmas[0]), lowest, levels, rho)
        if nfe is not None and not respaced:
            chosen = fit_steps(chosen, nfe, sigmas.numel())
        chosen = sampler_entry(name).resolve(chosen, sigmas)
    except ValueError as err:
        raise UserError(f"sampler {name}: {err}") from None
    cost = chosen.cost(sigmas.numel())
    if cost > MAX_NFE:
        raise UserError(f"sampler {name} on {sigmas.numel()} levels needs {cost} network "
                        f"evaluations per image, more than {MAX_NFE} (the bound of --nfe); use "
                        "fewer steps per level or fewer levels")
    if nfe is not None and cost > nfe:
        raise UserError(f"sampler {name} on {sigmas.numel()} levels needs {cost} network "
                        f"evaluations, more than the budget of {nfe}; raise --nfe or use "
                        "fewer levels")
    return SamplingPlan(chosen, sigmas, kind, cost, spec.data.logit, rho)


def draw_prior(plan: SamplingPlan, shape: tuple[int, ...], generator: torch.Generator,
               device: torch.device | str = "cpu") -> Tensor:
    """The sampler's start in model space: U[0, 1] (``uniform``), plus sigma_1 z for
    ``uniform_noise``."""
    x = to_model_space(torch.rand(shape, generator=generator, device=device), plan.logit)
    if plan.settings.prior == "uniform_noise":
        x = x + float(plan.sigmas[0]) * torch.randn(shape, generator=generator, device=device)
    return x


# How torch's CPU allocator words a failed allocation (CUDA raises torch.cuda.OutOfMemoryError).
MEMORY_ERRORS = ("out of memory", "not enough memory", "can't allocate memory")


@contextlib.contextmanager
def batch_memory(count: int, shape: tuple[int, ...], device: torch.device | str) -> Iterator[None]:
    """Turn running out of memory on a batch of ``count`` images into a UserError naming the
    batch size (the one setting that bounds sampling memory)."""
    try:
        yield
    except RuntimeError as err:
        if not (isinstance(err, torch.cuda.OutOfMemoryError)
                or any(text in str(err) for text in MEMORY_ERRORS)):
            raise
        raise UserError(f"a batch of {count} images of {'x'.join(map(str, shape))} does not "
                        f"fit in memory on {device}; use a smaller --batch-size (Python: "
                        "batch_size=)") from None


BatchScores = Callable[[int, int], ScoreFn]  # (start, stop) -> the score for those images


def counting(score: ScoreFn, on_eval: Callable[[], None]) -> ScoreFn:
    """``score`` that calls ``on_eval()`` after every evaluation (progress bars, cost checks)."""

    def counted(x: Tensor, sigma: Tensor) -> Tensor:
        out = score(x, sigma)
        on_eval()
        return out

    return counted


def run_plan(plan: SamplingPlan, score: ScoreFn, x: Tensor, *, generator: torch.Generator,
             callback: core.Callback | None = None,
             constrain: core.Constraint | None = None) -> Tensor:
    """Run the planned sampler from ``x`` (model space); returns model-space samples."""
    return plan.entry.run(score, x, plan.sigmas.to(x.device), generator=generator,
                          callback=callback, constrain=constrain, **plan.settings.options())


def batch_ranges(total: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most ``size`` items."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


class NonFiniteSamplesError(UserError):
    """A sampler produced NaN or infinite values (they would be written as black pixels)."""


def checked_pixels(x: Tensor, logit: bool, first: int) -> Tensor:
    """Model-space samples -> images in [0, 1] on the CPU; NonFiniteSamplesError when any value
    is NaN or infinite (``first``: the number of the batch's first image, for the message)."""
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteSamplesError(
            f"the samples from image {first} on became NaN or infinite: the model's weights may "
            "hold NaN (a diverged training run) or the step size is too large for the noise "
            "levels (try a smaller --step-size, fewer levels or another --sampler); their "
            "images were not written")
    return to_pixels(x, logit).cpu()


def sample_batches(scores: BatchScores, plan: SamplingPlan, n: int, shape: tuple[int, ...], *,
                   seed: int, device: torch.device | str = "cpu", batch_size: int = 64,
                   callback: core.Callback | None = None,
                   batches: Iterable[int] | None = None) -> Iterator[Tensor]:
    """Yield ``n`` samples in batches of ``batch_size`` as images in [0, 1] on the CPU, images
    start..stop drawn with the score function ``scores(start, stop)``. Batch b draws from its
    own generator seeded with :func:`~ncsn.seeding.batch_seed` ``(seed, b)``, so ``batches``
    (batch numbers, in the order yielded; default all) draws some batches alone, as they are
    in the whole set. ``callback`` receives each batch's prior draw (``index`` -1) and every
    update, in model space, with ``info["batch_start"]`` added."""
    ranges = list(batch_ranges(n, batch_size))
    for b in range(len(ranges)) if batches is None else batches:
        start, stop = ranges[b]

        def report(info: dict[str, Any], start: int = start) -> None:
            if callback is not None:
                callback({**info, "batch_start": start})

        generator = torch.Generator(device=device).manual_seed(batch_seed(seed, b))
        with batch_memory(stop - start, shape, device):
            x = draw_prior(plan, (stop - start, *shape), generator, device)
            if callback is not None:
                callback({"x": x, "level": -1, "step": -1, "sigma": float(plan.sigmas[0]),
                          "index": -1, "batch_start": start})
            out = run_plan(plan, scores(start, stop), x, generator=generator, callback=report)
        yield checked_pixels(out, plan.logit, start)


def restore_images(score: ScoreFn, plan: SamplingPlan, images: Tensor,
                   operator: inverse.LinearObservation, *, generator: torch.Generator,
                   device: torch.device | str = "cpu",
                   callback: core.Callback | None = None) -> Tensor:
    """Sample images given observations ``images`` (N, C, H, W in [0, 1]; an image whose observed
    coefficients are the observation, :meth:`~ncsn.core.inverse.LinearObservation.observe`) with
    the planned sampler and the observed coefficients imposed after every update
    (:func:`ncsn.core.inverse.restore`); returns images in [0, 1] on the CPU whose observed
    coefficients are those of ``images`` when the observation is noiseless (up to clipping into
    [0, 1], which pixel observations never need). The operator acts in model space, which is
    pixel space except for pixel masks (callers check)."""
    observed = to_model_space(images.to(device), plan.logit)
    x_init = draw_prior(plan, tuple(images.shape), generator, device)
    x = inverse.restore(score, observed, operator, plan.sigmas.to(device), sampler=plan.entry.run,
                        x_init=x_init, generator=generator, callback=callback,
                        **plan.settings.options())
    done = checked_pixels(x, plan.logit, 0)
    if operator.noise_std > 0:
        return done
    return operator.impose(done, operator.basis.forward(images.cpu())).clamp(0.0, 1.0)


def restore_batches(scores: BatchScores, plan: SamplingPlan, images: Tensor,
                    operator: inverse.LinearObservation, k: int, *, generator: torch.Generator,
                    device: torch.device | str = "cpu",
                    batch_size: int = 64) -> Iterator[tuple[int, Tensor]]:
    """``k`` samples given each observation of ``images`` (N, C, H, W; see
    :func:`restore_images`), in batches of at most ``batch_size``: yields (start, images);
    sample j of observation i is number i k + j, samples start..stop drawn with the score
    function ``scores(start, stop)``. All random draws come from ``generator``, in order."""
    for start, stop in batch_ranges(images.shape[0] * k, batch_size):
        owner = torch.arange(start, stop) // k
        with batch_memory(stop - start, tuple(images.shape[1:]), device):
            done = restore_images(scores(start, stop), plan, images[owner],
                                  operator.rows(owner).to(device), generator=generator,
                                  device=device)
        yield start, done


def inpaint_images(score: ScoreFn, plan: SamplingPlan, images: Tensor, masks: Tensor, *,
                   generator: torch.Generator, device: torch.device | str = "cpu",
                   callback: core.Callback | None = None) -> Tensor:
    """Complete ``images`` (N, C, H, W in [0, 1]) where ``masks`` (N, 1 or C, H, W) is 0, with the
    planned sampler and the observed pixels imposed at every step (paper Algorithm 2 for
    annealed Langevin): :func:`restore_images` with a pixel observation; returns images in
    [0, 1] on the CPU equal to ``images`` where observed."""
    return restore_images(score, plan, images, inverse.pixel_observation(masks).to(device),
                          generator=generator, device=device, callback=callback)
