"""Post-hoc EMA (Karras et al. 2024, Sec. 3.2, Appendix C): the closed-form profile inner
products against brute-force sums, the least-squares reconstruction against directly computed
power EMAs, the trainer's snapshots (exact resume) and ``ncsn posthoc-ema``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import ncsn
from ncsn.cli import main
from ncsn.errors import UserError
from ncsn.nets.io import load_model
from ncsn.training import Trainer, load_checkpoint, train
from ncsn.training.ema import EMA
from ncsn.training.posthoc import (
    MAX_SIGMA_REL,
    SNAPSHOT_DIR,
    gamma_of_sigma_rel,
    list_snapshots,
    profile_error,
    profile_inner_product,
    reconstruct,
    reconstruction_weights,
    sigma_rel_of_gamma,
)
from test_train_support import final_state, tiny_config

PAPER = (16.97, 6.94)  # the paper's snapshot gammas, sigma_rel 0.05 and 0.10


def step_weights(gamma: float, t: int, length: int) -> torch.Tensor:
    """The weight of iterate i = 1..length in the trainer's power EMA read at step t: the
    telescoping (i^(g+1) - (i-1)^(g+1)) / t^(g+1) for i <= t, 0 after (tests/test_ema.py)."""
    i = torch.arange(1, length + 1, dtype=torch.float64)
    weights = (i ** (gamma + 1) - (i - 1) ** (gamma + 1)) / t ** (gamma + 1)
    return torch.where(i <= t, weights, 0.0)


def test_sigma_rel_and_gamma_invert_each_other_and_match_the_paper() -> None:
    assert sigma_rel_of_gamma(PAPER[0]) == pytest.approx(0.05, abs=1e-4)
    assert sigma_rel_of_gamma(PAPER[1]) == pytest.approx(0.10, abs=1e-4)
    assert sigma_rel_of_gamma(0.0) == pytest.approx(MAX_SIGMA_REL)
    for sigma_rel in (0.01, 0.05, 0.08, 0.2, 0.28):
        assert sigma_rel_of_gamma(gamma_of_sigma_rel(sigma_rel)) == pytest.approx(sigma_rel)
    for outside in (0.0, MAX_SIGMA_REL, 0.3):
        with pytest.raises(ValueError, match="sigma_rel"):
            gamma_of_sigma_rel(outside)


def test_sigma_rel_is_the_relative_std_of_the_discrete_profile() -> None:
    """The std of the trainer's per-step weights over the run length tends to sigma_rel."""
    t = 20_000
    for gamma in (*PAPER, 2.0):
        w = step_weights(gamma, t, t)
        i = torch.arange(1, t + 1, dtype=torch.float64) / t
        mean = float((w * i).sum())
        std = float((w * (i - mean) ** 2).sum()) ** 0.5
        assert std == pytest.approx(sigma_rel_of_gamma(gamma), rel=1e-3)


@pytest.mark.parametrize(("a", "b"), [((6.94, 1.0), (16.97, 0.7)), ((16.97, 0.3), (6.94, 1.0)),
                                      ((2.0, 0.5), (2.0, 0.5)), ((0.5, 0.9), (47.0, 0.4))])
def test_profile_inner_product_is_the_integral_of_the_two_profiles(a, b) -> None:
    """Closed form against a midpoint sum of p_a p_b over [0, min(t_a, t_b)] (10^6 cells)."""
    (ga, ta), (gb, tb) = a, b
    n, t_min = 1_000_000, min(ta, tb)
    tau = (torch.arange(n, dtype=torch.float64) + 0.5) * (t_min / n)
    p_a = (ga + 1) * tau ** ga / ta ** (ga + 1)
    p_b = (gb + 1) * tau ** gb / tb ** (gb + 1)
    assert profile_inner_product(ga, ta, gb, tb) == pytest.approx(
        float((p_a * p_b).sum()) * t_min / n, rel=1e-6)
    assert profile_inner_product(ga, ta, gb, tb) == profile_inner_product(gb, tb, ga, ta)


