"""Class-conditional models: labelled data, a label-conditioned UNetSmall, training with label
dropout, and sampling with labels and classifier-free guidance through ScoreModel and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ncsn.cli import main
from ncsn.data import LABELLED, load_dataset, load_labels
from ncsn.errors import UserError
from ncsn.nets import build_network, class_count
from ncsn.sampling import ScoreModel, load
from ncsn.sampling.model import guided
from ncsn.training import Trainer, train
from test_train_support import assert_same_training_state, final_state, tiny_config

CONDITIONAL = {"num_classes": 10, "precond": "edm"}


def _net(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    section = {"name": "unet_small", "ngf": 4, "ch_mult": [1, 2], "emb_dim": 8, "groups": 2,
               "num_classes": num_classes}
    return build_network(section, channels=1, image_size=8, sigmas=torch.ones(1)).eval()


def test_labels_follow_the_images_of_each_split() -> None:
    from sklearn.datasets import load_digits

    target = torch.as_tensor(load_digits().target)
    train_labels, test_labels = load_labels("digits8", "train"), load_labels("digits8", "test")
    assert torch.equal(torch.cat([train_labels, test_labels]), target)
    for name in LABELLED:
        for split in ("train", "test"):
            labels = load_labels(name, split)
            assert labels.shape[0] == load_dataset(name, split).shape[0]
            assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))


def test_labels_are_refused_where_there_are_none_or_the_count_differs() -> None:
    with pytest.raises(UserError, match="no class labels"):
        load_labels("celeba")
    with pytest.raises(UserError, match="model.num_classes is 7 .* 10 classes"):
        load_labels("mnist5k", num_classes=7)


def test_the_label_changes_the_score_and_no_label_is_its_own_class() -> None:
    net = _net()
    with torch.no_grad():  # a trained-looking label table: untrained rows are random anyway
        net.backbone.label_embed.weight.normal_()
    x, sigma = torch.rand(3, 1, 8, 8), torch.full((3,), 0.5)
    with torch.no_grad():
        three, four = net(x, sigma, torch.full((3,), 3)), net(x, sigma, torch.full((3,), 4))
        none, null = net(x, sigma), net(x, sigma, torch.full((3,), 10))
    assert not torch.allclose(three, four)
    assert torch.equal(none, null)
    assert class_count(net) == 10 and class_count(_net(0)) == 0
    with pytest.raises(ValueError, match="not class-conditional"):
        _net(0)(x, sigma, torch.zeros(3, dtype=torch.long))


def test_an_unconditional_net_keeps_its_weights_names() -> None:
    extra = set(_net(10).state_dict()) - set(_net(0).state_dict())
    assert extra == {"label_embed.weight"}


def test_guidance_is_the_conditional_score_pushed_away_from_the_unconditional() -> None:
    net, x, sigma = _net(), torch.rand(4, 1, 8, 8), torch.full((4,), 0.3)
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        net.backbone.label_embed.weight.normal_()
        cond, uncond = net(x, sigma, labels), net(x, sigma)
        assert torch.equal(guided(net, labels, 10, 0.0)(x, sigma), cond)
        torch.testing.assert_close(guided(net, labels, 10, 2.0)(x, sigma),
                                   3 * cond - 2 * uncond, rtol=1e-5, atol=1e-5)


def test_score_model_resolves_label_choices() -> None:
    model = ScoreModel.__new__(ScoreModel)
    model.net = _net()
    assert model.class_labels(None, 12).tolist() == [*range(10), 0, 1]
    assert model.class_labels("balanced", 3, start=9).tolist() == [9, 0, 1]
    assert model.class_labels("none", 2).tolist() == [10, 10]
    assert model.class_labels(7, 3).tolist() == [7, 7, 7]
    assert model.class_labels([1, 2], 2).tolist() == [1, 2]
    for bad, message in ((10, "0..9"), ([1, 2, 3], "one class or 2"), ("seven", "balanced"),
                         (torch.tensor([0.5, 1.0]), "integers")):
        with pytest.raises(UserError, match=message):
            model.class_labels(bad, 2)
    model.net = _net(0)
    assert model.class_labels(None, 3) is None
    with pytest.raises(UserError, match="not class-conditional"):
        model.class_labels(3, 3)


def _conditional_config(**training: object):
    return tiny_config(model=CONDITIONAL, training={"weighting": "edm", **training})


def test_conditional_training_resumes_to_identical_weights(tmp_path: Path, monkeypatch) -> None:
    config = _conditional_config(label_dropout=0.5)
    train(config, tmp_path / "full", progress=False)
    real_step = Trainer.train_step

    def interrupted(self: Trainer) -> float:
        if self.step == 6:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", progress=False)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    train(config, tmp_path / "cut", resume=True, progress=False)
    assert_same_training_state(final_state(tmp_path / "full"), final_state(tmp_path / "cut"))
    label_rows = final_state(tmp_path / "full")["model"]["label_embed.weight"]
    assert label_rows.shape == (11, 8)


def test_label_dropout_decides_which_labels_reach_the_network(tmp_path: Path) -> None:
    def batch_labels(dropout: float) -> torch.Tensor:
        trainer = Trainer(_conditional_config(label_dropout=dropout), tmp_path / str(dropout),
                          progress=False)
        return trainer._global_batch()[3]

    assert not bool((batch_labels(0.0) == 10).any())
    assert bool((batch_labels(1.0) == 10).all())


def test_conditional_model_samples_each_asked_class_reproducibly(tmp_path: Path) -> None:
    train(_conditional_config(), tmp_path / "run", progress=False)
    model = load(tmp_path / "run")
    assert model.num_classes == 10
    options = {"sampler": "consistent_annealed", "nfe": 4}
    sevens = model.sample(3, labels=7, seed=1, **options)
    assert torch.equal(sevens, model.sample(3, labels=7, seed=1, **options))
    assert not torch.equal(sevens, model.sample(3, labels=2, seed=1, **options))
    assert torch.equal(model.sample(3, seed=1, **options),
                       model.sample(3, labels=[0, 1, 2], seed=1, **options))
    assert model.sample(2, labels=7, guidance=1.5, seed=1, **options).shape == (2, 1, 8, 8)
    with pytest.raises(UserError, match="guidance"):
        model.sample(2, guidance=-1.0, **options)


def test_cli_class_flags(tmp_path: Path) -> None:
    train(_conditional_config(), tmp_path / "run", progress=False)
    out = tmp_path / "out"
    args = ["sample", str(tmp_path / "run"), "-n", "2", "--nfe", "5", "--out", str(out),
            "--no-progress"]
    assert main([*args, "--class", "3", "--guidance-scale", "1"]) == 0
    assert (out / "grid.png").is_file()
    assert main([*args, "--class", "12"]) == 2
    assert main([*args, "--class", "three"]) == 2
    train(tiny_config(), tmp_path / "plain", progress=False)
    assert main(["sample", str(tmp_path / "plain"), "-n", "2", "--out", str(tmp_path / "o2"),
                 "--class", "3", "--no-progress"]) == 2
