import json

import numpy as np
import pytest
import torch

from ncsn.cli import main
from ncsn.experiments.toy import mode_fraction, score_errors, sliced_wasserstein


def test_sliced_wasserstein_is_zero_for_same_set_and_grows_with_shift():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 2, generator=gen)
    assert sliced_wasserstein(a, a[torch.randperm(500, generator=gen)]) == pytest.approx(0.0)
    # Shifting by a vector of norm 3: SW1 = 3 * E|<u, e>| = 3 * 2/pi in 2-D (u uniform direction).
    shifted = sliced_wasserstein(a, a + torch.tensor([3.0, 0.0]), n_projections=20000,
                                 generator=gen)
    assert shifted == pytest.approx(3 * 2 / np.pi, rel=0.03)


def test_mode_fraction_and_score_errors():
    x = torch.tensor([[-5.0, -5.0], [5.0, 5.0], [4.0, 6.0], [6.0, 3.0]])
    assert mode_fraction(x) == 0.25
    density = torch.tensor([1.0, 0.5, 0.001, 0.0])
    true = torch.zeros(4, 2)
    model = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    err = score_errors(model, true, density)
    assert err["score_error_density_weighted"] == pytest.approx((1.0 + 0.004) / 1.501)
    assert err["score_error_low_density_mean"] == pytest.approx((4.0 + 9.0) / 2)
    assert err["score_error_high_density_mean"] == pytest.approx(0.5)


def test_cli_figure3_writes_figure_samples_and_metrics(tmp_path, capsys):
    assert main(["toy", "figure3", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    methods = metrics["methods"]
    assert abs(methods["annealed_langevin"]["fraction_in_lower_left_mode"] - 0.2) < 0.05
    assert abs(methods["langevin"]["fraction_in_lower_left_mode"] - 0.2) > 0.1
    assert (methods["annealed_langevin"]["sliced_wasserstein_to_exact"]
            < methods["langevin"]["sliced_wasserstein_to_exact"])
    with np.load(tmp_path / "figure3_samples.npz") as samples:
        assert samples["annealed_langevin"].shape == (1280, 2)
    assert (tmp_path / "figure3.png").stat().st_size > 10_000
    assert "annealed_langevin" in capsys.readouterr().out


def test_cli_figure2_short_run_learns_scores_near_the_data(tmp_path):
    assert main(["toy", "figure2", "--out", str(tmp_path), "--steps", "1500"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 1500
    # The paper's point: accurate where data are, inaccurate in low-density regions.
    assert metrics["score_error_low_density_mean"] > 5 * metrics["score_error_high_density_mean"]
    with np.load(tmp_path / "figure2_fields.npz") as fields:
        assert fields["losses"].shape == (1500,)
    assert (tmp_path / "figure2.png").exists() and (tmp_path / "figure2_loss.png").exists()


def test_cli_figure1_short_run_records_both_loss_curves(tmp_path):
    assert main(["toy", "figure1", "--out", str(tmp_path), "--steps", "3"]) == 0
    with np.load(tmp_path / "figure1_losses.npz") as curves:
        assert curves["clean"].shape == (3,) and curves["noised"].shape == (3,)
        assert not np.array_equal(curves["clean"], curves["noised"])
    assert (tmp_path / "figure1.png").exists()


@pytest.mark.parametrize("argv, needle", [
    (["toy", "figure9", "--out", "x"], "invalid choice: 'figure9'"),
    (["toy", "figure2", "--out", "x", "--steps", "0"], "argument --steps: '0': must be >= 1"),
    (["toy", "figure3"], "--out"),
])
def test_cli_bad_arguments_name_the_argument(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "--help" in err[0], err


def test_figure1_noised_data_has_a_bounded_steadier_ssm_loss():
    """Figure 1 at test size (8x8 digits, D = 64). The SSM objective of data + N(0, sigma^2 I)
    is at least -E||grad log p_sigma||^2 / 2 >= -D / (2 sigma^2) (the Fisher information of
    data + noise is at most the noise's, D / sigma^2); on clean data it has no lower bound. So
    the clean loss runs past that bound, the noised one stays above it and ends steadier."""
    from ncsn.data import load_dataset, to_float
    from ncsn.experiments.manifold import train_ssm_curve

    data = to_float(load_dataset("digits8", "train"))
    noise_std = 0.01
    bound = -data[0].numel() / (2 * noise_std**2)
    curves = {std: np.asarray(train_ssm_curve(data, noise_std=std, steps=120, batch_size=8,
                                              lr=5e-3, seed=0, progress=False, label=str(std)))
              for std in (0.0, noise_std)}
    clean, noised = curves[0.0], curves[noise_std]
    assert np.isfinite(clean).all() and np.isfinite(noised).all()
    assert clean.min() < 1.5 * bound  # runs well past any optimum the noised objective has
    assert noised.min() > 0.5 * bound

    def relative_spread(curve: np.ndarray) -> float:
        tail = curve[-40:]
        return float(tail.std() / abs(tail.mean()))

    assert relative_spread(noised) < relative_spread(clean)


@pytest.mark.parametrize(("writer", "name"), [
    ("matplotlib.figure.Figure.savefig", "figure3.png"),
    ("numpy.savez_compressed", "figure3_samples.npz"),
])
def test_a_write_failing_midway_keeps_the_earlier_output(tmp_path, monkeypatch, writer, name):
    from ncsn.errors import UserError
    from ncsn.experiments.toy import figure3

    small = {"num_samples": 64, "langevin_steps": 5, "steps_each": 2}
    figure3(tmp_path, **small)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail_midway(_self_or_file, fh, *args, **kwargs):
        fh = fh if hasattr(fh, "write") else _self_or_file
        fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    if writer.startswith("numpy"):
        monkeypatch.setattr(writer, lambda fh, **arrays: fail_midway(None, fh))
    else:
        monkeypatch.setattr(writer, fail_midway)
    with pytest.raises(UserError, match=f"cannot write .*{name}: no space left"):
        figure3(tmp_path, seed=1, **small)
    assert (tmp_path / name).read_bytes() == before[name]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_out_under_a_file_is_refused_before_the_figure(tmp_path, capsys, monkeypatch):
    import ncsn.experiments.toy as toy

    def no_figure(*args, **kwargs):
        raise AssertionError("the figure started before --out was checked")

    monkeypatch.setattr(toy, "figure3", no_figure)
    (tmp_path / "afile").write_text("x")
    assert main(["toy", "figure3", "--out", str(tmp_path / "afile" / "fig")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and err.count("\n") == 1
