"""The sampler registry: each sampler of :mod:`ncsn.core.samplers` with its typed settings, its
prior draw and its cost in network evaluations.

An entry knows
- ``settings``: a pydantic model of the sampler's own keyword settings (validated, field-named
  errors); schedule choices (``schedule``, ``nfe``, ``num_levels``, ``rho``) are not settings;
- ``prior``: ``"uniform"`` (x ~ U[0, 1], the paper's start for annealed Langevin) or
  ``"uniform_noise"`` (U[0, 1] + sigma_1 z: data-like pixels perturbed at the largest level,
  the VE-SDE prior, close to N(0.5, sigma_1^2 I) when sigma_1 is large);
- ``cost(L, settings)``: network evaluations for a schedule of L levels;
- how a budget of ``nfe`` evaluations is spent: ``respace`` samplers choose the number of levels
  (``levels_for(nfe, settings)``), the others keep the levels and choose their steps per level
  (``fit(nfe, L, settings)``);
- ``off_schedule(settings)``: whether the score is also evaluated between the schedule's levels
  (then a network that knows only its trained levels cannot run it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ncsn.config import PositiveOrAuto
from ncsn.core import samplers as core
from ncsn.core.noise import ncsnv2_step_size

Prior = Literal["uniform", "uniform_noise"]
Schedule = Literal["model", "geometric", "karras"]
SCHEDULES: tuple[str, ...] = ("model", "geometric", "karras")


class Settings(BaseModel):
    """Base of every sampler's settings: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AnnealedLangevinSettings(Settings):
    """Paper Algorithm 1. ``step_size: auto`` = NCSNv2 technique 4 (Eq. 4) for the schedule."""

    n_steps_each: int = Field(default=100, ge=1)
    step_size: PositiveOrAuto = 2e-5
    convention: Literal["paper", "official"] = "paper"
    final_denoise: bool = False


class ConsistentAnnealedSettings(Settings):
    """Jolicoeur-Martineau et al. 2021: ``eta`` = eps / sigma_L^2 in (0, 1]; None = the
    ancestral step's 1 - (sigma'/sigma)^2 (:func:`ncsn.core.samplers.ancestral_eta`)."""

    n_steps_each: int = Field(default=1, ge=1)
    eta: float | None = Field(default=None, gt=0.0, le=1.0)


class PredictorCorrectorSettings(Settings):
    """Song et al. 2021: reverse-diffusion predictor + Langevin corrector at ``snr``."""

    n_corrector: int = Field(default=1, ge=0)
    snr: float = Field(default=0.16, gt=0.0)


class NoSettings(Settings):
    """A sampler without settings of its own."""


class EDMSettings(Settings):
    """Karras et al. 2022, Algorithm 2; sigmas in pixel units of [0, 1] images (half of EDM's
    [-1, 1] values: their ImageNet-64 choice S_tmin 0.05, S_tmax 50 becomes 0.025, 25)."""

    s_churn: float = Field(default=40.0, ge=0.0)
    s_tmin: float = Field(default=0.025, ge=0.0)
    s_tmax: float = Field(default=25.0, ge=0.0)
    s_noise: float = Field(default=1.003, ge=0.0)


def _fixed_steps(key: str, extra: int, minimum: int,
                 final: Callable[[dict[str, Any]], int] = lambda settings: 0
                 ) -> Callable[[int, int, dict[str, Any]], dict[str, Any]]:
    """``fit`` for samplers costing L (``key`` + ``extra``) + final(settings) evaluations:
    the largest ``key`` (at least ``minimum``) within the budget."""

    def fit(nfe: int, levels: int, settings: dict[str, Any]) -> dict[str, Any]:
        value = (nfe - final(settings)) // levels - extra
        if value < minimum:
            needed = levels * (minimum + extra) + final(settings)
            raise ValueError(f"{nfe} network evaluations are too few for {levels} levels "
                             f"(at least {needed})")
        return {**settings, key: value}

    return fit


@dataclass(frozen=True)
class SamplerEntry:
    """One registered sampler (see the module docstring)."""

    name: str
    fn: Callable[..., Tensor]
    settings: type[Settings]
    prior: Prior
    default_schedule: Schedule
    cost: Callable[[int, dict[str, Any]], int]
    summary: str
    respace: bool
    levels_for: Callable[[int, dict[str, Any]], int] | None = None
    fit: Callable[[int, int, dict[str, Any]], dict[str, Any]] | None = None
    off_schedule: Callable[[dict[str, Any]], bool] = lambda settings: False
    finalize: Callable[[dict[str, Any], Tensor], dict[str, Any]] = lambda s, sigmas: s


