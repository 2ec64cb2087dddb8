"""The sampler registry: each sampler's typed settings (:mod:`ncsn.spec.samplers`, which know
its prior, default schedule and cost) mapped to the function of :mod:`ncsn.core.samplers` that
runs it, and to how its settings are completed for a schedule (``resolve``: ``step_size: auto``
and the ancestral ``eta`` depend on the noise levels)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ncsn.core import samplers as core
from ncsn.core.noise import ncsnv2_step_size
from ncsn.errors import UserError
from ncsn.spec import samplers as spec


def _as_is(settings: spec.SamplerSettings, sigmas: Tensor) -> spec.SamplerSettings:
    del sigmas
    return settings


def _langevin_step(settings: spec.SamplerSettings, sigmas: Tensor) -> spec.SamplerSettings:
    """``step_size: auto`` -> NCSNv2 technique 4 for these sigmas, in the chosen convention."""
    assert isinstance(settings, spec.AnnealedLangevin)
    if settings.step_size != "auto":
        return settings
    step_lr = ncsnv2_step_size(sigmas, settings.n_steps_each)
    scale = 2.0 if settings.convention == "paper" else 1.0
    return settings.model_copy(update={"step_size": scale * step_lr})


def _consistent_eta(settings: spec.SamplerSettings, sigmas: Tensor) -> spec.SamplerSettings:
    """Fix ``eta`` for the schedule (the ancestral value when None) and check consistency."""
    assert isinstance(settings, spec.ConsistentAnnealed)
    eta = core.ancestral_eta(sigmas) if settings.eta is None else settings.eta
    core.check_consistent_eta(sigmas, eta)
    return settings.model_copy(update={"eta": eta})


def _without_corrector(settings: spec.SamplerSettings) -> bool:
    """Predictor-corrector follows the reverse process only without corrector steps."""
    assert isinstance(settings, spec.PredictorCorrector)
    return settings.n_corrector == 0


@dataclass(frozen=True)
class Sampler:
    """One registered sampler: its settings class, its core function and ``resolve``.
    ``reverse_process(settings)``: whether its updates with these settings only go from the
    current state down the reverse process, which a noisy observation needs below its noise
    level (:mod:`ncsn.core.inverse`); not annealed Langevin's nor the corrector's MCMC steps,
    which target the unconditional p_sigma at each level."""

    settings: type[spec.SamplerSettings]
    run: Callable[..., Tensor]
    resolve: Callable[[spec.SamplerSettings, Tensor], spec.SamplerSettings] = _as_is
    reverse_process: Callable[[spec.SamplerSettings], bool] = lambda settings: True

    @property
    def name(self) -> str:
        return self.settings.name()


SAMPLERS: dict[str, Sampler] = {s.name: s for s in (
    Sampler(spec.AnnealedLangevin, core.annealed_langevin, _langevin_step,
            reverse_process=lambda settings: False),
    Sampler(spec.ConsistentAnnealed, core.consistent_annealed, _consistent_eta),
    Sampler(spec.PredictorCorrector, core.predictor_corrector,
            reverse_process=_without_corrector),
    Sampler(spec.ProbabilityFlowODE, core.probability_flow_ode),
    Sampler(spec.EDM, core.edm_sampler),
    Sampler(spec.DPMSolver2M, core.dpm_solver_2m),
    Sampler(spec.DPMSolver3M, core.dpm_solver_3m),
)}
SCHEDULES = spec.SCHEDULES


def sampler_entry(name: str) -> Sampler:
    """The sampler registered as ``name`` (UserError listing the names otherwise)."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
