"""Each sampler's settings as one frozen, typed class, discriminated by the sampler's name.

A class carries what is true of its sampler whatever the model: its prior (``uniform``: x ~
U[0, 1], the paper's start; ``uniform_noise``: U[0, 1] + sigma_1 z, the VE-SDE prior), its
default schedule, its cost in network evaluations for L levels (:meth:`SamplerSettings.cost`,
written out in :attr:`SamplerSettings.cost_formula`), and how a budget of network evaluations is
spent: samplers that ``respace`` take the largest number of levels L with cost(L) <= budget; on a
fixed schedule a budget sets :attr:`SamplerSettings.steps_field` to its largest value that fits.
The functions that run them are registered in :mod:`ncsn.sampling.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, get_args

import annotated_types
from pydantic import BaseModel, ConfigDict, Field

from ncsn.spec.values import FINITE, PositiveOrAuto

Prior = Literal["uniform", "uniform_noise"]
Schedule = Literal["model", "geometric", "karras"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
DEFAULT_RHO = 7.0  # Karras et al. 2022's schedule exponent


class SamplerSettings(BaseModel):
    """Base of every sampler's settings: frozen, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, **FINITE)

    sampler: str
    prior: ClassVar[Prior] = "uniform_noise"
    default_schedule: ClassVar[Schedule] = "karras"
    summary: ClassVar[str] = ""
    cost_formula: ClassVar[str] = "L"  # Python over L and the settings, checked against cost()
    respace: ClassVar[bool] = True
    steps_field: ClassVar[str | None] = None

    @classmethod
    def name(cls) -> str:
        """The registry name (the ``sampler`` tag)."""
        return cls.model_fields["sampler"].default

    @classmethod
    def option_names(cls) -> list[str]:
        """The sampler's own settings (every field but the ``sampler`` tag)."""
        return [f for f in cls.model_fields if f != "sampler"]

    def cost(self, levels: int) -> int:
        """Network evaluations for a schedule of ``levels`` levels."""
        return levels

    def between_levels(self) -> bool:
        """Whether the score is also evaluated between the schedule's levels (a network that
        knows only its trained levels cannot run it then)."""
        return False

    def options(self) -> dict[str, Any]:
        """The keyword settings of the sampler's function."""
        return self.model_dump(exclude={"sampler"})

    def given(self) -> dict[str, Any]:
        """The settings given explicitly (the others are the defaults)."""
        return self.model_dump(exclude_unset=True, exclude={"sampler"})


def _setting(default: Any, description: str, flag: str | None = None, **bounds: Any) -> Any:
    """A settings field; ``description`` is the CLI help, ``flag`` the CLI name when it is not
    ``--`` + the field name with dashes."""
    extra = {"flag": flag} if flag else None
    return Field(default=default, description=description, json_schema_extra=extra, **bounds)


class AnnealedLangevin(SamplerSettings):
    """Annealed Langevin dynamics (paper Algorithm 1); ``step_size: auto`` = NCSNv2 technique 4
    (Eq. 4) for the schedule."""

    sampler: Literal["annealed_langevin"] = "annealed_langevin"
    n_steps_each: int = _setting(100, "steps per noise level T", "--steps-each", ge=1)
    step_size: PositiveOrAuto = _setting(
        2e-5, "annealed Langevin eps (paper) or step_lr (official), or 'auto' (NCSNv2 Eq. 4)")
    convention: Literal["paper", "official"] = _setting(
        "paper", "paper: x += eps_i/2 s + sqrt(eps_i) z; official: x += a_i s + sqrt(2 a_i) z")
    final_denoise: bool = _setting(False, "end with x + sigma_L^2 s(x, sigma_L) (NCSNv2)")

    prior = "uniform"
    default_schedule = "geometric"
    summary = "annealed Langevin dynamics (paper Algorithm 1)"
    cost_formula = "L * n_steps_each + final_denoise"
    respace = False
    steps_field = "n_steps_each"

    def cost(self, levels: int) -> int:
        return levels * self.n_steps_each + int(self.final_denoise)


class ConsistentAnnealed(SamplerSettings):
    """Consistent annealed sampling (Jolicoeur-Martineau et al. 2021): ``eta`` = eps / sigma_L^2
    in (0, 1]; None = the ancestral step's 1 - (sigma'/sigma)^2."""

    sampler: Literal["consistent_annealed"] = "consistent_annealed"
    n_steps_each: int = _setting(1, "visits per noise level", "--steps-each", ge=1)
    eta: float | None = _setting(
        None, "consistent annealed sampling: step eta sigma^2, in (0, 1] (default: ancestral)",
        gt=0.0, le=1.0)

    default_schedule = "geometric"
    summary = "consistent annealed sampling (Jolicoeur-Martineau et al. 2021)"
    cost_formula = "L * n_steps_each"
    steps_field = "n_steps_each"

    def cost(self, levels: int) -> int:
        return levels * self.n_steps_each


class PredictorCorrector(SamplerSettings):
    """Song et al. 2021: reverse-diffusion predictor + Langevin corrector at ``snr``."""

    sampler: Literal["predictor_corrector"] = "predictor_corrector"
    n_corrector: int = _setting(1, "predictor_corrector: Langevin corrector steps per level",
                                "--corrector-steps", ge=0)
    snr: float = _setting(0.16, "predictor_corrector: corrector signal-to-noise ratio", gt=0.0)

    default_schedule = "geometric"
    summary = "VE-SDE reverse diffusion + Langevin corrector (Song et al. 2021)"
    cost_formula = "L * (1 + n_corrector)"
    steps_field = "n_corrector"

    def cost(self, levels: int) -> int:
        return levels * (1 + self.n_corrector)


