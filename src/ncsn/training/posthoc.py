"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion
Models", Sec. 3.2 and Appendix C): choose the EMA length after training.

A power-function EMA with exponent gamma, read at step t, averages the training iterates with
the profile p_(gamma,t)(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) on [0, t] (unit mass;
:func:`ncsn.training.ema.power_ema_rate` is its per-step form). Its relative standard deviation
is sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))) (Eq. 3's length, independent of
t). The trainer stores snapshots of a few such EMAs (``training.posthoc_ema``); since averaging
is linear, any combination sum_i x_i theta_i of snapshots averages the iterates by
sum_i x_i p_i, and :func:`reconstruction_weights` picks the x that bring it closest (in L2) to
the profile of a target (gamma, T): the normal equations A x = b with A_ij = <p_i, p_j> and
b_i = <p_i, p_target>, in closed form (:func:`profile_inner_product`, Appendix C.3).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from ncsn import files
from ncsn.errors import UserError
from ncsn.spec.model import ModelSpec

SNAPSHOT_DIR = "posthoc_ema"  # inside the run directory
SNAPSHOT_KIND = "ncsn-posthoc-ema"  # the ``kind`` a snapshot file's metadata records
MAX_SIGMA_REL = math.sqrt(1.0 / 12.0)  # sigma_rel of gamma -> 0, the flattest power profile


def sigma_rel_of_gamma(gamma: float) -> float:
    """sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))), the profile's standard
    deviation over its length (Karras et al. 2024, Eq. 3); it falls from sqrt(1/12) at gamma 0
    towards 0 (16.97 -> 0.05, 6.94 -> 0.10)."""
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


def gamma_of_sigma_rel(sigma_rel: float) -> float:
    """The gamma > 0 of a sigma_rel in (0, sqrt(1/12)): the positive real root of the cubic
    s^2 (g + 2)^2 (g + 3) - (g + 1) = 0 (the relation of :func:`sigma_rel_of_gamma`)."""
    if not 0.0 < sigma_rel < MAX_SIGMA_REL:
        raise ValueError(f"sigma_rel must lie in (0, {MAX_SIGMA_REL:.4f}), got {sigma_rel}")
    s2 = sigma_rel ** 2
    roots = np.roots([s2, 7.0 * s2, 16.0 * s2 - 1.0, 12.0 * s2 - 1.0])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > 0))


def profile_inner_product(gamma_a: float, t_a: float, gamma_b: float, t_b: float) -> float:
    """<p_a, p_b> = integral of p_(gamma_a,t_a) p_(gamma_b,t_b) over tau
    = (gamma_a + 1)(gamma_b + 1) t_min^(gamma_a + gamma_b + 1)
      / ((gamma_a + gamma_b + 1) t_a^(gamma_a + 1) t_b^(gamma_b + 1)), t_min = min(t_a, t_b)
    (Karras et al. 2024, Appendix C.3), written with the ratios t_min / t <= 1 so that no power
    overflows."""
    t_min = min(t_a, t_b)
    return ((gamma_a + 1.0) * (gamma_b + 1.0) / (gamma_a + gamma_b + 1.0)
            * (t_min / t_a) ** (gamma_a + 1.0) * (t_min / t_b) ** (gamma_b + 1.0) / t_min)


def _normal_equations(snapshots: Sequence[tuple[float, float]], gamma: float, step: float
                      ) -> tuple[np.ndarray, np.ndarray, float]:
    """(A, b, <p_target, p_target>) with the times over the largest one (the solution does not
    depend on the time unit: every inner product scales by 1 / unit)."""
    unit = max([step, *(t for _, t in snapshots)])
    scaled = [(g, t / unit) for g, t in snapshots]
    a = np.array([[profile_inner_product(gi, ti, gj, tj) for gj, tj in scaled]
                  for gi, ti in scaled])
    b = np.array([profile_inner_product(gi, ti, gamma, step / unit) for gi, ti in scaled])
    return a, b, profile_inner_product(gamma, step / unit, gamma, step / unit)


def reconstruction_weights(snapshots: Sequence[tuple[float, float]], gamma: float,
                           step: float) -> list[float]:
    """The x minimising || sum_i x_i p_(gamma_i,t_i) - p_(gamma,step) ||_2 over snapshots
    ``(gamma_i, t_i)``: the least-squares solution of A x = b (numpy's ``lstsq``, which also
    copes with the near-singular A of dense snapshots)."""
    if not snapshots:
        raise ValueError("no snapshots to reconstruct from")
    a, b, _ = _normal_equations(snapshots, gamma, step)
    return np.linalg.lstsq(a, b, rcond=None)[0].tolist()


