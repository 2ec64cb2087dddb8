"""Model file -> images: the sampler registry (:mod:`ncsn.sampling.registry`), the one sampling
path (:mod:`ncsn.sampling.pipeline`) and the loaded model everything samples through
(:class:`ScoreModel`, :func:`load`)."""

from ncsn.data.transforms import to_model_space, to_pixels
from ncsn.sampling.model import ScoreModel, load
from ncsn.sampling.pipeline import (
    SamplingPlan,
    counting,
    draw_prior,
    inpaint_images,
    plan_sampling,
    run_plan,
    sample_batches,
)
from ncsn.sampling.registry import SAMPLERS, SCHEDULES, Sampler, sampler_entry

__all__ = [
    "SAMPLERS", "SCHEDULES", "Sampler", "SamplingPlan", "ScoreModel", "counting", "draw_prior",
    "inpaint_images", "load", "plan_sampling", "run_plan", "sample_batches", "sampler_entry",
    "to_model_space", "to_pixels",
]
