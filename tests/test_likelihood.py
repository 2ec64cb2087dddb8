"""Probability-flow ODE likelihoods: closed forms on Gaussians, the paper's mixture, Hutchinson's
estimator, the bits/dim conversion, and ``ncsn likelihood`` end to end."""

import json
import math

import pytest
import torch

from ncsn.cli import main
from ncsn.core.likelihood import (
    ODELikelihood,
    ODESettings,
    bits_per_dim,
    draw_probes,
    gaussian_log_prob,
    logit_log_jacobian,
    ode_log_likelihood,
    probe_quadratic_forms,
)
from ncsn.core.noise import geometric_sigmas
from ncsn.core.toy import GaussianMixture, paper_mixture
from ncsn.data import logit_transform
from ncsn.imageio import save_pngs
from ncsn.nets import build_network
from ncsn.nets.io import save_model
from ncsn.spec.model import ModelSpec

SIGMA_MIN, SIGMA_MAX = 0.01, 50.0
EXACT = {"probe": "exact"}


class DiagonalGaussian:
    """N(mu, diag(s0^2)) data: p_sigma = N(mu, diag(s0^2 + sigma^2)), score -(x - mu)/var."""

    def __init__(self, mu: list[float], s0: list[float]) -> None:
        self.mu = torch.tensor(mu, dtype=torch.float64)
        self.var0 = torch.tensor(s0, dtype=torch.float64) ** 2
        self.calls = 0

    def var(self, sigma: float | torch.Tensor) -> torch.Tensor:
        return self.var0 + torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1) ** 2

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return -(x - self.mu) / self.var(sigma)

    def log_prob(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        var = self.var(sigma)
        return (-0.5 * (x - self.mu) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)).sum(1)


def _points(dims: int, n: int = 6) -> torch.Tensor:
    return 2 * torch.randn(n, dims, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)


def _solver_tolerance(settings: ODESettings, result: ODELikelihood) -> float:
    """An allowance from the solver's per-step error control, atol + rtol |state|, taken at the
    largest state entry (x grows to x_end, up to ~sigma_max / s0 times x), times 10 for the
    accumulation over steps (measured: the error stays below 2x the one-step bound)."""
    largest = max(float(result.x_end.abs().max()), float(result.delta_log_prob.abs().max()))
    return 10 * (settings.atol + settings.rtol * largest)


@pytest.mark.parametrize("dims", [1, 5])
def test_gaussian_closed_form_including_the_prior_term(dims):
    data = DiagonalGaussian([0.3 * k - 0.4 for k in range(dims)],
                            [0.5 + 0.2 * k for k in range(dims)])
    x = _points(dims)
    settings = ODESettings(rtol=1e-7, atol=1e-7, **EXACT)
    result = ode_log_likelihood(data, x, SIGMA_MIN, SIGMA_MAX, settings, prior_mean=0.2)
    truth = data.log_prob(x, SIGMA_MIN)
    # the ODE maps x linearly: x(sigma) - mu scales by sqrt(var(sigma) / var(sigma_min))
    scale = torch.sqrt(data.var(SIGMA_MAX) / data.var(SIGMA_MIN))
    torch.testing.assert_close(result.x_end, data.mu + (x - data.mu) * scale, rtol=1e-5,
                               atol=1e-5)
    # the prior N(0.2, sigma_max^2 I) replaces the true p_sigma_max: an exactly known offset
    prior_swap = gaussian_log_prob(result.x_end, 0.2, SIGMA_MAX) \
        - data.log_prob(result.x_end, SIGMA_MAX)
    torch.testing.assert_close(result.prior_log_prob,
                               gaussian_log_prob(result.x_end, 0.2, SIGMA_MAX))
    error = (result.log_prob - prior_swap - truth).abs().max().item()
    assert error < _solver_tolerance(settings, result)


def test_rk45_error_shrinks_with_the_tolerance():
    data = DiagonalGaussian([0.5, -1.0, 0.0], [0.3, 1.0, 2.0])
    x = _points(3)
    truth = data.log_prob(x, SIGMA_MIN)
    errors, evaluations = [], []
    for tol in (1e-3, 1e-5, 1e-7):
        settings = ODESettings(rtol=tol, atol=tol, **EXACT)
        r = ode_log_likelihood(data, x, SIGMA_MIN, SIGMA_MAX, settings)
        error = (r.delta_log_prob + data.log_prob(r.x_end, SIGMA_MAX) - truth).abs().max()
        assert error < _solver_tolerance(settings, r)
        errors.append(float(error))
        evaluations.append(r.evaluations)
    assert errors[0] > errors[1] > errors[2]
    assert evaluations[0] < evaluations[1] < evaluations[2]