def profile_error(snapshots: Sequence[tuple[float, float]], weights: Sequence[float],
                  gamma: float, step: float) -> float:
    """|| sum_i x_i p_i - p_target || / || p_target ||, the relative L2 mismatch of the
    reconstructed averaging profile: sqrt(x^T A x - 2 x^T b + c) / sqrt(c)."""
    a, b, c = _normal_equations(snapshots, gamma, step)
    x = np.asarray(weights, dtype=np.float64)
    return math.sqrt(max(float(x @ a @ x - 2.0 * x @ b + c), 0.0) / c)


# ---------------------------------------------------------------------------- snapshot files
@dataclass(frozen=True)
class Snapshot:
    """One stored EMA: its file and the (gamma, step) recorded inside it."""

    path: Path
    gamma: float
    step: int


def snapshot_name(gamma: float, step: int) -> str:
    return f"gamma{gamma:g}_step{step:08d}.safetensors"


def write_snapshot(folder: Path, state: Mapping[str, Tensor], *, gamma: float, step: int,
                   spec: ModelSpec) -> Path:
    """Write one EMA's weights atomically as safetensors, with ``kind``, ``gamma``, ``step``
    and the model ``spec`` (JSON) in the file's metadata: the file is trusted by these, not by
    its name."""
    weights = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {"format": "pt", "kind": SNAPSHOT_KIND, "gamma": repr(float(gamma)),
                "step": str(step), "spec": json.dumps(spec.to_json())}
    return files.write_bytes(folder / snapshot_name(gamma, step),
                             safetensors_bytes(weights, metadata=metadata))


def _metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise UserError(f"post-hoc EMA snapshot {path} is unreadable ({err}); delete it or "
                        "rerun the training steps that wrote it") from None


def list_snapshots(folder: Path) -> list[Snapshot]:
    """Every snapshot in ``folder`` (files whose metadata says so), by step then gamma."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.safetensors"):
        meta = _metadata(path)
        if meta.get("kind") == SNAPSHOT_KIND:
            found.append(Snapshot(path, float(meta["gamma"]), int(meta["step"])))
    return sorted(found, key=lambda s: (s.step, s.gamma))


def snapshot_spec(snapshot: Snapshot) -> ModelSpec:
    """The model spec recorded in a snapshot's metadata."""
    return ModelSpec.from_json(json.loads(_metadata(snapshot.path)["spec"]),
                               f"post-hoc EMA snapshot {snapshot.path}")


def average_snapshots(snapshots: Sequence[Snapshot], weights: Sequence[float]
                      ) -> dict[str, Tensor]:
    """sum_i x_i theta_i over the snapshots' floating-point tensors (accumulated in float64,
    returned in their own dtype); other tensors are the last snapshot's."""
    total: dict[str, Tensor] = {}
    last: dict[str, Tensor] = {}
    for snapshot, x in zip(snapshots, weights, strict=True):
        last = load_file(str(snapshot.path))
        for name, value in last.items():
            if value.is_floating_point():
                term = value.to(torch.float64) * x
                total[name] = total[name] + term if name in total else term
    return {name: total[name].to(value.dtype) if value.is_floating_point() else value
            for name, value in last.items()}


@dataclass(frozen=True)
class Reconstruction:
    """The averaged weights of a target profile, how they were made and the model spec."""

    state: dict[str, Tensor]
    spec: ModelSpec
    gamma: float
    step: int
    snapshots: list[Snapshot]
    weights: list[float]
    profile_error: float


def reconstruct(run_dir: str | Path, gamma: float, step: int | None = None) -> Reconstruction:
    """The post-hoc EMA of power ``gamma`` at ``step`` (default: the latest snapshot's) from the
    snapshots in ``run_dir/posthoc_ema`` taken at or before ``step``."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    found = list_snapshots(folder)
    if not found:
        raise UserError(f"{folder} holds no post-hoc EMA snapshots; train with "
                        "training.posthoc_ema set (docs/training.md, Post-hoc EMA)")
    latest = found[-1].step
    step = latest if step is None else step
    if not 0 < step <= latest:
        raise UserError(f"--step {step} is outside the run's snapshots (steps "
                        f"{found[0].step} to {latest}); pass a step in that range")
    used = [s for s in found if s.step <= step]
    if not used:
        raise UserError(f"no post-hoc EMA snapshot at or before step {step} (the first is at "
                        f"step {found[0].step}); pass a later --step")
    profiles = [(s.gamma, float(s.step)) for s in used]
    weights = reconstruction_weights(profiles, gamma, step)
    return Reconstruction(average_snapshots(used, weights), snapshot_spec(used[-1]), gamma, step,
                          used, weights, profile_error(profiles, weights, gamma, step))
