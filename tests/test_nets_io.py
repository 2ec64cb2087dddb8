"""Network registry (build_network) and self-describing model files (save_model/load_model)."""

import json

import pytest
import torch

from ncsn.core.noise import geometric_sigmas
from ncsn.errors import UserError
from ncsn.nets import NETWORKS, build_network, network_fields
from ncsn.nets.io import load_model, save_model
from ncsn.nets.ncsnv2 import NCSNv2
from ncsn.nets.refinenet import CondRefineNetDilated
from ncsn.spec.model import ModelSpec

SIGMAS = geometric_sigmas(1.0, 0.01, 5)
CTX = {"channels": 1, "image_size": 8, "sigmas": SIGMAS}


def _spec(section):
    return ModelSpec.from_json({"network": section, "channels": 1, "image_size": 8,
                                "sigmas": SIGMAS.tolist(),
                                "sampling": {"n_steps_each": 2, "step_size": 1e-4}})


def test_registry_names():
    assert set(NETWORKS) == {"cond_refinenet", "ncsnv2", "unet_small", "mlp",
                              "resnet_score", "ncsnpp"}


def test_build_network_passes_only_the_named_context():
    net = build_network({"name": "cond_refinenet", "ngf": 4}, **CTX)
    assert isinstance(net, CondRefineNetDilated) and net.begin_conv.out_channels == 4
    torch.testing.assert_close(net.sigmas, SIGMAS)
    v2 = build_network({"name": "ncsnv2", "ngf": 4}, **CTX)
    assert isinstance(v2, NCSNv2) and v2.depth == "base"


def test_network_fields_lists_hyperparameters_with_defaults():
    assert network_fields("cond_refinenet") == {"ngf": 64, "logit_input": False}
    assert network_fields("ncsnv2") == {"ngf": 128, "depth": "auto"}


def test_unknown_name_lists_allowed_names():
    with pytest.raises(UserError, match=r"unknown network name 'resnet'; allowed: "
                                        r"cond_refinenet, ncsnv2, unet_small, mlp"):
        build_network({"name": "resnet"}, **CTX)
    with pytest.raises(UserError, match=r"network\.name: required"):
        build_network({"ngf": 4}, **CTX)


def test_unknown_field_is_named_with_allowed_fields():
    with pytest.raises(UserError, match=r"network\.nfg: unknown field for network "
                                        r"'cond_refinenet'; allowed: name, ngf, logit_input"):
        build_network({"name": "cond_refinenet", "nfg": 4}, **CTX)
    with pytest.raises(UserError, match="unknown field"):
        build_network({"name": "ncsnv2", "channels": 3}, **CTX)


def test_mistyped_field_is_refused():
    with pytest.raises(UserError, match=r"network\.ngf: must be int \(like the default 64\), "
                                        r"got '64' for network 'cond_refinenet'"):
        build_network({"name": "cond_refinenet", "ngf": "64"}, **CTX)
    with pytest.raises(UserError, match=r"network\.ngf"):
        build_network({"name": "cond_refinenet", "ngf": True}, **CTX)


def test_save_load_round_trip_every_path_form(tmp_path):
    torch.manual_seed(0)
    net = build_network({"name": "cond_refinenet", "ngf": 4}, **CTX)
    written = save_model(tmp_path / "run" / "model", net, _spec({"name": "cond_refinenet",
                                                                 "ngf": 4}))
    assert written == tmp_path / "run" / "model.safetensors"
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        expected = net(x, SIGMAS[[0, 2, 4]])
    forms = [written, tmp_path / "run" / "model.json", tmp_path / "run" / "model",
             tmp_path / "run"]
    for form in forms:
        loaded, spec = load_model(form)
        assert not loaded.training
        assert spec.sampling.settings.n_steps_each == 2 and spec.channels == 1
        with torch.no_grad():
            torch.testing.assert_close(loaded(x, SIGMAS[[0, 2, 4]]), expected, rtol=0, atol=0)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["sigmas"] == SIGMAS.tolist()


def test_run_directory_prefers_ema(tmp_path):
    net = build_network({"name": "ncsnv2", "ngf": 4}, **CTX)
    save_model(tmp_path / "model", net, _spec({"name": "ncsnv2", "ngf": 4}))
    ema = build_network({"name": "ncsnv2", "ngf": 4}, **CTX)
    save_model(tmp_path / "model_ema", ema, _spec({"name": "ncsnv2", "ngf": 4}))
    loaded, _ = load_model(tmp_path)
    torch.testing.assert_close(loaded.begin_conv.weight, ema.begin_conv.weight)


def test_missing_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "nothing")
    with pytest.raises(UserError, match="holds no model_ema.safetensors or model.safetensors"):
        load_model(tmp_path)
    net = build_network({"name": "cond_refinenet", "ngf": 4}, **CTX)
    save_model(tmp_path / "m", net, _spec({"name": "cond_refinenet", "ngf": 4}))
    (tmp_path / "m.json").unlink()
    with pytest.raises(UserError, match=r"m\.json not found"):
        load_model(tmp_path / "m.safetensors")