def test_heun_is_second_order_and_evaluations_are_counted():
    data = DiagonalGaussian([0.5, -1.0], [0.3, 2.0])
    x = _points(2)
    truth = data.log_prob(x, SIGMA_MIN)
    errors = []
    for steps in (40, 80, 160):  # the asymptotic regime (10 steps: error ratio only 2.5)
        data.calls = 0
        r = ode_log_likelihood(data, x, SIGMA_MIN, SIGMA_MAX,
                               ODESettings(solver="heun", steps=steps, **EXACT))
        assert r.evaluations == data.calls == 2 * steps
        errors.append(float((r.delta_log_prob + data.log_prob(r.x_end, SIGMA_MAX)
                             - truth).abs().max()))
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert 3.0 < coarse / fine < 5.0  # halving the step divides the error by ~4


def test_rk45_reports_every_score_evaluation():
    data = DiagonalGaussian([0.0], [1.0])
    r = ode_log_likelihood(data, _points(1), SIGMA_MIN, SIGMA_MAX, ODESettings(**EXACT))
    assert r.evaluations == data.calls > 6  # RK45 needs 6 evaluations per step at least


def test_paper_mixture_matches_the_perturbed_log_density():
    mixture = paper_mixture()
    x = torch.cat([mixture.sample(10, generator=torch.Generator().manual_seed(0)).double(),
                   torch.tensor([[0.0, 0.0], [-5.0, 5.0], [2.0, 3.0]], dtype=torch.float64)])
    settings = ODESettings(rtol=1e-6, atol=1e-6, **EXACT)
    r = ode_log_likelihood(mixture, x, SIGMA_MIN, SIGMA_MAX, settings)
    truth = mixture.log_prob(x, SIGMA_MIN)
    # the ODE part exactly: log p_smin(x) - log p_smax(x_end) with the true perturbed mixture
    estimate = r.delta_log_prob + mixture.perturbed(SIGMA_MAX).log_prob(r.x_end)
    assert (estimate - truth).abs().max() < _solver_tolerance(settings, r)


def test_mixture_with_the_zero_mean_prior_approaches_the_truth_as_sigma_max_grows():
    """With the default prior the error is exactly log N(x_end; 0, smax^2) - log p_smax(x_end),
    which falls like 1 / sigma_max pointwise (x_end ~ sigma_max, cross term x_end . mu / smax^2)."""
    mixture = paper_mixture()
    x = mixture.sample(8, generator=torch.Generator().manual_seed(2)).double()
    truth = mixture.log_prob(x, SIGMA_MIN)
    errors = []
    for sigma_max in (200.0, 2000.0, 20000.0):
        r = ode_log_likelihood(mixture, x, SIGMA_MIN, sigma_max,
                               ODESettings(rtol=1e-7, atol=1e-7, **EXACT))
        swap = r.prior_log_prob - mixture.perturbed(sigma_max).log_prob(r.x_end)
        torch.testing.assert_close(r.log_prob - truth, swap, atol=1e-5, rtol=0)
        errors.append(float((r.log_prob - truth).abs().max()))
    for larger, smaller in zip(errors[:-1], errors[1:], strict=True):
        assert 8 < larger / smaller < 12


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_mean_agrees_with_the_exact_divergence(kind):
    mixture = paper_mixture()  # off-diagonal Jacobian between the modes
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0], [4.0, 6.0]], dtype=torch.float64)
    sigma = torch.full((3,), 1.5, dtype=torch.float64)
    exact_probes = draw_probes(x, "exact", 1)
    _, exact_forms = probe_quadratic_forms(mixture, x, sigma, exact_probes)
    exact = exact_forms.mean(0)
    jac = torch.stack([torch.autograd.functional.jacobian(
        lambda p, s=s: mixture(p[None], s[None])[0], p) for p, s in zip(x, sigma, strict=True)])
    torch.testing.assert_close(exact, jac.diagonal(dim1=1, dim2=2).sum(1))
    count = 4000
    probes = draw_probes(x, kind, count, torch.Generator().manual_seed(0))
    _, forms = probe_quadratic_forms(mixture, x, sigma, probes)
    standard_error = forms.std(0) / math.sqrt(count)
    assert ((forms.mean(0) - exact).abs() < 4 * standard_error).all()
    assert (forms.std(0) > 0).all()  # the test has teeth: single probes do scatter


