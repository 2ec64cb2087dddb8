"""Config validation: field-path errors, --set overrides, shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ncsn.cli import main
from ncsn.config import apply_overrides, load_config, save_config, validate_config
from ncsn.errors import UserError
from ncsn.training.classifier import load_classifier_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _error(raw: dict) -> str:
    with pytest.raises(UserError) as info:
        validate_config(raw)
    return str(info.value)


@pytest.mark.parametrize(("raw", "expected"), [
    ({"training": {"lr": 0}}, "training.lr: must be > 0"),
    ({"training": {"lr": -1e-3}}, "training.lr: must be > 0"),
    ({"training": {"batch_size": 0}}, "training.batch_size: must be > 0"),
    ({"training": {"n_iters": 10**8 + 1}}, "training.n_iters: must be <= 100000000"),
    ({"training": {"ema_rate": 1.0}}, "training.ema_rate: must be < 1"),
    ({"training": {"ema_warmup": True}}, "training: ema_warmup: true needs a constant ema_rate"),
    ({"training": {"weight_decay": -1}}, "training.weight_decay: must be >= 0"),
    ({"training": {"betas": [0.9, 1.5]}}, "training.betas: both values must lie in [0, 1)"),
    ({"training": {"loss": "ism"}}, "training.loss: input should be 'dsm' or 'ssm'"),
    ({"training": {"device": "tpu"}}, "training.device: must be 'auto', 'cpu'"),
    ({"training": {"device": "cuda:x"}}, "training.device: must be 'auto', 'cpu'"),
    ({"training": {"bogus": 1}}, "training.bogus: unknown field"),
    ({"optimizer": {}}, "optimizer: unknown field"),
    ({"noise": {"sigma_max": 0.001, "sigma_min": 0.01}}, "noise: sigma_max (0.001) must be >="),
    ({"noise": {"sigma_max": -1}}, "noise.sigma_max: must be >= 1e-08 or input should be 'auto'"),
    ({"noise": {"num_levels": 0}}, "noise.num_levels: must be >= 1 (or 'auto')"),
    ({"noise": {"sigma_min": 0}}, "noise.sigma_min: must be >= 1e-08"),
    ({"sampling": {"step_size": -1}}, "sampling.step_size: must be > 0 (or 'auto')"),
    ({"sampling": {"convention": "ddpm"}}, "sampling.convention: input should be 'paper'"),
    ({"data": {"channels": 2}}, "data.channels: input should be 1 or 3"),
    ({"model": {"ngf": 8}}, "model.name: required"),
    ({"model": {"name": "unet_small", "ngf": "8"}}, "model.ngf: must be int"),
    ({"model": {"name": "unet_small", "width": 8}}, "model.width: unknown field for network"),
    ({"eval": {"metric": "is"}}, "eval.metric: input should be 'fid' or 'kid'"),
])
def test_validation_errors_name_the_field_path(raw: dict, expected: str) -> None:
    assert expected in _error(raw)


def test_every_problem_is_reported_at_once() -> None:
    message = _error({"training": {"lr": 0, "batch_size": -2}})
    assert "training.lr: must be > 0" in message
    assert "training.batch_size: must be > 0" in message


def test_defaults_and_auto_values_are_accepted() -> None:
    config = validate_config({"noise": {"sigma_max": "auto", "num_levels": "auto"},
                              "sampling": {"step_size": "auto"}})
    assert config.noise.sigma_max == "auto" and config.noise.num_levels == "auto"
    assert config.training.lr == 1e-3 and config.training.betas == (0.9, 0.999)
    assert config.training.ema_rate is None


def test_overrides_use_dotted_paths_and_yaml_values() -> None:
    raw = {"training": {"lr": 1e-3}, "model": {"name": "unet_small"}}
    out = apply_overrides(raw, ["training.lr=2e-4", "training.betas=[0.5, 0.9]",
                                "model.ch_mult=[1, 2]", "noise.sigma_max=auto",
                                "training.ema_rate=null"])
    assert out["training"] == {"lr": 2e-4, "betas": [0.5, 0.9], "ema_rate": None}
    assert out["model"]["ch_mult"] == [1, 2]
    assert out["noise"] == {"sigma_max": "auto"}
    assert raw["training"]["lr"] == 1e-3, "the input mapping must not change"


@pytest.mark.parametrize(("item", "expected"), [
    ("training.lr", "expected section.field=value"),
    ("=3", "expected section.field=value"),
    ("training..lr=3", "expected section.field=value"),
    ("training.=3", "expected section.field=value"),
    ("training.lr.x=3", "training.lr is a value, not a section"),
    ("training.lr=[1,", "value is not valid YAML"),
])
def test_bad_overrides(item: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected.replace("[", r"\[")):
        apply_overrides({"training": {"lr": 1e-3}}, [item])


def test_override_errors_are_validated_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: unet_small}\n")
    with pytest.raises(UserError, match=r"training\.lr: must be > 0"):
        load_config(path, ["training.lr=0"])


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must be a mapping"):
        load_config(bad)


def test_invalid_yaml_is_one_line_with_file_line_column(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: mnist}\ntraining:\n  lr: 1e-3\n   batch_size: 8\n")
    with pytest.raises(UserError) as invalid:
        load_config(bad)
    assert str(invalid.value) == f"{bad}:4:14: invalid YAML: mapping values are not allowed here"
    bad.write_text("training: [1, 2\n")
    with pytest.raises(UserError, match=r"bad\.yaml:2:1: invalid YAML: expected ',' or ']'.*"
                                        r"flow sequence that starts at line 1\)$"):
        load_config(bad)
    assert main(["train", "--config", str(bad), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err  # one line, no PyYAML caret block
    assert err.startswith(f"ncsn train: error: {bad}:2:1: invalid YAML") and err.count("\n") == 1
    with pytest.raises(UserError) as invalid:
        apply_overrides({}, ["training.betas=[0.9, 0.99"])
    assert "\n" not in str(invalid.value) and "not valid YAML: expected ','" in str(invalid.value)


def test_saved_config_round_trips(tmp_path: Path) -> None:
    config = validate_config({"model": {"name": "unet_small", "ngf": 8}, "training": {"lr": 3e-4}})
    path = save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(path) == config
    assert list(yaml.safe_load(path.read_text())) == ["data", "model", "noise", "training",
                                                      "sampling", "eval"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    if path.stem == "digit_classifier_mnist5k":  # ncsn train-classifier's config
        load_classifier_config(path)
    else:
        load_config(path)


@pytest.mark.parametrize(("name", "data", "ngf", "hflip"), [
    ("mnist", "mnist", 64, False), ("cifar10", "cifar10", 128, True),
    ("celeba", "celeba", 128, True)])
def test_paper_recipes_match_the_paper(name: str, data: str, ngf: int, hflip: bool) -> None:
    c = load_config(CONFIGS / f"{name}.yaml")
    assert (c.data.name, c.data.dequantize, c.data.hflip) == (data, True, hflip)
    assert c.model == {"name": "cond_refinenet", "ngf": ngf}
    assert (c.noise.sigma_max, c.noise.sigma_min, c.noise.num_levels) == (1.0, 0.01, 10)
    t = c.training
    assert (t.loss, t.anneal_power, t.batch_size, t.n_iters, t.lr) == ("dsm", 2.0, 128, 200_000,
                                                                        1e-3)
    assert (t.betas, t.weight_decay, t.ema_rate) == ((0.9, 0.999), 0.0, None)
    s = c.sampling.settings  # as the official code samples: step_lr 2e-5, official convention
    assert (s.n_steps_each, s.step_size, s.convention, s.final_denoise) == (100, 2e-5,
                                                                            "official", False)
    if name == "celeba":
        assert c.data.image_size == 32


def test_ncsnv2_recipe() -> None:
    c = load_config(CONFIGS / "ncsnv2_cifar10.yaml")
    assert c.model == {"name": "ncsnv2", "ngf": 128}
    assert (c.noise.sigma_max, c.noise.sigma_min, c.noise.num_levels) == (50.0, 0.01, 232)
    assert (c.training.lr, c.training.ema_rate, c.training.n_iters) == (1e-4, 0.999, 300_000)
    s = c.sampling.settings
    assert (s.n_steps_each, s.step_size, s.convention, s.final_denoise) == (5, 6.2e-6,
                                                                            "official", True)


def test_logit_data_makes_the_official_network_take_logits() -> None:
    def model(**sections: dict) -> dict:
        return validate_config(sections).model

    refinenet = {"name": "cond_refinenet", "ngf": 8}
    assert model(data={"logit": True}, model=refinenet)["logit_input"] is True
    assert "logit_input" not in model(data={"logit": False}, model=refinenet)
    assert model(data={"logit": True}, model={**refinenet, "logit_input": False}) == {
        **refinenet, "logit_input": False}  # an explicit choice stays
    assert model(data={"logit": True}, model={"name": "unet_small"}) == {"name": "unet_small"}


def test_unbounded_values_and_non_utf8_files_are_one_line_errors(tmp_path: Path) -> None:
    for item, expected in (("training.threads=100000", r"training\.threads: must be <= 256"),
                           ("data.image_size=100000", r"data\.image_size")):
        with pytest.raises(UserError, match=expected):
            validate_config(apply_overrides({}, [item]))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("training:\n  # caf\xe9\n  lr: 1e-3\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.yaml: not UTF-8 text .*save the config as UTF-8"):
        load_config(latin1)


@pytest.mark.parametrize(("item", "expected"), [
    ("noise.sigma_max=1e300", r"noise\.sigma_max: must be <= 1000000\.0 or input should be 'auto'"),
    ("noise.sigma_min=1e-300", r"noise\.sigma_min: must be >= 1e-08"),
    ("noise.sigma_max=.nan", r"noise\.sigma_max: input should be a finite number"),
    ("noise.num_levels=1000000", r"noise\.num_levels: must be <= 100000"),
    ("training.lr=.nan", r"training\.lr: input should be a finite number"),
    ("training.anneal_power=.inf", r"training\.anneal_power: input should be a finite number"),
    ("sampling.step_size=.nan", r"sampling\.step_size: input should be a finite number"),
    ("sampling.nfe=1000000000000", r"sampling\.nfe: must be <= 100000"),
    ("sampling.sigma_min=-.inf", r"sampling\.sigma_min: input should be a finite number"),
    ("model.ngf=-4", r"model\.ngf: must be an integer in \[1, 4096\], got -4"),
    ("model.ngf=0", r"model\.ngf: must be an integer in \[1, 4096\], got 0"),
    ("model.emb_dim=5000000", r"model\.emb_dim: must be an integer in \[1, 4096\]"),
    ("model.sigma_data=.nan", r"model\.sigma_data: must be a finite number"),
])
def test_out_of_range_and_non_finite_values_name_the_field(item: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected) as info:
        validate_config(apply_overrides({"model": {"name": "unet_small"}}, [item]), "c.yaml")
    assert str(info.value).startswith("c.yaml: ") and "\n" not in str(info.value)


def test_yaml_nested_too_deeply_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    """PyYAML parses recursively: a config (or --set value) nested thousands deep raised
    RecursionError; it is invalid YAML like any other, in every command that reads one."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("data: " + "[" * 5000 + "]" * 5000 + "\n")
    for argv in (["train", "--config", str(deep), "--run-dir", str(tmp_path / "run")],
                 ["noise-levels", "--config", str(deep)],
                 ["train", "--config", "mnist5k_cpu", "--run-dir", str(tmp_path / "run"),
                  "--set", "model.ch_mult=" + "[" * 5000 + "]" * 5000]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "nested too deeply" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_training_seed_is_bounded_where_it_enters(tmp_path: Path, capsys) -> None:
    """A seed beyond 64 bits was a traceback from torch.manual_seed after the data loaded, and
    a negative one was taken; the periodic samples add up to 3, so the bound leaves room."""
    for value, message in (("1180591620717411303424", "must be <= 9223372036854775804"),
                           ("-1", "must be >= 0")):
        assert main(["train", "--config", "mnist5k_cpu", "--run-dir", str(tmp_path / "run"),
                     "--set", f"training.seed={value}"]) == 2
        err = capsys.readouterr().err
        assert f"training.seed: {message}" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("training.n_iters=true", "training.n_iters"),
    ("training.n_iters=1e15", "training.n_iters"),
    ('training.amp="yes"', "training.amp"),
])
def test_bool_for_number_and_string_for_bool_are_refused(override: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_config("digits8_cpu", [override])
