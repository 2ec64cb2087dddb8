"""Model file -> images: the sampler registry and the one sampling path (see
:mod:`ncsn.sampling.pipeline` and :mod:`ncsn.sampling.registry`)."""

from ncsn.sampling.pipeline import (
    SamplingPlan,
    accepts_any_sigma,
    counting,
    draw_prior,
    inpaint_images,
    plan_sampling,
    run_plan,
    sample_batches,
    sample_images,
    stored_sampling,
    to_model_space,
    to_pixels,
)
from ncsn.sampling.registry import SAMPLERS, SCHEDULES, SamplerEntry, sampler_entry

__all__ = [
    "SAMPLERS", "SCHEDULES", "SamplerEntry", "SamplingPlan", "accepts_any_sigma", "counting",
    "draw_prior", "inpaint_images", "plan_sampling", "run_plan", "sample_batches",
    "sample_images", "sampler_entry", "stored_sampling", "to_model_space", "to_pixels",
]