def test_profile_inner_product_is_the_limit_of_the_trainers_per_step_weights() -> None:
    """sum_i w_a(i) w_b(i) of the trainer's discrete EMAs approaches the closed form (in step
    units) with an error that falls like 1/t^2 (the midpoint-like telescoping weights)."""
    errors = []
    for t in (100, 1000, 10_000):
        discrete = float((step_weights(6.94, t, t) * step_weights(16.97, 7 * t // 10, t)).sum())
        exact = profile_inner_product(6.94, t, 16.97, 7 * t // 10)
        errors.append(abs(discrete / exact - 1))
    assert errors[-1] < 1e-6
    assert errors[1] < errors[0] / 50 and errors[2] < errors[1] / 50


def test_a_stored_snapshots_own_profile_gets_weight_one() -> None:
    snapshots = [(g, float(t)) for t in range(200, 2001, 200) for g in PAPER]
    for k, (gamma, t) in enumerate(snapshots):
        if t < 400:  # reconstruct at the snapshot's step from those taken by then
            continue
        used = [s for s in snapshots if s[1] <= t]
        x = reconstruction_weights(used, gamma, t)
        expected = [1.0 if j == k else 0.0 for j in range(len(used))]
        assert x == pytest.approx(expected, abs=1e-6)
        assert profile_error(used, x, gamma, t) < 1e-6


def test_reconstruction_is_scale_free_in_time() -> None:
    snapshots = [(g, float(t)) for t in (1, 2, 3, 4) for g in PAPER]
    scaled = [(g, t * 1000.0) for g, t in snapshots]
    assert reconstruction_weights(snapshots, 9.45, 4.0) == pytest.approx(
        reconstruction_weights(scaled, 9.45, 4000.0), rel=1e-9, abs=1e-12)


def _run_emas(thetas: torch.Tensor, gammas: list[float], every: int
              ) -> tuple[dict[tuple[float, int], torch.Tensor], dict[float, torch.Tensor]]:
    """Feed iterates ``thetas`` (steps x n) through the trainer's :class:`EMA` (float64): the
    snapshots {(gamma, t): weights} every ``every`` steps, and each EMA's final weights."""
    net = torch.nn.Linear(thetas.shape[1], 1, bias=False).double()
    emas = {g: EMA(net, gamma=g) for g in gammas}
    snapshots = {}
    for t, theta in enumerate(thetas, start=1):
        with torch.no_grad():
            net.weight.copy_(theta)
        for gamma, ema in emas.items():
            ema.update(net, t)
            if t % every == 0:
                snapshots[(gamma, t)] = ema.model.weight.detach().flatten().clone()
    return snapshots, {g: e.model.weight.detach().flatten() for g, e in emas.items()}


def test_reconstruction_approximates_a_directly_computed_power_ema() -> None:
    """Random-walk iterates (like SGD's) through the trainer's EMAs with the paper's gammas;
    the snapshot combination for sigma_rel 0.08 (gamma 9.45) is compared with an EMA of that
    gamma run directly. The combination averages iterate i by sum_j x_j w_j(i), so its error
    is exactly sum_i dw_i theta_i with dw = that minus the target's w(i) (linearity, checked to
    1e-10), hence |error| <= ||dw||_1 max |theta| (Hoelder). That bound shrinks as snapshots
    get denser, and with 40 snapshots per gamma the error is under 1% of the gap between the
    target and the nearest stored EMA (what one would use without reconstruction)."""
    steps, n = 2000, 32
    gen = torch.Generator().manual_seed(0)
    thetas = torch.randn(steps, n, generator=gen, dtype=torch.float64).cumsum(0) / steps ** 0.5
    target = gamma_of_sigma_rel(0.08)
    _, direct = _run_emas(thetas, [target], steps)
    bounds = []
    for every in (500, 250, 100, 50):
        snaps, final = _run_emas(thetas, list(PAPER), every)
        keys = sorted(snaps)
        x = reconstruction_weights([(g, float(t)) for g, t in keys], target, steps)
        rebuilt = sum(xi * snaps[k] for xi, k in zip(x, keys, strict=True))
        dw = sum(xi * step_weights(g, t, steps) for xi, (g, t) in zip(x, keys, strict=True)) - \
            step_weights(target, steps, steps)
        error = rebuilt - direct[target]
        assert error == pytest.approx(dw @ thetas, abs=1e-10)
        bound = float(dw.abs().sum() * thetas.abs().max())
        assert float(error.abs().max()) <= bound
        bounds.append(bound)
    assert bounds == sorted(bounds, reverse=True)
    nearest_gap = float((final[6.94] - direct[target]).abs().max())
    assert float(error.abs().max()) < 0.01 * nearest_gap


def test_denser_snapshots_match_the_target_profile_better() -> None:
    errors = {}
    for sigma_rel in (0.03, 0.08, 0.15, 0.25):
        gamma = gamma_of_sigma_rel(sigma_rel)
        errors[sigma_rel] = []
        for every in (800, 400, 200, 100):
            snaps = [(g, float(t)) for t in range(every, 2401, every) for g in PAPER]
            errors[sigma_rel].append(profile_error(snaps, reconstruction_weights(
                snaps, gamma, 2400), gamma, 2400))
        assert errors[sigma_rel] == sorted(errors[sigma_rel], reverse=True)
    # between the stored lengths the match is close; beyond them it extrapolates
    assert errors[0.08][-1] < 0.01 < errors[0.03][-1]


# ---------------------------------------------------------------------------- the trainer
POSTHOC = {"posthoc_ema": {"every": 2, "gammas": [16.97, 6.94]}}


def _snapshot_files(run: Path) -> dict[str, tuple[dict[str, str], dict[str, list]]]:
    """Each snapshot's metadata and tensors (as lists: comparable with ==); not its bytes,
    since safetensors writes the metadata keys in a per-process order."""
    found = {}
    for path in sorted((run / SNAPSHOT_DIR).iterdir()):
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        found[path.name] = (metadata, {k: v.tolist() for k, v in load_file(str(path)).items()})
    return found


def test_snapshots_are_the_trainers_power_emas_with_their_step_inside(tmp_path: Path) -> None:
    """A run with ``ema_gamma`` 6.94 writes, as its last gamma-6.94 snapshot, its model_ema."""
    config = tiny_config(training={"ema_rate": None, "ema_gamma": 6.94, **POSTHOC})
    train(config, tmp_path / "run", progress=False)
    found = list_snapshots(tmp_path / "run" / SNAPSHOT_DIR)
    assert [(s.gamma, s.step) for s in found] == [(g, t) for t in (2, 4, 6, 8)
                                                  for g in sorted(PAPER)]
    last = [s for s in found if s.gamma == 6.94][-1]
    ema = load_file(str(tmp_path / "run" / "model_ema.safetensors"))
    snapshot = load_file(str(last.path))
    assert ema.keys() == snapshot.keys()
    assert all(torch.equal(ema[k], snapshot[k]) for k in ema)
    with safe_open(str(last.path), framework="pt") as f:
        meta = f.metadata()
    assert meta["step"] == "8" and float(meta["gamma"]) == 6.94
    assert json.loads(meta["spec"])["network"]["name"] == "unet_small"


def test_interrupted_run_resumes_to_identical_snapshots(tmp_path: Path, monkeypatch) -> None:
    config = tiny_config(training=POSTHOC)
    train(config, tmp_path / "full", progress=False)
    real_step = Trainer.train_step

    def interrupted(self: Trainer) -> float:
        if self.step == 6:  # after checkpoint 4 and snapshot 6
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", progress=False)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    train(config, tmp_path / "cut", resume=True, progress=False)
    assert _snapshot_files(tmp_path / "cut") == _snapshot_files(tmp_path / "full")
    full, cut = final_state(tmp_path / "full"), final_state(tmp_path / "cut")
    for a, b in zip(full["posthoc_ema"], cut["posthoc_ema"], strict=True):
        assert a["gamma"] == b["gamma"]
        assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])


def test_posthoc_emas_cannot_start_in_the_middle_of_a_run(tmp_path: Path) -> None:
    train(tiny_config(training={"n_iters": 4}), tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="post-hoc EMAs for gammas none"):
        train(tiny_config(training=POSTHOC), tmp_path / "run", resume=True, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt_00000004.pt")
    assert ckpt["posthoc_ema"] is None


def test_posthoc_config_errors_name_the_field() -> None:
    for bad, problem in [({"every": 0}, "every: must be > 0"), ({}, "every: required"),
                         ({"every": 2, "gammas": []}, "gammas: must hold 1 to 16"),
                         ({"every": 2, "gammas": [7, 7]}, "gammas: must be distinct"),
                         ({"every": 2, "gammas": [-1]}, r"gammas\.0: must be > 0")]:
        with pytest.raises(UserError, match=f"training.posthoc_ema.{problem}"):
            tiny_config(training={"posthoc_ema": bad})


# ---------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("posthoc") / "run"
    train(tiny_config(training=POSTHOC), run, progress=False)
    return run


def test_posthoc_ema_command_writes_a_model_that_samples(run_dir: Path, tmp_path: Path,
                                                         capsys) -> None:
    out = tmp_path / "ema08"
    assert main(["posthoc-ema", str(run_dir), "--sigma-rel", "0.08", "--out", str(out)]) == 0
    assert "from 8 snapshots" in capsys.readouterr().out
    net, spec = load_model(out)
    rec = reconstruct(run_dir, gamma_of_sigma_rel(0.08))
    assert all(torch.equal(v, rec.state[k]) for k, v in net.state_dict().items())
    assert spec.provenance["posthoc_ema"]["sigma_rel"] == pytest.approx(0.08)
    assert ncsn.load(out).sample(2, seed=0).shape == (2, 1, 8, 8)
    assert main(["sample", str(out), "-n", "2", "--out", str(tmp_path / "samples"),
                 "--no-progress"]) == 0


def test_posthoc_ema_at_a_snapshots_own_gamma_and_step_is_that_snapshot(
        run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "g"
    assert main(["posthoc-ema", str(run_dir), "--gamma", "6.94", "--step", "6",
                 "--out", str(out)]) == 0
    stored = load_file(str(run_dir / SNAPSHOT_DIR / "gamma6.94_step00000006.safetensors"))
    net, _ = load_model(out)
    for name, value in net.state_dict().items():
        assert torch.allclose(value, stored[name], rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize(("args", "message"), [
    (["--sigma-rel", "0.3"], "argument --sigma-rel: '0.3': must be < 0.288"),
    (["--sigma-rel", "0.08", "--step", "9"], "--step 9 is outside the run's snapshots"),
    (["--sigma-rel", "0.08", "--step", "1"], "no post-hoc EMA snapshot at or before step 1"),
    (["--sigma-rel", "0.08", "--out", "ema0.08"], "cannot hold a dot (.08)"),
])
def test_posthoc_ema_command_refuses_bad_input_in_one_line(run_dir, tmp_path, capsys, args,
                                                           message) -> None:
    assert main(["posthoc-ema", str(run_dir), "--out", str(tmp_path / "m"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_posthoc_ema_command_needs_snapshots(tmp_path: Path, capsys) -> None:
    train(tiny_config(training={"n_iters": 2}), tmp_path / "plain", progress=False)
    assert main(["posthoc-ema", str(tmp_path / "plain"), "--sigma-rel", "0.08",
                 "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "holds no post-hoc EMA snapshots; train with training.posthoc_ema" in err
    assert err.count("\n") == 1
