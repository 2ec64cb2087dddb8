"""The typed contract (ncsn.spec): sampler settings with their costs and budgets, the docs table
checked against the registry, and model specs read in every form with bounds on every value."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from ncsn.errors import UserError
from ncsn.spec.model import FORMAT, ModelSpec
from ncsn.spec.samplers import (
    SAMPLER_CLASSES,
    SAMPLER_SETTINGS,
    AnnealedLangevin,
    PredictorCorrector,
    fit_steps,
    levels_for_budget,
)
from ncsn.spec.validation import build_settings

ROOT = Path(__file__).resolve().parents[1]
BASE = {"network": {"name": "unet_small"}, "channels": 1, "image_size": 28,
        "sigmas": [15.0, 1.0, 0.01]}


def _variants(cls):
    """Settings of ``cls`` over a small grid of its integer and boolean fields."""
    grids = {"n_steps_each": [1, 3], "n_corrector": [0, 2], "final_denoise": [False, True]}
    names = [f for f in cls.option_names() if f in grids]
    for values in itertools.product(*(grids[f] for f in names)):
        yield cls(**dict(zip(names, values, strict=True)))


@pytest.mark.parametrize("cls", SAMPLER_CLASSES, ids=lambda c: c.name())
def test_the_written_cost_formula_is_the_cost(cls):
    for settings in _variants(cls):
        for levels in (1, 2, 7, 40):
            namespace = {"L": levels, **settings.options()}
            assert eval(cls.cost_formula, {}, namespace) == settings.cost(levels)  # noqa: S307


@pytest.mark.parametrize("cls", SAMPLER_CLASSES, ids=lambda c: c.name())
@pytest.mark.parametrize("nfe", [1, 2, 9, 10, 35, 1000, 10**9])
def test_a_budget_gives_the_largest_schedule_that_fits(cls, nfe):
    for settings in _variants(cls):
        if settings.cost(1) > nfe:
            with pytest.raises(ValueError, match="too few"):
                levels_for_budget(settings, nfe)
            continue
        levels = levels_for_budget(settings, nfe)
        assert settings.cost(levels) <= nfe < settings.cost(levels + 1)


def test_a_budget_on_fixed_levels_sets_the_steps_field():
    fitted = fit_steps(AnnealedLangevin(final_denoise=True), 35, 5)
    assert (fitted.n_steps_each, fitted.cost(5)) == (6, 31)
    assert fitted.cost(5) + 5 > 35  # one more step per level would not fit
    fitted = fit_steps(PredictorCorrector(), 17, 5)
    assert (fitted.n_corrector, fitted.cost(5)) == (2, 15)
    assert fit_steps(PredictorCorrector(), 5, 5).n_corrector == 0  # its minimum is 0
    with pytest.raises(ValueError, match=r"too few for 5 levels .at least 6.; .* fewer levels"):
        fit_steps(AnnealedLangevin(final_denoise=True), 5, 5)


def test_settings_are_validated_once_with_field_named_errors():
    assert build_settings("edm", {"s_churn": 0.0, "s_noise": None}).s_noise == 1.003
    with pytest.raises(UserError, match=r"^--eta: not a setting of sampler edm \(a setting of "
                                        r"consistent_annealed\); its settings: s_churn"):
        build_settings("edm", {"eta": 0.5}, label=lambda loc: "--" + loc[-1])
    with pytest.raises(UserError, match=r"^snr: must be > 0"):
        build_settings("predictor_corrector", {"snr": -1})
    with pytest.raises(UserError, match="sampler: unknown sampler 'ddim'; choose one of "
                                        "annealed_langevin"):
        build_settings("ddim", {})
    with pytest.raises(Exception, match="frozen"):
        AnnealedLangevin().n_steps_each = 3


def _docs_sampler_rows() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "sampling.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        name = re.fullmatch(r"`(\w+)`", cells[0]) if cells else None
        if name and name.group(1) in SAMPLER_SETTINGS and len(cells) == 5:
            rows[name.group(1)] = cells
    return rows


def test_the_docs_sampler_table_is_the_registry():
    rows = _docs_sampler_rows()
    assert list(rows) == list(SAMPLER_SETTINGS)
    priors = {"uniform": "U[0, 1]", "uniform_noise": "U[0, 1] + sigma_1 z"}
    for name, (_, _, cost, prior, schedule) in rows.items():
        cls = SAMPLER_SETTINGS[name]
        assert cost == f"`{cls.cost_formula}`", name
        assert (prior, schedule) == (priors[cls.prior], cls.default_schedule), name


def test_every_written_form_reads_to_the_same_spec():
    current = ModelSpec.from_json({**BASE, "sampling": {"sampler": "annealed_langevin",
                                                        "settings": {"n_steps_each": 7}}})
    form1 = ModelSpec.from_json({**BASE, "sampling": {"n_steps_each": 7}})
    assert form1 == current and current.to_json()["format"] == FORMAT
    assert ModelSpec.from_json(json.loads(json.dumps(current.to_json()))) == current
    logit = ModelSpec.from_json({**BASE, "sampling": {"sampler": "dpm_solver_2m", "logit": True},
                                 "source": "official"})
    assert logit.data.logit and logit.provenance == {"source": "official"}
    assert logit.sampling.sampler == "dpm_solver_2m"


@pytest.mark.parametrize(("change", "message"), [
    ({"image_size": 0}, "image_size: must be >= 1"),
    ({"image_size": -3}, "image_size: must be >= 1"),
    ({"image_size": 100_000}, "image_size: must be <= 4096"),
    ({"channels": -1}, "channels: input should be 1 or 3"),
    ({"channels": 2}, "channels: input should be 1 or 3"),
    ({"channels": 1_000_000}, "channels: input should be 1 or 3"),
    ({"sigmas": []}, "sigmas: must hold 1 to 100000 noise levels, got 0"),
    ({"sigmas": [1.0] * 100_001}, "sigmas: must hold 1 to 100000"),
    ({"sigmas": [0.1, 1.0]}, "run from largest to smallest"),
    ({"sigmas": [1.0, float("nan")]}, r"sigmas\.1: input should be a finite number$"),
    ({"sigmas": [float("inf"), 1.0]}, r"sigmas\.0: input should be a finite number$"),
    ({"sigmas": [1e300]}, r"sigmas\.0: must be <= 1000000.0$"),
    ({"sigmas": [1.0, -0.1]}, r"sigmas\.1: must be >= 1e-08$"),
    ({"sigmas": "1.0"}, "sigmas: "),
    ({"network": {"ngf": 4}}, "network: .*'name'"),
    ({"network": [1]}, "network: input should be a valid dictionary"),
    ({"sampling": {"nfe": 10**12}}, "sampling.nfe: must be <= 100000"),
    ({"sampling": {"num_levels": 10**6}}, "sampling.num_levels: must be <= 100000"),
    ({"sampling": {"rho": float("inf")}}, "sampling.rho: input should be a finite number"),
    ({"sampling": {"sigma_min": float("nan")}}, "sampling.sigma_min: input should be a finite"),
    ({"sampling": {"step_size": float("nan")}},
     "sampling.step_size: input should be a finite number or input should be 'auto'$"),
    ({"sampling": {"sampler": "edm", "settings": {"s_churn": float("inf")}}},
     "sampling.s_churn: input should be a finite number"),
    ({"sampling": "annealed_langevin"}, "sampling: must be an object"),
    ({"sampling": {"settings": [1]}}, "sampling.settings: must be an object"),
    ({"sampling": [1, 2]}, "sampling: must be an object"),
    ({"sampling": {"sampler": "ddim"}}, "sampling.sampler: unknown sampler 'ddim'"),
    ({"sampling": {"sampler": "edm", "settings": {"eta": 1}}},
     "sampling.eta: not a setting of sampler edm"),
    ({"sampling": {"nfe": 0}}, "sampling.nfe: must be > 0"),
    ({"format": 9}, "format 9 is not one this ncsn reads"),
])
def test_bad_spec_values_are_one_line_errors_naming_the_field(change, message):
    with pytest.raises(UserError, match=message) as info:
        ModelSpec.from_json({**BASE, **change}, "m.json")
    assert str(info.value).startswith("m.json") and "\n" not in str(info.value)
