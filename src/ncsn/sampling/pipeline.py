"""From a network and its model spec to images: the one path used by ``ncsn sample``,
``ncsn inpaint``, the trainer's grids, ``ncsn evaluate --model``, the demo and the Python API.

1. :func:`plan_sampling` resolves what to run from the model's stored sampling settings
   (``spec["sampling"]``) and the caller's choices: the sampler, its validated settings, the
   noise schedule (the model's own levels, geometric or Karras over the model's sigma range) and
   the cost in network evaluations (at most ``nfe`` when a budget is given).
2. :func:`draw_prior` draws the sampler's starting point; :func:`to_model_space` and
   :func:`to_pixels` are the data-space round trip (logit models sample in logit space;
   images come back clamped to [0, 1]).
3. :func:`sample_batches` / :func:`sample_images` and :func:`inpaint_images` run the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from ncsn.core import ScoreFn
from ncsn.core import samplers as core
from ncsn.core.noise import geometric_sigmas, karras_sigmas
from ncsn.data.transforms import inverse_logit_transform, logit_transform
from ncsn.errors import UserError
from ncsn.sampling.registry import SCHEDULES, SamplerEntry, sampler_entry

DEFAULT_RHO = 7.0
# Sampling settings of models written before the sampler registry (annealed Langevin only).
LEGACY_KEYS = ("n_steps_each", "step_size", "convention", "final_denoise")


def stored_sampling(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The model's stored sampling choices in the current form: ``sampler``, ``schedule``,
    ``nfe``, ``num_levels``, ``rho``, ``settings`` and ``logit`` (older specs held annealed
    Langevin settings at the top level; they are read as such)."""
    raw = dict(spec.get("sampling") or {})
    settings = dict(raw.get("settings") or {})
    settings.update({k: raw[k] for k in LEGACY_KEYS if k in raw})
    return {"sampler": raw.get("sampler", "annealed_langevin"), "schedule": raw.get("schedule"),
            "nfe": raw.get("nfe"), "num_levels": raw.get("num_levels"),
            "rho": raw.get("rho", DEFAULT_RHO), "settings": settings,
            "logit": bool(raw.get("logit", False))}


@dataclass(frozen=True)
class SamplingPlan:
    """Everything needed to draw samples: sampler, complete settings, schedule, cost."""

    sampler: str
    settings: dict[str, Any]
    sigmas: Tensor
    schedule: str
    nfe: int
    logit: bool = False
    rho: float = DEFAULT_RHO
    entry: SamplerEntry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entry", sampler_entry(self.sampler))

    def describe(self) -> str:
        """One line: sampler, schedule, levels, evaluations and settings."""
        s = self.sigmas
        levels = f"{s.numel()} {self.schedule} levels {float(s[0]):.4g} -> {float(s[-1]):.4g}"
        opts = "".join(f"; {k}={v}" for k, v in self.settings.items())
        return f"{self.sampler} ({levels}; {self.nfe} network evaluations{opts})"

    def record(self) -> dict[str, Any]:
        """A JSON-ready record (for sample folders and run summaries)."""
        return {"sampler": self.sampler, "schedule": self.schedule, "nfe": self.nfe,
                "num_levels": int(self.sigmas.numel()), "rho": self.rho,
                "sigma_max": float(self.sigmas[0]), "sigma_min": float(self.sigmas[-1]),
                "settings": dict(self.settings), "logit": self.logit}


