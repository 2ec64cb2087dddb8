"""The diffusers <-> NCSN++ mapping without diffusers installed: every key maps one to one,
configs translate both ways, and models diffusers cannot express are refused in one line."""

from __future__ import annotations

import math

import pytest
import torch

from ncsn.errors import UserError
from ncsn.nets.diffusers_format import (
    diffusers_key_map,
    from_diffusers_state,
    section_from_unet_config,
    to_diffusers_state,
    unet_config_from_net,
)
from ncsn.nets.ncsnpp import NCSNpp

SKIP_VARIANT = {"nf": 32, "ch_mult": [1, 4], "num_res_blocks": 2, "attn_resolutions": [4],
                "progressive": "output_skip", "progressive_input": "input_skip"}


def _net(**overrides):
    torch.manual_seed(0)
    return NCSNpp(channels=3, image_size=8, **{**SKIP_VARIANT, **overrides})


def test_keys_map_one_to_one_and_back():
    net = _net()
    names = diffusers_key_map(net)
    assert len(set(names.values())) == len(names) == len(net.state_dict())
    assert names["all_modules.0.W"] == "time_proj.weight"
    assert names[f"all_modules.{net.layout.up[-1].pyramid[1]}.weight"] == "conv_out.weight"
    theirs = to_diffusers_state(net)
    nin = next(k for k in net.state_dict() if k.endswith("NIN_0.W"))
    assert torch.equal(theirs[names[nin]], net.state_dict()[nin].t())  # Linear is (out, in)
    back = from_diffusers_state(net, theirs)
    assert back.keys() == net.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())


def test_legacy_attention_names_are_read():
    net = _net()
    theirs = to_diffusers_state(net)
    legacy = {k.replace(".to_q.", ".query.").replace(".to_out.0.", ".proj_attn."): v
              for k, v in theirs.items()}
    legacy["time_proj.W"] = legacy["time_proj.weight"]
    back = from_diffusers_state(net, legacy)
    assert back.keys() == net.state_dict().keys()


def test_config_round_trip():
    net = _net(dropout=0.0)
    config = unet_config_from_net(net, 8, 3)
    assert config["down_block_types"] == ["SkipDownBlock2D", "AttnSkipDownBlock2D"]
    assert config["up_block_types"] == ["AttnSkipUpBlock2D", "SkipUpBlock2D"]
    assert config["center_input_sample"] is True  # our 2x - 1 happens inside the UNet
    assert math.isclose(config["mid_block_scale_factor"], math.sqrt(2))
    section, size = section_from_unet_config(config, "cfg")
    assert size == 8 and section == {"name": "ncsnpp", **SKIP_VARIANT, "dropout": 0.0,
                                     "progressive_combine": "sum", "centered": False}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"progressive": "none", "progressive_input": "residual"}, "CIFAR-10 configs use residual"),
    ({"progressive_combine": "cat"}, "progressive_combine sum"),
    ({"nf": 16}, "attention at level 1 has 64 channels"),
])
def test_models_diffusers_cannot_express_are_refused(overrides, message):
    with pytest.raises(UserError, match=message) as refused:
        unet_config_from_net(_net(**overrides), 8, 3)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"time_embedding_type": "positional"}, "time_embedding_type is 'positional'"),
    ({"attention_head_dim": 8}, "multi-head attention"),
    ({"up_block_types": ["SkipUpBlock2D", "SkipUpBlock2D"]}, "mirrored"),
    ({"norm_num_groups": 32}, "norm_num_groups 32 at conv_norm_out"),
    ({"block_out_channels": [32, 48]}, "multiples of the first"),
])
def test_unsupported_unet_configs_name_the_field(change, message):
    config = {**unet_config_from_net(_net(), 8, 3), **change}
    with pytest.raises(UserError, match=message):
        section_from_unet_config(config, "unet/config.json")