def test_rademacher_is_exact_for_a_diagonal_jacobian():
    data = DiagonalGaussian([0.0, 1.0, 2.0], [0.5, 1.0, 3.0])
    x, sigma = _points(3, 2), torch.full((2,), 0.7, dtype=torch.float64)
    probes = draw_probes(x, "rademacher", 5, torch.Generator().manual_seed(0))
    _, forms = probe_quadratic_forms(data, x, sigma, probes)
    trace = -(1 / data.var(0.7)).sum()
    torch.testing.assert_close(forms, torch.full_like(forms, float(trace)))


def test_ode_with_many_probes_agrees_with_the_exact_divergence():
    mixture = GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 1.0]], [0.5, 1.0])
    x = torch.tensor([[0.0, 0.5], [-2.0, 0.0]], dtype=torch.float64)
    heun = {"solver": "heun", "steps": 16}
    exact = ode_log_likelihood(mixture, x, 0.05, 20.0, ODESettings(**heun, **EXACT))
    runs = torch.stack([ode_log_likelihood(
        mixture, x, 0.05, 20.0, ODESettings(**heun, probes=8),
        generator=torch.Generator().manual_seed(seed)).log_prob for seed in range(24)])
    standard_error = runs.std(0) / math.sqrt(runs.shape[0])
    assert ((runs.mean(0) - exact.log_prob).abs() < 4 * standard_error).all()
    assert (standard_error > 0).all()


def test_bits_per_dim_hand_worked():
    # a uniform density on [0, 1)^D spends exactly 8 bits on each 8-bit pixel
    assert float(bits_per_dim(torch.zeros(1), 10)) == pytest.approx(8.0)
    # D = 4, log p = 12 ln 2: -12 ln 2 / (4 ln 2) + 8 = 5 bits/dim
    assert float(bits_per_dim(torch.tensor([12 * math.log(2)]), 4)) == pytest.approx(5.0)
    # the same density on score_sde's [-1, 1) scale: log p - D ln 2, offset 7 -> still 5
    centered = bits_per_dim(torch.tensor([12 * math.log(2) - 4 * math.log(2)]), 4,
                            data_width=2.0)
    assert float(centered) == pytest.approx(5.0)


def test_logit_log_jacobian_matches_autograd():
    y = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # the transform acts pixel by pixel: its Jacobian is diagonal, the gradient of the sum
    grads = torch.autograd.grad(logit_transform(y.requires_grad_(True)).sum(), y)[0]
    torch.testing.assert_close(logit_log_jacobian(y.detach()),
                               grads.log().flatten(1).sum(1))


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="solver must be one of"):
        ODESettings(solver="euler")
    with pytest.raises(ValueError, match="probes must be >= 1"):
        ODESettings(probes=0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        ode_log_likelihood(DiagonalGaussian([0.0], [1.0]), _points(1), 1.0, 0.5)


# --- ncsn likelihood --------------------------------------------------------------------------

SIZE = 8


def _tiny_model(folder, name, section, sampling=None):
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.05, 3)
    net = build_network(section, channels=1, image_size=SIZE, sigmas=sigmas)
    spec = {"network": section, "channels": 1, "image_size": SIZE, "sigmas": sigmas.tolist()}
    if sampling:
        spec["sampling"] = sampling
    return save_model(folder / name, net, ModelSpec.from_json(spec))


UNET = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {"unet": _tiny_model(folder, "unet", UNET),
            "logit": _tiny_model(folder, "logit", UNET, {"logit": True}),
            "refinenet": _tiny_model(folder, "refinenet", {"name": "cond_refinenet", "ngf": 4})}