def _ald_finalize(settings: dict[str, Any], sigmas: Tensor) -> dict[str, Any]:
    """``step_size: auto`` -> NCSNv2 technique 4 for these sigmas, in the chosen convention."""
    if settings["step_size"] != "auto":
        return settings
    step_lr = ncsnv2_step_size(sigmas, settings["n_steps_each"])
    scale = 2.0 if settings["convention"] == "paper" else 1.0
    return {**settings, "step_size": scale * step_lr}


def _cas_finalize(settings: dict[str, Any], sigmas: Tensor) -> dict[str, Any]:
    """Fix ``eta`` for the schedule (the ancestral value when None) and check consistency."""
    eta = core.ancestral_eta(sigmas) if settings["eta"] is None else settings["eta"]
    core.check_consistent_eta(sigmas, eta)
    return {**settings, "eta": eta}


def _ald_final(settings: dict[str, Any]) -> int:
    return int(bool(settings["final_denoise"]))


SAMPLERS: dict[str, SamplerEntry] = {e.name: e for e in (
    SamplerEntry(
        "annealed_langevin", core.annealed_langevin, AnnealedLangevinSettings, "uniform",
        "geometric", lambda n, s: n * s["n_steps_each"] + _ald_final(s),
        "annealed Langevin dynamics (paper Algorithm 1): L x T (+1) evaluations",
        respace=False, fit=_fixed_steps("n_steps_each", 0, 1, _ald_final),
        finalize=_ald_finalize),
    SamplerEntry(
        "consistent_annealed", core.consistent_annealed, ConsistentAnnealedSettings,
        "uniform_noise", "geometric", lambda n, s: n * s["n_steps_each"],
        "consistent annealed sampling (Jolicoeur-Martineau et al. 2021): L x T evaluations",
        respace=True, levels_for=lambda nfe, s: nfe // s["n_steps_each"],
        fit=_fixed_steps("n_steps_each", 0, 1), finalize=_cas_finalize),
    SamplerEntry(
        "predictor_corrector", core.predictor_corrector, PredictorCorrectorSettings,
        "uniform_noise", "geometric", lambda n, s: n * (1 + s["n_corrector"]),
        "VE-SDE reverse diffusion + Langevin corrector (Song et al. 2021): L x (1 + correctors)",
        respace=True, levels_for=lambda nfe, s: nfe // (1 + s["n_corrector"]),
        fit=_fixed_steps("n_corrector", 1, 0)),
    SamplerEntry(
        "probability_flow_ode", core.edm_sampler, NoSettings, "uniform_noise", "karras",
        lambda n, s: 2 * n - 1,
        "probability-flow ODE, Heun steps (Karras et al. 2022, Alg. 1): 2L - 1 evaluations",
        respace=True, levels_for=lambda nfe, s: (nfe + 1) // 2),
    SamplerEntry(
        "edm", core.edm_sampler, EDMSettings, "uniform_noise", "karras",
        lambda n, s: 2 * n - 1,
        "EDM stochastic Heun sampler with churn (Karras et al. 2022, Alg. 2): 2L - 1",
        respace=True, levels_for=lambda nfe, s: (nfe + 1) // 2,
        off_schedule=lambda s: s["s_churn"] > 0 and s["s_tmax"] >= s["s_tmin"]),
    SamplerEntry(
        "dpm_solver_2m", core.dpm_solver_2m, NoSettings, "uniform_noise", "karras",
        lambda n, s: n,
        "DPM-Solver++(2M), second-order multistep in log sigma (Lu et al. 2022): L evaluations",
        respace=True, levels_for=lambda nfe, s: nfe),
)}


def sampler_entry(name: str) -> SamplerEntry:
    """The entry registered as ``name`` (ValueError listing the names otherwise)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def setting_fields() -> dict[str, list[str]]:
    """Every settings field name -> the samplers that have it (for CLI flags and messages)."""
    owners: dict[str, list[str]] = {}
    for entry in SAMPLERS.values():
        for field in entry.settings.model_fields:
            owners.setdefault(field, []).append(entry.name)
    return owners
