"""The sampling layer: registry costs against counted score calls, budgets, schedules, stored
settings, priors and the data-space round trip."""

from __future__ import annotations

import pytest
import torch

from ncsn.core.toy import paper_mixture
from ncsn.errors import UserError
from ncsn.sampling import (
    SAMPLERS,
    ScoreModel,
    counting,
    draw_prior,
    plan_sampling,
    run_plan,
    to_model_space,
    to_pixels,
)
from ncsn.spec.model import ModelSpec

LEVELS = [20.0, 5.0, 1.0, 0.2, 0.05]
SHAPE = {"network": {"name": "exact"}, "channels": 1, "image_size": 2}


def spec_with(sampling=None) -> ModelSpec:
    """A model spec with LEVELS and the stored ``sampling`` choice (a form-1 dict)."""
    return ModelSpec.from_json({**SHAPE, "sigmas": LEVELS,
                                **({"sampling": sampling} if sampling else {})})


SPEC = spec_with()


def _count_calls(plan, score=None) -> int:
    calls: list[int] = []
    x = torch.randn(8, 2) * 20
    run_plan(plan, counting(score or paper_mixture(), lambda: calls.append(1)), x,
             generator=torch.Generator().manual_seed(0))
    return len(calls)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("nfe", [10, 35, 100])
def test_reported_cost_is_the_number_of_score_calls_and_fits_the_budget(name, nfe):
    settings = {"final_denoise": True} if name == "annealed_langevin" else {}
    plan = plan_sampling(SPEC, continuous=True, sampler=name, nfe=nfe, settings=settings)
    assert plan.nfe <= nfe
    assert _count_calls(plan) == plan.nfe


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_cost_on_the_models_own_levels_without_a_budget(name):
    plan = plan_sampling(SPEC, continuous=False, sampler=name,
                         settings={"s_churn": 0.0} if name == "edm" else {})
    assert plan.schedule == "model" and plan.sigmas.tolist() == pytest.approx(LEVELS)
    assert _count_calls(plan) == plan.nfe


def test_budget_sets_levels_for_respaced_samplers_and_steps_for_annealed_langevin():
    ode = plan_sampling(SPEC, continuous=True, sampler="probability_flow_ode", nfe=35)
    assert (ode.schedule, ode.sigmas.numel(), ode.nfe) == ("karras", 18, 35)
    assert ode.sigmas[0].item() == pytest.approx(20.0) and ode.sigmas[-1].item() == \
        pytest.approx(0.05)
    pc = plan_sampling(SPEC, continuous=True, sampler="predictor_corrector", nfe=35)
    assert (pc.schedule, pc.sigmas.numel(), pc.nfe) == ("geometric", 17, 34)
    ald = plan_sampling(SPEC, continuous=True, sampler="annealed_langevin", nfe=35,
                        settings={"final_denoise": True})
    assert (ald.sigmas.numel(), ald.settings.n_steps_each, ald.nfe) == (5, 6, 31)
    corrected = plan_sampling(SPEC, continuous=False, sampler="predictor_corrector", nfe=17)
    assert (corrected.settings.n_corrector, corrected.nfe) == (2, 15)
    with pytest.raises(UserError, match="too few"):
        plan_sampling(SPEC, continuous=False, sampler="annealed_langevin", nfe=4)


def test_a_network_that_knows_only_its_levels_refuses_other_sigmas():
    with pytest.raises(UserError, match="knows only its 5 trained noise levels"):
        plan_sampling(SPEC, continuous=False, sampler="dpm_solver_2m", schedule="karras")
    with pytest.raises(UserError, match="between the noise levels"):
        plan_sampling(SPEC, continuous=False, sampler="edm")
    with pytest.raises(UserError, match="more than the budget of 8"):
        plan_sampling(SPEC, continuous=False, sampler="probability_flow_ode", nfe=8)


def test_stored_choices_are_read_old_and_new_and_overridden_in_order():
    legacy = spec_with({"n_steps_each": 7, "step_size": 1e-4, "convention": "official",
                        "final_denoise": True, "logit": True})
    assert legacy.sampling.sampler == "annealed_langevin" and legacy.data.logit is True
    plan = plan_sampling(legacy, continuous=False)
    assert plan.settings.options() == {"n_steps_each": 7, "step_size": 1e-4,
                                       "convention": "official", "final_denoise": True}
    assert plan.nfe == 5 * 7 + 1 and plan.logit is True
    given = plan_sampling(legacy, continuous=False, settings={"n_steps_each": 2,
                                                             "step_size": None})
    assert given.settings.n_steps_each == 2 and given.settings.step_size == 1e-4
    # another sampler starts from its own defaults, not the stored sampler's settings
    other = plan_sampling(legacy, continuous=False, sampler="predictor_corrector")
    assert other.settings.options() == {"n_corrector": 1, "snr": 0.16}
    new = spec_with({"sampler": "dpm_solver_2m", "nfe": 20, "schedule": "karras"})
    assert plan_sampling(new, continuous=True).nfe == 20
    assert plan_sampling(new, continuous=True, nfe=10).sigmas.numel() == 10
    with pytest.raises(UserError, match="snr: must be > 0"):
        plan_sampling(SPEC, continuous=True, sampler="predictor_corrector",
                      settings={"snr": -1.0})
    with pytest.raises(UserError, match="eta: not a setting of sampler annealed_langevin"):
        plan_sampling(SPEC, continuous=True, settings={"eta": 0.5})
    with pytest.raises(UserError, match="unknown sampler"):
        plan_sampling(SPEC, continuous=True, sampler="ddim")