def _run_json(capsys, *argv):
    assert main(["likelihood", *map(str, argv), "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_on_a_data_set_reports_mean_stderr_and_evaluations(models, capsys):
    pytest.importorskip("sklearn", reason="digits8 needs scikit-learn (the 'data' extra)")
    common = [models["unet"], "--dataset", "digits8", "-n", 3, "--solver", "heun", "--steps", 3,
              "--batch-size", 2]
    report = _run_json(capsys, *common)
    bpd = torch.tensor(report["per_image_bits_per_dim"], dtype=torch.float64)
    assert report["n"] == 3 and report["dims"] == 64 and torch.isfinite(bpd).all()
    assert report["bits_per_dim"] == pytest.approx(float(bpd.mean()))
    assert report["stderr"] == pytest.approx(float(bpd.std() / math.sqrt(3)))
    assert report["evaluations"] == 2 * 3 * 2  # 2 per Heun step, 3 steps, 2 batches
    assert (report["sigma_min"], report["sigma_max"]) == pytest.approx((0.05, 1.0))
    # floor 8 + log2(2 pi 0.05^2) / 2 = 8 - 2.9962 (a density smoothed by N(0, 0.05^2 I) peaks
    # at (2 pi 0.05^2)^(-D/2))
    assert report["sigma_min_floor_bits_per_dim"] == pytest.approx(5.0038, abs=1e-4)
    assert report["per_image_bits_per_dim"] == _run_json(capsys, *common)[
        "per_image_bits_per_dim"]
    assert report["per_image_bits_per_dim"] != _run_json(capsys, *common, "--seed", 1)[
        "per_image_bits_per_dim"]


def test_cli_image_files_equal_the_data_set_images(models, capsys, tmp_path):
    pytest.importorskip("sklearn", reason="digits8 needs scikit-learn (the 'data' extra)")
    from ncsn.data import load_dataset, to_float

    save_pngs(to_float(load_dataset("digits8", "test")[:2]), tmp_path / "pngs")
    settings = ["--solver", "heun", "--steps", 2, "--probe", "gaussian", "--probes", 2]
    from_files = _run_json(capsys, models["unet"], "--images", tmp_path / "pngs", *settings)
    from_data = _run_json(capsys, models["unet"], "--dataset", "digits8", "-n", 2, *settings)
    assert from_files["per_image_bits_per_dim"] == from_data["per_image_bits_per_dim"]


def test_cli_logit_model_includes_the_jacobian(models, capsys, tmp_path):
    save_pngs(torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)),
              tmp_path)
    report = _run_json(capsys, models["logit"], "--images", tmp_path, "--solver", "heun",
                       "--steps", 2)
    assert report["logit"] is True and math.isfinite(report["bits_per_dim"])
    text_args = ["likelihood", str(models["logit"]), "--images", str(tmp_path), "--solver",
                 "heun", "--steps", "2", "--no-progress"]
    assert main(text_args) == 0
    assert "logit Jacobian included" in capsys.readouterr().out


@pytest.mark.parametrize(("model", "extra", "message"), [
    ("refinenet", [], "knows only its 3 trained noise levels"),
    ("unet", ["--images", "{wrong}"], "the model takes 1x8x8 images"),
    ("unet", ["--probes", "0"], "argument --probes: '0': must be >= 1"),
    ("unet", ["--solver", "heun", "--steps", "0"], "argument --steps: '0': must be >= 1"),
    ("unet", ["-n", "0"], "argument -n/--num-images: '0': must be >= 1"),
])
def test_cli_mistakes_exit_2_with_one_line(models, capsys, tmp_path, model, extra, message):
    save_pngs(torch.rand(1, 1, SIZE, SIZE), tmp_path / "right")
    save_pngs(torch.rand(1, 1, SIZE + 2, SIZE + 2), tmp_path / "wrong")
    source = [] if "--images" in extra else ["--images", str(tmp_path / "right")]
    argv = ["likelihood", str(models[model]), *source,
            *[a.format(wrong=tmp_path / "wrong") for a in extra], "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_summary_flags_a_mean_below_the_sigma_min_floor():
    from ncsn.cli.likelihood import BELOW_FLOOR_NOTE, _summary

    report = {"bits_per_dim": 3.0, "stderr": 0.1, "n": 2, "images": "files", "solver": "heun",
              "steps": 4, "rtol": 1e-5, "atol": 1e-5, "probe": "rademacher", "probes": 1,
              "sigma_min": 0.01, "sigma_max": 1.0, "prior_mean": 0.0, "logit": False,
              "prior_gap_bound_bits_per_dim": 0.01, "sigma_min_floor_bits_per_dim": 2.68,
              "evaluations": 8, "batches": 1, "seconds": 1.0}
    assert BELOW_FLOOR_NOTE not in _summary(report)
    assert BELOW_FLOOR_NOTE in _summary({**report, "bits_per_dim": 2.0})