def test_corrupt_files_are_user_errors(tmp_path):
    net = build_network({"name": "cond_refinenet", "ngf": 4}, **CTX)
    save_model(tmp_path / "m", net, _spec({"name": "cond_refinenet", "ngf": 4}))
    good_json = (tmp_path / "m.json").read_text()
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read model spec"):
        load_model(tmp_path / "m")
    (tmp_path / "m.json").write_text(json.dumps({"network": {"name": "cond_refinenet"}}))
    with pytest.raises(UserError, match="channels: required field is missing; image_size: "
                                        "required field is missing; sigmas: required"):
        load_model(tmp_path / "m")
    (tmp_path / "m.json").write_text(good_json)
    weights = (tmp_path / "m.safetensors").read_bytes()
    for damaged in (weights[: len(weights) // 2], weights[:-1] + b"\x01", b"\x00" * 5):
        (tmp_path / "m.safetensors").write_bytes(damaged)  # truncated, one byte changed, junk
        with pytest.raises(UserError, match="do not match their spec .SHA-256"):
            load_model(tmp_path / "m")
    unhashed = json.loads(good_json)  # a file from before weights were hashed
    del unhashed["provenance"]["weights_sha256"]
    (tmp_path / "m.json").write_text(json.dumps(unhashed))
    with pytest.raises(UserError, match="cannot read weights"):
        load_model(tmp_path / "m")


def test_mismatched_spec_names_the_keys(tmp_path):
    net = build_network({"name": "cond_refinenet", "ngf": 4}, **CTX)
    save_model(tmp_path / "m", net, _spec({"name": "cond_refinenet", "ngf": 4}))
    spec = json.loads((tmp_path / "m.json").read_text())
    spec["network"]["ngf"] = 8
    (tmp_path / "m.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match=r"wrong shapes .*begin_conv\.weight \(4, 1, 3, 3\) vs "
                                        r"\(8, 1, 3, 3\)"):
        load_model(tmp_path / "m")
    spec["network"] = {"name": "ncsnv2", "ngf": 4}
    (tmp_path / "m.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match=r"missing keys: .*unexpected keys: "):
        load_model(tmp_path / "m")


def test_a_value_the_network_rejects_is_a_user_error():
    with pytest.raises(UserError, match="model: network .unet_small. rejects its fields: .*patch"):
        build_network({"name": "unet_small", "patch": 3}, channels=1, image_size=8,
                      sigmas=torch.tensor([1.0, 0.1]))


def test_integer_tensors_in_a_weights_file_are_refused(tmp_path):
    from safetensors.torch import save_file

    from ncsn.nets.io import file_sha256

    net = build_network({"name": "cond_refinenet", "ngf": 4}, **CTX)
    save_model(tmp_path / "m", net, _spec({"name": "cond_refinenet", "ngf": 4}))
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    first = next(iter(state))
    state[first] = state[first].round().to(torch.int32)
    save_file(state, str(tmp_path / "m.safetensors"))
    record = json.loads((tmp_path / "m.json").read_text())
    record["provenance"]["weights_sha256"] = file_sha256(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=rf"non-float tensors: {first} \(int32\)"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize(("network", "message"), [
    ({"name": "resnet"}, "network.name: unknown network name 'resnet'; allowed: "),
    ({"name": "cond_refinenet", "ngf": -4}, r"network\.ngf: must be an integer in \[1, 4096\]"),
    ({"name": "cond_refinenet", "ngf": 3_000_000}, r"network\.ngf: .*\[1, 4096\], got 3000000"),
    ({"name": "unet_small", "num_classes": -1}, r"network\.num_classes: .* in \[0, 4096\]"),
    ({"name": "unet_small", "ch_mult": [1, -2]}, r"network\.ch_mult: must be a list of numbers"),
    ({"name": "unet_small", "sigma_data": float("nan")}, "network.sigma_data: must be a finite"),
    ({"name": "unet_small", "data_mean": 1e30}, r"network\.data_mean: .* \[-1e\+06, 1e\+06\]"),
    ({"name": "unet_small", "sigma_data": 0}, r"network\.sigma_data: .* in \(0, 1e\+06\], got 0"),
    ({"name": "ncsnpp", "dropout": 1.5}, r"network\.dropout: .* in \[0, 1\], got 1\.5"),
    ({"name": "ncsnpp", "fourier_scale": -3e7}, r"network\.fourier_scale: .*got -30000000"),
    ({"name": "ncsnpp", "ngf": 8}, "network.ngf: unknown field for network 'ncsnpp'"),
])
def test_a_spec_file_with_a_bad_network_section_is_one_line_naming_it(tmp_path, network,
                                                                      message):
    from ncsn.nets.io import read_spec

    (tmp_path / "m.json").write_text(json.dumps({"network": network, "channels": 1,
                                                 "image_size": 8, "sigmas": [1.0, 0.1]}))
    with pytest.raises(UserError, match=message) as info:
        read_spec(tmp_path / "m.json")
    assert str(info.value).startswith(f"model spec {tmp_path / 'm.json'}: network.")
    assert "\n" not in str(info.value)
