"""NCSN++ in diffusers' format (``UNet2DModel`` + ``ScoreSdeVeScheduler``, the layout of the
``google/ncsnpp-*`` repositories): config translation and key mapping both ways.

diffusers expresses one NCSN++ variant: score_sde's ``output_skip`` / ``input_skip`` / ``sum``
pyramids with a Fourier embedding (CelebA-HQ, FFHQ, LSUN configs), as ``SkipDownBlock2D`` /
``AttnSkipDownBlock2D`` and ``SkipUpBlock2D`` / ``AttnSkipUpBlock2D``. It has no block for
the CIFAR-10 configs' ``residual`` input pyramid, and its attention blocks use 32 GroupNorm
groups (and ``AttnSkipUpBlock2D`` computes min(c_in + c_skip // 4, 32)) where score_sde uses
min(C // 4, 32), so a model is expressible only where those agree (128+ channels at attention
resolutions, as in all published configs). A folder is ``model_index.json``, ``unet/`` (or
``model/``) with ``config.json`` and weights, and ``scheduler/scheduler_config.json``.
Score-network parameters map one to one; NIN ``W`` (in, out) is the transpose of a Linear.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ncsn.errors import UserError
from ncsn.nets.ncsnpp import NCSNpp

# UNet2DModel's constructor defaults (diffusers 0.42) for the fields read here: a config.json
# only lists what differs from them when written by hand.
UNET_DEFAULTS: dict[str, Any] = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None,
    "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2,
    "mid_block_scale_factor": 1.0, "mid_block_type": "UNetMidBlock2D", "dropout": 0.0,
    "act_fn": "silu", "attention_head_dim": 8, "norm_num_groups": 32, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None,
    "num_class_embeds": None, "attn_norm_num_groups": None,
}
# What the NCSN++ variant requires (score_sde's values).
UNET_REQUIRED: dict[str, Any] = {
    "time_embedding_type": "fourier", "in_channels": 3, "out_channels": 3, "act_fn": "silu",
    "norm_eps": 1e-6, "mid_block_type": "UNetMidBlock2D", "resnet_time_scale_shift": "default",
    "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
    "attn_norm_num_groups": None,
}
DOWN, ATTN_DOWN, UP, ATTN_UP = ("SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipUpBlock2D",
                                "AttnSkipUpBlock2D")
RESNET_NAMES = {"GroupNorm_0": "norm1", "Conv_0": "conv1", "Dense_0": "time_emb_proj",
                "GroupNorm_1": "norm2", "Conv_1": "conv2", "Conv_2": "conv_shortcut"}
ATTN_NAMES = {"GroupNorm_0": "group_norm", "NIN_0": "to_q", "NIN_1": "to_k", "NIN_2": "to_v",
              "NIN_3": "to_out.0"}
PARAM_NAMES = {"W": "weight", "b": "bias", "weight": "weight", "bias": "bias"}
# Attention key names of older diffusers files (the deprecated attention block).
LEGACY_ATTN = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.",
               ".proj_attn.": ".to_out.0."}


def _groups(c: int) -> int:
    return min(c // 4, 32)


def _group_mismatch(config: Mapping[str, Any], attn_levels: list[int]) -> str | None:
    """Where diffusers' GroupNorm group counts would differ from score_sde's, or None."""
    boc, n = list(config["block_out_channels"]), len(config["block_out_channels"])
    groups = config["norm_num_groups"]
    if groups is not None:
        for what, c in (("the mid block", boc[-1]), ("conv_norm_out", boc[0])):
            if groups != _groups(c):
                return f"norm_num_groups {groups} at {what} ({c} channels; score_sde: {_groups(c)})"
    rev = boc[::-1]
    for i in attn_levels:
        if _groups(boc[i]) != 32:
            return f"attention at level {i} has {boc[i]} channels (diffusers uses 32 groups)"
        k = n - 1 - i  # the up block of level i
        for j in range(config["layers_per_block"] + 1):
            c_in = (rev[k - 1] if k > 0 else rev[0]) if j == 0 else rev[k]
            c_skip = rev[min(k + 1, n - 1)] if j == config["layers_per_block"] else rev[k]
            if min(c_in + c_skip // 4, 32) != _groups(c_in + c_skip):
                return f"up block {k} resnet {j}: {c_in} + {c_skip} input channels"
    return None


def section_from_unet_config(raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], int]:
    """Our ``ncsnpp`` network section and the image size of a UNet2DModel ``config.json``;
    UserError naming the field for a model outside the NCSN++ variant diffusers expresses."""
    config = {**UNET_DEFAULTS, **raw}
    for field, value in UNET_REQUIRED.items():
        if config[field] != value:
            raise UserError(f"{source}: {field} is {config[field]!r}, NCSN++ needs {value!r}")
    if not math.isclose(float(config["mid_block_scale_factor"]), math.sqrt(2), rel_tol=1e-6):
        raise UserError(f"{source}: mid_block_scale_factor must be sqrt(2) (skip rescaling)")
    size = config["sample_size"]
    size = size[0] if isinstance(size, (list, tuple)) and len(set(size)) == 1 else size
    boc = list(config["block_out_channels"])
    downs, ups = list(config.get("down_block_types", [])), list(config.get("up_block_types", []))
    if not isinstance(size, int) or not boc or len(downs) != len(boc) or len(ups) != len(boc):
        raise UserError(f"{source}: needs a square int sample_size and as many down_block_types "
                        "and up_block_types as block_out_channels")
    attn = [i for i, t in enumerate(downs) if t == ATTN_DOWN]
    expected_ups = [ATTN_UP if i in attn else UP for i in reversed(range(len(boc)))]
    if any(t not in (DOWN, ATTN_DOWN) for t in downs) or ups != expected_ups:
        raise UserError(f"{source}: NCSN++ blocks are {DOWN}/{ATTN_DOWN} down and the mirrored "
                        f"{UP}/{ATTN_UP} up; got {downs} and {ups}")
    nf = boc[0]
    heads = config["attention_head_dim"]
    if attn and heads is not None and any(boc[i] // heads != 1 for i in attn):
        raise UserError(f"{source}: attention_head_dim {heads} makes multi-head attention; "
                        "NCSN++ has one head (attention_head_dim null)")
    if any(c % nf for c in boc) or config["time_embedding_dim"] not in (None, 4 * nf):
        raise UserError(f"{source}: block_out_channels must be multiples of the first "
                        "and time_embedding_dim null or 4x it")
    problem = _group_mismatch(config, attn)
    if problem:
        raise UserError(f"{source}: its GroupNorm groups differ from NCSN++'s ({problem})")
    section = {"name": "ncsnpp", "nf": nf, "ch_mult": [c // nf for c in boc],
               "num_res_blocks": int(config["layers_per_block"]),
               "attn_resolutions": [size >> i for i in attn],
               "dropout": float(config["dropout"]), "progressive": "output_skip",
               "progressive_input": "input_skip", "progressive_combine": "sum",
               "centered": not config["center_input_sample"]}
    return section, size


def unet_config_from_net(net: NCSNpp, image_size: int, channels: int) -> dict[str, Any]:
    """The UNet2DModel ``config.json`` of an NCSN++ (UserError when diffusers cannot express
    it: see the module docstring)."""
    problems = []
    if net.progressive != "output_skip" or net.progressive_input != "input_skip":
        problems.append(f"progressive {net.progressive!r} / progressive_input "
                        f"{net.progressive_input!r} (diffusers has output_skip / input_skip "
                        "only; score_sde's CIFAR-10 configs use residual)")
    if net.layout.fourier is None or not net.skip_rescale or channels != 3:
        problems.append("needs the Fourier embedding, skip rescaling and 3 channels")
    if net.progressive_combine != "sum" or net.fir_kernel != (1, 3, 3, 1):
        problems.append("needs progressive_combine sum and fir_kernel [1, 3, 3, 1]")
    if problems:
        raise UserError("diffusers' UNet2DModel cannot express this NCSN++: " + "; ".join(problems))
    levels = range(len(net.ch_mult))
    attn = [i for i in levels if image_size >> i in net.attn_resolutions]
    config = {**UNET_DEFAULTS, **UNET_REQUIRED, "_class_name": "UNet2DModel",
              "sample_size": image_size, "center_input_sample": not net.centered,
              "block_out_channels": [net.nf * m for m in net.ch_mult],
              "layers_per_block": net.num_res_blocks, "mid_block_scale_factor": math.sqrt(2),
              "dropout": net.dropout, "attention_head_dim": None, "norm_num_groups": None,
              "down_block_types": [ATTN_DOWN if i in attn else DOWN for i in levels],
              "up_block_types": [ATTN_UP if i in attn else UP for i in reversed(levels)]}
    problem = _group_mismatch(config, attn)
    if problem:
        raise UserError(f"diffusers' UNet2DModel cannot express this NCSN++: its GroupNorm "
                        f"groups would differ ({problem})")
    return config


def diffusers_key_map(net: NCSNpp) -> dict[str, str]:
    """{our state-dict key: diffusers' key} for an NCSN++ in the diffusers variant."""
    layout = net.layout
    where: dict[int, tuple[str, Mapping[str, str] | None]] = {
        layout.temb[0]: ("time_embedding.linear_1", None),
        layout.temb[1]: ("time_embedding.linear_2", None), layout.conv_in: ("conv_in", None),
        layout.mid[0]: ("mid_block.resnets.0", RESNET_NAMES),
        layout.mid[1]: ("mid_block.attentions.0", ATTN_NAMES),
        layout.mid[2]: ("mid_block.resnets.1", RESNET_NAMES)}
    if layout.fourier is not None:
        where[layout.fourier] = ("time_proj", None)
    for i, level in enumerate(layout.down):
        where.update({b: (f"down_blocks.{i}.resnets.{j}", RESNET_NAMES)
                      for j, b in enumerate(level.blocks)})
        where.update({a: (f"down_blocks.{i}.attentions.{j}", ATTN_NAMES)
                      for j, a in enumerate(level.attns)})
        if level.down is not None and level.pyramid is not None:
            where[level.down] = (f"down_blocks.{i}.resnet_down", RESNET_NAMES)
            where[level.pyramid] = (f"down_blocks.{i}.skip_conv", {"Conv_0": ""})
    for k, level in enumerate(layout.up):
        where.update({b: (f"up_blocks.{k}.resnets.{j}", RESNET_NAMES)
                      for j, b in enumerate(level.blocks)})
        if level.attn is not None:
            where[level.attn] = (f"up_blocks.{k}.attentions.0", ATTN_NAMES)
        if level.pyramid is not None:
            norm, conv = ((f"up_blocks.{k}.skip_norm", f"up_blocks.{k}.skip_conv")
                          if level.up is not None else ("conv_norm_out", "conv_out"))
            where.update({level.pyramid[0]: (norm, None), level.pyramid[1]: (conv, None)})
        if level.up is not None:
            where[level.up] = (f"up_blocks.{k}.resnet_up", RESNET_NAMES)
    out = {}
    for key in net.state_dict():
        _, index, *rest = key.split(".")
        prefix, names = where[int(index)]
        parts = [prefix] if names is None else [prefix, names[rest[0]]]
        out[key] = ".".join(p for p in (*parts, PARAM_NAMES[rest[-1]]) if p)
    return out


def _transposed(key: str) -> bool:
    return key.endswith(".W") and ".NIN_" in key


def to_diffusers_state(net: NCSNpp) -> dict[str, Tensor]:
    """Our weights under diffusers' names (NIN matrices transposed)."""
    names = diffusers_key_map(net)
    return {names[k]: (v.t() if _transposed(k) else v).contiguous()
            for k, v in net.state_dict().items()}


def normalise_diffusers_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Current diffusers names for a file's keys: the deprecated attention names
    (query/key/value/proj_attn) renamed, ``time_proj.W`` dropped beside ``time_proj.weight``."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for old, new in LEGACY_ATTN.items():
            key = key.replace(old, new)
        out[key] = value
    if "time_proj.W" in out:
        w = out.pop("time_proj.W")
        out.setdefault("time_proj.weight", w)
    return out


def from_diffusers_state(net: NCSNpp, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A diffusers state dict under our names (every key of ``state`` must map; missing and
    unexpected keys are reported by :func:`ncsn.nets.io.load_weights` on the result)."""
    ours = {theirs: key for key, theirs in diffusers_key_map(net).items()}
    return {ours.get(k, f"<diffusers> {k}"): (v.t() if _transposed(ours.get(k, "")) else v)
            for k, v in normalise_diffusers_keys(state).items()}
