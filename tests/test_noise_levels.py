"""``ncsn noise-levels``: NCSNv2's published CIFAR-10 choices, sigma_1 over a data set with its
bounds, the trainer's sigma_max: auto, and clear refusals."""

import json

import pytest
import torch

import ncsn.training.setup as setup
from ncsn.cli import main
from ncsn.config import validate_config
from ncsn.core.noise import ncsnv2_sigma_max
from ncsn.data import load_dataset, to_float
from ncsn.errors import UserError


def _report(capsys, *argv: str) -> dict:
    assert main(["noise-levels", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ncsnv2_cifar10_choices(capsys):
    # NCSNv2 CIFAR-10: D = 3072, sigma 50 -> 0.01, L = 232, T = 5, step 6.2e-6.
    r = _report(capsys, "--dim", "3072", "--sigma-max", "50", "--sigma-min", "0.01",
                "--num-levels", "232", "--steps", "5", "--step-size", "6.2e-6")
    assert r["technique2"]["levels"]["criterion"] == pytest.approx(0.567, abs=1e-3)
    assert r["technique4"]["variance_ratio"] == pytest.approx(1.055, abs=1e-3)
    assert r["technique4"]["paper_eps"] == pytest.approx(1.24e-5)
    # what the techniques themselves choose: about 219 levels for exactly 0.5, and 6.2e-6
    aim = r["technique2"]["levels_for_target"]
    assert aim["num_levels"] in range(217, 222) and aim["criterion"] == pytest.approx(0.5, abs=0.01)
    assert r["technique4"]["step_lr_best"] == pytest.approx(6.2e-6, rel=0.02)
    # NCSN's 10 levels 1 -> 0.01 are far too few for D = 3072 by technique 2
    assert r["ncsn_defaults"]["criterion"] < 1e-3


def test_data_set_sigma_1_is_exact_or_bounded(capsys, monkeypatch):
    images = to_float(load_dataset("digits8", "train"))
    exact = ncsnv2_sigma_max(images)
    r = _report(capsys, "digits8")
    t1 = r["technique1"]
    assert t1["exact"] and t1["images"] == t1["of"] == len(images) and r["dim"] == 64
    assert t1["value"] == pytest.approx(exact) and r["sigma_max"] == pytest.approx(exact)
    assert r["sources"]["sigma_max"] == "technique 1"
    monkeypatch.setattr(setup, "AUTO_SIGMA_SUBSET", 100)  # a subset, as for large data sets
    t1 = _report(capsys, "digits8")["technique1"]
    assert not t1["exact"] and t1["images"] == 100
    assert t1["value"] <= t1["lower"] <= exact + 1e-9 <= t1["upper"] + 2e-9
    assert t1["upper"] < 2.5 * exact  # bounds that say something


def test_report_matches_the_trainers_auto_sigma_max(capsys, tmp_path):
    config = validate_config({"data": {"name": "digits8", "logit": True},
                              "noise": {"sigma_max": "auto", "num_levels": "auto"}})
    resolved, sigmas = setup.resolve_noise(config, load_dataset("digits8", "train"))
    path = tmp_path / "auto.yaml"
    path.write_text("data: {name: digits8, logit: true}\n"
                    "noise: {sigma_max: auto, num_levels: auto}\n")
    r = _report(capsys, "--config", str(path))
    assert r["technique1"]["logit"] and r["sources"]["sigma_max"] == "technique 1"
    assert round(r["sigma_max"], 4) == pytest.approx(float(sigmas[0]), rel=1e-6)
    assert r["technique2"]["levels"]["num_levels"] == resolved.noise.num_levels == len(sigmas)


@pytest.mark.parametrize(("argv", "message"), [
    (["--dim", "4", "--sigma-max", "5"], "cannot reach 0.5 in dimension D = 4"),
    (["--dim", "64", "--sigma-max", "5", "--target", "0.999"], "target must lie in (0, 0.9973)"),
    (["--dim", "64"], "--dim needs --sigma-max"),
    (["digits8", "--dim", "64"], "exactly one of"),
    (["--dim", "64", "--sigma-max", "5", "--step-size", "1e-3"], "--step-size must lie in"),
])
def test_refusals_are_one_line(capsys, argv, message):
    assert main(["noise-levels", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_text_report_names_each_technique(capsys):
    assert main(["noise-levels", "--dim", "3072", "--sigma-max", "50"]) == 0
    out = capsys.readouterr().out
    for needle in ("technique 2", "L = 219", "technique 4, T = 5", "NCSN's defaults: L = 10"):
        assert needle in out


def test_training_with_auto_levels_in_tiny_dimension_is_a_user_error():
    config = validate_config({"noise": {"sigma_max": 1.0, "num_levels": "auto"}})
    tiny = torch.zeros(8, 1, 2, 2, dtype=torch.uint8)  # D = 4
    with pytest.raises(UserError, match="noise.num_levels: auto: NCSNv2's ratio criterion "
                                        "cannot reach 0.5 in dimension D = 4"):
        setup.resolve_noise(config, tiny)