class ProbabilityFlowODE(SamplerSettings):
    """Heun steps on the probability-flow ODE (Karras et al. 2022, Algorithm 1)."""

    sampler: Literal["probability_flow_ode"] = "probability_flow_ode"

    summary = "probability-flow ODE, Heun steps (Karras et al. 2022, Alg. 1)"
    cost_formula = "2 * L - 1"

    def cost(self, levels: int) -> int:
        return 2 * levels - 1


class EDM(SamplerSettings):
    """Karras et al. 2022, Algorithm 2; sigmas in pixel units of [0, 1] images (half of EDM's
    [-1, 1] values: their ImageNet-64 choice S_tmin 0.05, S_tmax 50 becomes 0.025, 25)."""

    sampler: Literal["edm"] = "edm"
    s_churn: float = _setting(40.0, "edm: total churn S_churn", ge=0.0)
    s_tmin: float = _setting(0.025, "edm: churn only for sigma >= this", ge=0.0)
    s_tmax: float = _setting(25.0, "edm: churn only for sigma <= this", ge=0.0)
    s_noise: float = _setting(1.003, "edm: noise inflation S_noise", ge=0.0)

    summary = "EDM stochastic Heun sampler with churn (Karras et al. 2022, Alg. 2)"
    cost_formula = "2 * L - 1"

    def cost(self, levels: int) -> int:
        return 2 * levels - 1

    def between_levels(self) -> bool:
        return self.s_churn > 0 and self.s_tmax >= self.s_tmin


class DPMSolver2M(SamplerSettings):
    """DPM-Solver++(2M) (Lu et al. 2022), second-order multistep in log sigma."""

    sampler: Literal["dpm_solver_2m"] = "dpm_solver_2m"

    summary = "DPM-Solver++(2M), second-order multistep in log sigma (Lu et al. 2022)"
    cost_formula = "L"


class DPMSolver3M(SamplerSettings):
    """DPM-Solver++(3M): third-order multistep in log sigma (Lu et al. 2022, with the exact
    second-order Taylor coefficient; :func:`ncsn.core.samplers.dpm_solver_multistep`)."""

    sampler: Literal["dpm_solver_3m"] = "dpm_solver_3m"

    summary = "DPM-Solver++(3M), third-order multistep in log sigma (Lu et al. 2022)"
    cost_formula = "L"


SAMPLER_CLASSES: tuple[type[SamplerSettings], ...] = (
    AnnealedLangevin, ConsistentAnnealed, PredictorCorrector, ProbabilityFlowODE, EDM,
    DPMSolver2M, DPMSolver3M)
SAMPLER_SETTINGS: dict[str, type[SamplerSettings]] = {c.name(): c for c in SAMPLER_CLASSES}
AnySettings = Annotated[AnnealedLangevin | ConsistentAnnealed | PredictorCorrector
                        | ProbabilityFlowODE | EDM | DPMSolver2M | DPMSolver3M,
                        Field(discriminator="sampler")]


def setting_owners() -> dict[str, list[str]]:
    """Every setting name -> the samplers that have it (for CLI flags and messages)."""
    owners: dict[str, list[str]] = {}
    for cls in SAMPLER_CLASSES:
        for field in cls.option_names():
            owners.setdefault(field, []).append(cls.name())
    return owners


def _minimum(cls: type[SamplerSettings], field: str) -> int:
    """The smallest value the integer setting ``field`` allows (its ``ge`` bound, else 0)."""
    bounds = [m.ge for m in cls.model_fields[field].metadata if isinstance(m, annotated_types.Ge)]
    return int(bounds[0]) if bounds else 0


def _largest(fits: Callable[[int], bool], lowest: int) -> int:
    """The largest n >= ``lowest`` with ``fits(n)``, for ``fits`` true at ``lowest`` and
    monotone (true up to some n, false beyond)."""
    low, high = lowest, lowest + 1
    while fits(high):
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def levels_for_budget(settings: SamplerSettings, nfe: int) -> int:
    """The largest number of levels L with ``settings.cost(L) <= nfe`` (ValueError if none)."""
    if settings.cost(1) > nfe:
        raise ValueError(f"{nfe} network evaluations are too few (at least {settings.cost(1)})")
    return _largest(lambda levels: settings.cost(levels) <= nfe, 1)


def fit_steps(settings: SamplerSettings, nfe: int, levels: int) -> SamplerSettings:
    """``settings`` with its :attr:`~SamplerSettings.steps_field` at the largest value whose cost
    on ``levels`` levels is at most ``nfe`` (ValueError if even its minimum costs more)."""
    field = settings.steps_field
    if field is None:
        return settings

    def with_steps(value: int) -> SamplerSettings:
        return settings.model_copy(update={field: value})

    lowest = _minimum(type(settings), field)
    needed = with_steps(lowest).cost(levels)
    if needed > nfe:
        raise ValueError(f"{nfe} network evaluations are too few for {levels} levels (at least "
                         f"{needed}); raise the budget (--nfe) or, for a network that takes any "
                         "sigma, use fewer levels (--levels N)")
    return with_steps(_largest(lambda value: with_steps(value).cost(levels) <= nfe, lowest))
