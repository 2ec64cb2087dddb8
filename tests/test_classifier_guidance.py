"""Class-conditional sampling by classifier guidance end to end on tiny random-weight models:
``ncsn train-classifier`` writes a classifier with its accuracy per level from a classifier config
(packaged or a file, flags overriding it), ``ncsn sample --class --classifier`` equals
``ScoreModel.sample_class``, and misfits are one-line errors (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ncsn
from ncsn.cli import main
from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.imageio import to_uint8
from ncsn.nets import build_network
from ncsn.nets.classifier import NoiseConditionalClassifier, save_classifier
from ncsn.nets.io import save_model
from ncsn.spec.model import ModelSpec
from ncsn.training.classifier import ClassifierRecipe, load_classifier_config

TINY_UNET = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2}


def _save_model(path, size: int):
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.05, 3)
    net = build_network(TINY_UNET, channels=1, image_size=size, sigmas=sigmas)
    save_model(path, net, ModelSpec.from_json({
        "network": TINY_UNET, "channels": 1, "image_size": size, "sigmas": sigmas.tolist(),
        "sampling": {"sampler": "dpm_solver_2m"}}))
    return path


def _save_classifier(path, size: int = 8, sigma_min: float = 0.05, sigma_max: float = 1.0):
    torch.manual_seed(1)
    save_classifier(path, NoiseConditionalClassifier(1, 10, 4),
                    {"dataset": "test", "image_size": size, "sigma_min": sigma_min,
                     "sigma_max": sigma_max})
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guided")
    return _save_model(folder / "model", 8), _save_classifier(folder / "cls")


def test_sample_class_equals_the_api_and_guidance_changes_the_samples(files, tmp_path):
    model_path, cls = files
    assert main(["sample", str(model_path), "-n", "3", "--class", "4", "--classifier", str(cls),
                 "--guidance-scale", "5", "--format", "npz", "--out", str(tmp_path),
                 "--no-progress", "--nfe", "4", "--seed", "2"]) == 0
    model = ncsn.load(model_path)
    guided = model.sample_class(3, 4, cls, scale=5.0, nfe=4, seed=2)
    with np.load(tmp_path / "samples.npz") as data:
        np.testing.assert_array_equal(to_uint8(guided), data["images"])
    assert not torch.equal(guided, model.sample(3, nfe=4, seed=2))
    assert torch.equal(model.sample_class(3, 4, cls, scale=0.0, nfe=4, seed=2),
                       model.sample(3, nfe=4, seed=2))


def test_denoised_classifier_input_equals_the_api_and_differs_from_the_noisy(files, tmp_path):
    """``--classifier-input denoised`` is ``sample_class(classifier_input="denoised")``; it
    only asks the classifier at its smallest sigma, so a narrower sigma range is accepted."""
    model_path, cls = files
    narrow = _save_classifier(tmp_path / "narrow", sigma_min=0.1)
    assert main(["sample", str(model_path), "-n", "3", "--class", "4", "--classifier",
                 str(narrow), "--classifier-input", "denoised", "--guidance-scale", "5",
                 "--format", "npz", "--out", str(tmp_path), "--no-progress", "--nfe", "4"]) == 0
    model = ncsn.load(model_path)
    denoised = model.sample_class(3, 4, narrow, scale=5.0, nfe=4, classifier_input="denoised")
    with np.load(tmp_path / "samples.npz") as data:
        np.testing.assert_array_equal(to_uint8(denoised), data["images"])
    assert json.loads((tmp_path / "samples.json").read_text())["classifier_input"] == "denoised"
    assert not torch.equal(denoised, model.sample_class(3, 4, cls, scale=5.0, nfe=4))
    assert torch.equal(model.sample_class(3, 4, cls, scale=0.0, nfe=4,
                                          classifier_input="denoised"), model.sample(3, nfe=4))
    with pytest.raises(UserError, match="classifier input .* must be one of noisy, denoised"):
        model.sample_class(3, 4, cls, nfe=4, classifier_input="clean")


def test_train_classifier_writes_its_accuracy_per_level(tmp_path, capsys):
    model = _save_model(tmp_path / "digits", 28)
    assert main(["train-classifier", str(model), "--out", str(tmp_path / "cls"),
                 "--steps", "2", "--batch-size", "4"]) == 0
    record = json.loads((tmp_path / "cls.json").read_text())
    assert record["kind"] == "noise_conditional_classifier"
    assert (record["sigma_min"], record["sigma_max"]) == pytest.approx((0.05, 1.0))
    assert len(record["test_accuracy_per_sigma"]) == 7
    assert "test accuracy per sigma" in capsys.readouterr().out
    _save_model(tmp_path / "small", 8)
    assert main(["train-classifier", str(tmp_path / "small"), "--out", str(tmp_path / "c2")]) == 2
    assert "mnist5k holds 1x28x28 digits" in capsys.readouterr().err


def test_the_packaged_classifier_config_is_the_default_recipe():
    path, recipe = load_classifier_config("digit_classifier_mnist5k")
    assert path.name == "digit_classifier_mnist5k.yaml" and recipe == ClassifierRecipe()
    assert (recipe.steps, recipe.batch_size, recipe.lr, recipe.width) == (6000, 64, 2e-3, 32)


def test_train_classifier_reads_a_config_file_and_flags_override_it(tmp_path):
    model = _save_model(tmp_path / "digits", 28)
    config = tmp_path / "cls.yaml"
    config.write_text("classifier: {steps: 2, batch_size: 4, width: 4, lr: 1.0e-3, seed: 5}\n")
    assert main(["train-classifier", str(model), "--out", str(tmp_path / "a"),
                 "--config", str(config)]) == 0
    assert main(["train-classifier", str(model), "--out", str(tmp_path / "b"),
                 "--config", str(config), "--steps", "3", "--seed", "1"]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["recipe"] == {"dataset": "mnist5k", "steps": 2, "batch_size": 4, "lr": 1e-3,
                           "width": 4, "seed": 5}
    assert b["recipe"] == {**a["recipe"], "steps": 3, "seed": 1}
    assert a["width"] == b["width"] == 4 and a["config"] == str(config)


@pytest.mark.parametrize("text, message", [
    ("classifier: {steps: 0}", "cls.yaml: classifier.steps: must be >= 1"),
    ("classifier: {depth: 3}", "cls.yaml: classifier.depth: unknown field"),
    ("classifier: {dataset: cifar10}", "cls.yaml: classifier.dataset: "),
    ("classifier: {lr: .nan}", "cls.yaml: classifier.lr: "),
    ("data: {name: mnist5k}", "cls.yaml: a classifier config holds one section, classifier"),
    ("classifier: {}\ndata: {}", "cls.yaml: data: unknown field"),
])
def test_bad_classifier_configs_are_one_line_errors(tmp_path, capsys, text, message):
    (tmp_path / "cls.yaml").write_text(text + "\n")
    assert main(["train-classifier", str(tmp_path / "no-model"), "--out", str(tmp_path / "c"),
                 "--config", str(tmp_path / "cls.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "c.json").exists()


def test_configs_of_one_command_are_refused_by_the_other(tmp_path, capsys):
    assert main(["train", "--config", "digit_classifier_mnist5k", "--run-dir",
                 str(tmp_path / "run")]) == 2
    assert "is a classifier config: train it with ncsn train-classifier" in \
        capsys.readouterr().err
    assert main(["train-classifier", "model", "--out", str(tmp_path / "c"), "--config",
                 "mnist5k_cpu"]) == 2
    assert "a classifier config holds one section" in capsys.readouterr().err


@pytest.mark.parametrize("make, flags, message", [
    (None, ["--class", "10"], "class 10 is unknown to classifier"),
    (None, ["--class", "1", "--guidance-scale", "-1"], "guidance scale must be >= 0"),
    ("narrow", ["--class", "1"], "was trained for sigma 0.1 .. 1; this plan samples 0.05 .. 1"),
    ("size", ["--class", "1"], "was trained on 1x28 images"),
    ("foreign", ["--class", "1"], "is not a noise-conditional classifier"),
])
def test_misfits_are_one_line_errors(files, tmp_path, capsys, make, flags, message):
    model_path, cls = files
    if make == "narrow":
        cls = _save_classifier(tmp_path / "narrow", sigma_min=0.1)
    elif make == "size":
        cls = _save_classifier(tmp_path / "size", size=28)
    elif make == "foreign":
        (tmp_path / "model.json").write_text(json.dumps({"kind": "something else"}))
        cls = tmp_path / "model"
    code = main(["sample", str(model_path), "-n", "2", "--classifier", str(cls), "--out",
                 str(tmp_path / "o"), "--no-progress", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_class_of_an_unconditional_model_needs_a_classifier(files, tmp_path, capsys):
    assert main(["sample", str(files[0]), "-n", "2", "--class", "3", "--out",
                 str(tmp_path)]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    assert main(["sample", str(files[0]), "-n", "2", "--class", "balanced", "--classifier",
                 str(files[1]), "--out", str(tmp_path / "b")]) == 2
    assert "give --class K" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import ncsn.training.classifier as training

    def no_training(*args, **kwargs):
        raise AssertionError("training started before --out was checked")

    monkeypatch.setattr(training, "train_classifier", no_training)
    model = _save_model(tmp_path / "digits", 28)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "taken.json").mkdir()
    for out, message in ((tmp_path / "afile" / "cls", "is a file, not a folder"),
                         (tmp_path / "taken", "taken.json is a folder")):
        assert main(["train-classifier", str(model), "--out", str(out), "--steps", "2"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