def test_step_size_auto_is_ncsnv2_technique_4_in_the_chosen_convention():
    from ncsn.core.noise import ncsnv2_step_size

    paper = plan_sampling(SPEC, continuous=False, settings={"step_size": "auto",
                                                           "n_steps_each": 5})
    official = plan_sampling(SPEC, continuous=False, settings={"step_size": "auto",
                                                              "n_steps_each": 5,
                                                              "convention": "official"})
    step_lr = ncsnv2_step_size(torch.tensor(LEVELS), 5)
    assert official.settings.step_size == pytest.approx(step_lr)
    assert paper.settings.step_size == pytest.approx(2 * step_lr)


def test_priors_and_the_logit_round_trip():
    gen = torch.Generator().manual_seed(0)
    uniform = draw_prior(plan_sampling(SPEC, continuous=True), (20000, 2), gen)
    assert uniform.min() >= 0 and uniform.max() <= 1
    noisy = draw_prior(plan_sampling(SPEC, continuous=True, sampler="dpm_solver_2m"),
                       (20000, 2), gen)
    expected_std = (20.0**2 + 1 / 12) ** 0.5  # U[0, 1] + sigma_1 z
    assert noisy.std().item() == pytest.approx(expected_std, rel=0.02)
    pixels = torch.rand(100)
    assert torch.allclose(to_pixels(to_model_space(pixels, True), True), pixels, atol=1e-5)
    assert to_pixels(torch.tensor([-0.5, 0.5, 1.5]), False).tolist() == [0.0, 0.5, 1.0]


def test_sample_images_same_seed_same_images_and_pixel_range():
    from ncsn.nets.io import build_from_spec

    torch.manual_seed(0)
    section = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2}
    spec = ModelSpec(network=section, channels=1, image_size=8, sigmas=tuple(LEVELS))
    model = ScoreModel(build_from_spec(spec).eval(), spec, torch.device("cpu"))
    plan = model.plan(sampler="edm", nfe=9)

    def draw(seed: int) -> torch.Tensor:
        return model.sample(5, plan=plan, seed=seed, batch_size=2)

    first = draw(1)
    assert first.shape == (5, 1, 8, 8) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, draw(1)) and not torch.equal(first, draw(2))


def test_sigma_min_ends_a_respaced_schedule_higher():
    plan = plan_sampling(SPEC, continuous=True, sampler="dpm_solver_2m", nfe=10, sigma_min=0.25)
    assert plan.sigmas[0].item() == pytest.approx(20.0)
    assert plan.sigmas[-1].item() == pytest.approx(0.25) and plan.nfe == 10
    stored = spec_with({"sampler": "dpm_solver_2m", "nfe": 10, "sigma_min": 0.5})
    assert plan_sampling(stored, continuous=True).sigmas[-1].item() == pytest.approx(0.5)
    with pytest.raises(UserError, match="needs a geometric or karras schedule"):
        plan_sampling(SPEC, continuous=False, sigma_min=0.25)
    with pytest.raises(UserError, match=r"sigma_min must lie in \(0, 20\)"):
        plan_sampling(SPEC, continuous=True, sampler="edm", nfe=9, sigma_min=30.0)


class _BatchHungry(torch.nn.Module):
    """The exact score of N(0, sigma^2 I) that allocates 8 TB per image beyond the first (the
    CPU allocator refuses), or raises CUDA's out-of-memory error, for batches of 2 or more."""

    def __init__(self, cuda: bool) -> None:
        super().__init__()
        self.cuda_error = cuda

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1 and self.cuda_error:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 TiB")
        torch.empty((x.shape[0] - 1) * 2**43, dtype=torch.uint8)
        return -x / sigma.reshape(-1, 1, 1, 1) ** 2


@pytest.mark.parametrize("cuda", [False, True])
def test_a_batch_that_does_not_fit_in_memory_names_the_batch_size(cuda):
    spec = ModelSpec.from_json({**SHAPE, "sigmas": LEVELS})
    model = ScoreModel(_BatchHungry(cuda), spec, torch.device("cpu"))
    plan = model.plan(sampler="dpm_solver_2m", schedule="model")
    with pytest.raises(UserError, match="a batch of 3 images of 1x2x2 does not fit in memory "
                                        "on cpu; use a smaller --batch-size") as refused:
        model.sample(3, plan=plan, batch_size=3)
    assert len(str(refused.value).splitlines()) == 1
    assert model.sample(3, plan=plan, batch_size=1).shape == (3, 1, 2, 2)