def _validated(entry: SamplerEntry, settings: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return entry.settings(**settings).model_dump()
    except ValidationError as err:
        problems = []
        for e in err.errors():
            name = ".".join(str(p) for p in e["loc"])
            msg = "unknown setting" if e["type"] == "extra_forbidden" else e["msg"]
            problems.append(f"{name}: {msg}")
        allowed = ", ".join(entry.settings.model_fields) or "none"
        raise UserError(f"sampler {entry.name}: {'; '.join(problems)} (its settings: "
                        f"{allowed})") from None


def _schedule_sigmas(kind: str, sigma_max: float, sigma_min: float, levels: int,
                     rho: float) -> Tensor:
    if kind == "geometric":
        return geometric_sigmas(sigma_max, sigma_min, levels)
    return karras_sigmas(sigma_max, sigma_min, levels, rho)


def plan_sampling(spec: Mapping[str, Any], *, continuous: bool, sampler: str | None = None,
                  nfe: int | None = None, schedule: str | None = None,
                  num_levels: int | None = None, rho: float | None = None,
                  settings: Mapping[str, Any] | None = None) -> SamplingPlan:
    """Resolve what to run. Arguments left None come from the model's stored choices when the
    sampler is the stored one, else from the sampler's defaults. ``continuous`` says whether the
    network accepts any sigma; a network that knows only its trained levels runs only on the
    ``model`` schedule and only samplers that evaluate the score on the schedule's levels.
    ``nfe`` is a budget: the plan costs at most that many network evaluations."""
    stored = stored_sampling(spec)
    name = sampler or stored["sampler"]
    try:
        entry = sampler_entry(name)
    except ValueError as err:
        raise UserError(str(err)) from None
    if name == stored["sampler"]:
        base = stored
    else:
        base = {"schedule": None, "nfe": None, "num_levels": None, "rho": DEFAULT_RHO,
                "settings": {}}
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    merged = _validated(entry, {**base["settings"], **given})
    nfe = nfe if nfe is not None else base["nfe"]
    num_levels = num_levels if num_levels is not None else base["num_levels"]
    rho = float(rho if rho is not None else base["rho"])
    model_sigmas = torch.tensor([float(s) for s in spec["sigmas"]], dtype=torch.float32)
    kind = schedule or base["schedule"] or (entry.default_schedule if continuous else "model")
    if kind not in SCHEDULES:
        raise UserError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if nfe is not None and nfe < 1:
        raise UserError(f"nfe must be >= 1, got {nfe}")
    if not continuous:
        if kind != "model":
            raise UserError(f"this network knows only its {model_sigmas.numel()} trained noise "
                            f"levels, so it cannot follow a {kind} schedule; use schedule "
                            "'model' (--schedule model)")
        if entry.off_schedule(merged):
            raise UserError(f"sampler {name} with these settings evaluates the score between the "
                            "noise levels, which this network (trained on discrete levels only) "
                            "cannot do; choose another sampler or settings (e.g. s_churn 0)")
    respaced = kind != "model" and entry.respace and nfe is not None and num_levels is None
    try:
        if kind == "model":
            if num_levels is not None and num_levels != model_sigmas.numel():
                raise ValueError(f"the model's schedule has {model_sigmas.numel()} levels, not "
                                 f"{num_levels}; drop the number of levels (--levels)"
                                 + ("" if not continuous else " or pick another schedule"))
            sigmas = model_sigmas
        else:
            levels = entry.levels_for(nfe, merged) if respaced and entry.levels_for else \
                num_levels or model_sigmas.numel()
            if levels < 1:
                raise ValueError(f"{nfe} network evaluations are too few")
            sigmas = _schedule_sigmas(kind, float(model_sigmas[0]), float(model_sigmas[-1]),
                                      levels, rho)
        if nfe is not None and not respaced and entry.fit is not None:
            merged = entry.fit(nfe, sigmas.numel(), merged)
        merged = entry.finalize(merged, sigmas)
    except ValueError as err:
        raise UserError(f"sampler {name}: {err}") from None
    cost = entry.cost(sigmas.numel(), merged)
    if nfe is not None and cost > nfe:
        raise UserError(f"sampler {name} on {sigmas.numel()} levels needs {cost} network "
                        f"evaluations, more than the budget of {nfe}; raise --nfe or use "
                        "fewer levels")
    return SamplingPlan(name, merged, sigmas, kind, cost, stored["logit"], rho)


def accepts_any_sigma(net: nn.Module) -> bool:
    """Whether ``net`` is conditioned on continuous sigma (False for networks that map sigma to
    one of their trained levels, like the paper's CondRefineNetDilated)."""
    return bool(getattr(net, "continuous_sigma", True))


def to_model_space(pixels: Tensor, logit: bool) -> Tensor:
    """Images in [0, 1] -> the space the network was trained in."""
    return logit_transform(pixels) if logit else pixels


def to_pixels(x: Tensor, logit: bool) -> Tensor:
    """Model space -> images in [0, 1] (inverse logit when the model uses it, then clamped)."""
    return (inverse_logit_transform(x) if logit else x).clamp(0.0, 1.0)


def draw_prior(plan: SamplingPlan, shape: tuple[int, ...], generator: torch.Generator,
               device: torch.device | str = "cpu") -> Tensor:
    """The sampler's start in model space: U[0, 1] (``uniform``), plus sigma_1 z for
    ``uniform_noise``."""
    x = to_model_space(torch.rand(shape, generator=generator, device=device), plan.logit)
    if plan.entry.prior == "uniform_noise":
        x = x + float(plan.sigmas[0]) * torch.randn(shape, generator=generator, device=device)
    return x


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
    return plan.entry.fn(score, x, plan.sigmas.to(x.device), generator=generator,
                         callback=callback, constrain=constrain, **plan.settings)


def batch_ranges(total: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most ``size`` items."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


def sample_batches(score: ScoreFn, plan: SamplingPlan, n: int, shape: tuple[int, ...], *,
                   generator: torch.Generator, device: torch.device | str = "cpu",
                   batch_size: int = 64, callback: core.Callback | None = None
                   ) -> Iterator[Tensor]:
    """Yield ``n`` samples in batches of ``batch_size`` as images in [0, 1] on the CPU.
    ``callback`` receives each batch's prior draw (``index`` -1) and every update, in model
    space, with ``info["batch_start"]`` added."""
    for start, stop in batch_ranges(n, batch_size):
        def report(info: dict[str, Any], start: int = start) -> None:
            if callback is not None:
                callback({**info, "batch_start": start})

        x = draw_prior(plan, (stop - start, *shape), generator, device)
        if callback is not None:
            callback({"x": x, "level": -1, "step": -1, "sigma": float(plan.sigmas[0]),
                      "index": -1, "batch_start": start})
        yield to_pixels(run_plan(plan, score, x, generator=generator, callback=report),
                        plan.logit).cpu()


def sample_images(score: ScoreFn, plan: SamplingPlan, n: int, shape: tuple[int, ...], *,
                  generator: torch.Generator, device: torch.device | str = "cpu",
                  batch_size: int = 64, callback: core.Callback | None = None) -> Tensor:
    """``n`` samples (N, C, H, W) in [0, 1] on the CPU (see :func:`sample_batches`)."""
    return torch.cat(list(sample_batches(score, plan, n, shape, generator=generator,
                                         device=device, batch_size=batch_size,
                                         callback=callback)))


def inpaint_images(score: ScoreFn, plan: SamplingPlan, images: Tensor, masks: Tensor, *,
                   generator: torch.Generator, device: torch.device | str = "cpu",
                   callback: core.Callback | None = None) -> Tensor:
    """Complete ``images`` (N, C, H, W in [0, 1]) where ``masks`` (N, 1 or C, H, W) is 0, with the
    planned sampler and the observed pixels imposed at every step (paper Algorithm 2 for
    annealed Langevin); returns images in [0, 1] on the CPU equal to ``images`` where observed."""
    observed = to_model_space(images.to(device), plan.logit)
    masks = masks.to(device)
    x_init = draw_prior(plan, tuple(images.shape), generator, device)
    x = core.inpaint(score, observed, masks, plan.sigmas.to(device), sampler=plan.entry.fn,
                     x_init=x_init, generator=generator, callback=callback, **plan.settings)
    keep = masks.expand_as(observed).cpu() > 0
    return torch.where(keep, images.cpu(), to_pixels(x, plan.logit).cpu())
