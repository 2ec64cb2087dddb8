"""Official-checkpoint import: key list written from the architecture (docs/networks.md), a
functional reference forward over those keys, exact round trip, the official sampler step and
clear refusals."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ncsn.cli import main
from ncsn.cli.convert import spec_from_config
from ncsn.core.noise import geometric_sigmas
from ncsn.core.samplers import annealed_langevin
from ncsn.errors import UserError
from ncsn.nets.io import load_model
from ncsn.nets.ncsnv2 import NCSNv2
from ncsn.nets.official import (
    convert_official,
    load_official,
    load_official_ncsnv2,
    load_official_state_dict,
    official_spec,
)
from ncsn.nets.refinenet import CondRefineNetDilated
from ncsn.sampling import plan_sampling

KEYS_FILE = Path(__file__).parent / "data" / "official-cond-refinenet-keys.txt"


def official_keys(ngf: int, channels: int, levels: int) -> dict[str, tuple[int, ...]]:
    """The official CondRefineNetDilated state-dict keys and shapes (docs/networks.md)."""
    keys: dict[str, tuple[int, ...]] = {}

    def norm(p, c):
        keys[f"{p}.embed.weight"] = (levels, 3 * c)

    def conv(p, cin, cout, k=3, bias=True):
        keys[f"{p}.weight"] = (cout, cin, k, k)
        if bias:
            keys[f"{p}.bias"] = (cout,)

    def rcu(p, c, n_blocks):
        for i in range(1, n_blocks + 1):
            for j in (1, 2):
                norm(f"{p}.{i}_{j}_norm", c)
                conv(f"{p}.{i}_{j}_conv", c, c, bias=False)

    conv("begin_conv", channels, ngf)
    norm("normalizer", ngf)
    conv("end_conv", ngf, channels)
    w = 2 * ngf
    for j in (0, 1):
        norm(f"res1.{j}.normalize1", ngf)
        conv(f"res1.{j}.conv1", ngf, ngf)
        norm(f"res1.{j}.normalize2", ngf)
        conv(f"res1.{j}.conv2", ngf, ngf)
    norm("res2.0.normalize1", ngf)
    conv("res2.0.conv1", ngf, ngf)
    norm("res2.0.normalize2", ngf)
    conv("res2.0.conv2.conv", ngf, w)
    conv("res2.0.shortcut.conv", ngf, w, k=1)
    for stage, j in [(2, 1), (3, 0), (3, 1), (4, 0), (4, 1)]:
        norm(f"res{stage}.{j}.normalize1", w)
        conv(f"res{stage}.{j}.conv1", w, w)
        norm(f"res{stage}.{j}.normalize2", w)
        conv(f"res{stage}.{j}.conv2", w, w)
        if stage > 2 and j == 0:
            conv(f"res{stage}.{j}.shortcut", w, w)
    blocks = [(1, [w], w), (2, [w, w], w), (3, [w, w], ngf), (4, [ngf, ngf], ngf)]
    for k, ins, out in blocks:
        for m, c in enumerate(ins):
            rcu(f"refine{k}.adapt_convs.{m}", c, 2)
        rcu(f"refine{k}.output_convs", out, 3 if k == 4 else 1)
        if len(ins) > 1:
            for m, c in enumerate(ins):
                conv(f"refine{k}.msf.convs.{m}", c, out)
                norm(f"refine{k}.msf.norms.{m}", c)
        for s in (0, 1):
            conv(f"refine{k}.crp.convs.{s}", out, out, bias=False)
            norm(f"refine{k}.crp.norms.{s}", out)
    return keys


def reference_forward(sd, x, y, logit=False):
    """The official forward pass (docs/networks.md) written functionally over the state dict;
    with ``logit`` (the official logit_transform) the input is not rescaled to 2x - 1."""

    def norm(p, h):
        c = h.shape[1]
        gamma, alpha, beta = sd[f"{p}.embed.weight"][y].split(c, dim=1)
        mu = h.mean(dim=(2, 3))
        shift = (mu - mu.mean(1, keepdim=True)) / torch.sqrt(mu.var(1, keepdim=True) + 1e-5)
        var = h.var(dim=(2, 3), unbiased=False, keepdim=True)
        out = (h - mu[..., None, None]) / torch.sqrt(var + 1e-5) + (alpha * shift)[..., None, None]
        return gamma[..., None, None] * out + beta[..., None, None]

    def conv(p, h, dilation=1):
        weight = sd[f"{p}.weight"]
        pad = dilation * (weight.shape[-1] // 2)
        return F.conv2d(h, weight, sd.get(f"{p}.bias"), padding=pad, dilation=dilation)

    def pool(h):
        return (h[..., ::2, ::2] + h[..., 1::2, ::2] + h[..., ::2, 1::2] + h[..., 1::2, 1::2]) / 4

    def res(p, h, dilation):
        out = conv(f"{p}.conv1", F.elu(norm(f"{p}.normalize1", h)), dilation)
        out = F.elu(norm(f"{p}.normalize2", out))
        if f"{p}.conv2.conv.weight" in sd:
            return pool(conv(f"{p}.conv2.conv", out)) + pool(conv(f"{p}.shortcut.conv", h))
        out = conv(f"{p}.conv2", out, dilation)
        return out + (conv(f"{p}.shortcut", h, dilation) if f"{p}.shortcut.weight" in sd else h)

    def rcu(p, h, n_blocks):
        for i in range(1, n_blocks + 1):
            r = h
            for j in (1, 2):
                h = conv(f"{p}.{i}_{j}_conv", F.elu(norm(f"{p}.{i}_{j}_norm", h)))
            h = h + r
        return h

    def refine(k, xs, size):
        hs = [rcu(f"refine{k}.adapt_convs.{m}", h, 2) for m, h in enumerate(xs)]
        h = hs[0]
        if len(hs) > 1:
            h = sum(F.interpolate(conv(f"refine{k}.msf.convs.{m}",
                                       norm(f"refine{k}.msf.norms.{m}", hm)),
                                  size=size, mode="bilinear", align_corners=True)
                    for m, hm in enumerate(hs))
        h = F.elu(h)
        path = h
        for s in (0, 1):
            path = norm(f"refine{k}.crp.norms.{s}", path)
            path = conv(f"refine{k}.crp.convs.{s}", F.avg_pool2d(path, 5, 1, 2))
            h = path + h
        return rcu(f"refine{k}.output_convs", h, 3 if k == 4 else 1)

    h = conv("begin_conv", x if logit else 2 * x - 1)
    layers = []
    for stage, dilation in [(1, 1), (2, 1), (3, 2), (4, 4)]:
        for j in (0, 1):
            h = res(f"res{stage}.{j}", h, dilation)
        layers.append(h)
    r = refine(1, [layers[3]], layers[3].shape[2:])
    r = refine(2, [layers[2], r], layers[2].shape[2:])
    r = refine(3, [layers[1], r], layers[1].shape[2:])
    r = refine(4, [layers[0], r], layers[0].shape[2:])
    return conv("end_conv", F.elu(norm("normalizer", r)))


def random_official_state(ngf, channels, levels, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in official_keys(ngf, channels, levels).items():
        t = torch.randn(shape, generator=g)
        if key.endswith("embed.weight"):
            t = 1.0 + 0.3 * t
        elif len(shape) == 4:
            t = t / (shape[1] * shape[2] * shape[3]) ** 0.5
        else:
            t = 0.1 * t
        sd[key] = t
    return sd


def write_official_checkpoint(path, sd, prefix="module."):
    model = {prefix + k: v for k, v in sd.items()}
    optim = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
             "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]}
    torch.save([model, optim], path)


def test_key_list_written_from_spec_equals_the_official_list():
    official = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            official[key] = tuple(int(t) for t in shape.strip("()").split(",") if t.strip())
    assert official_keys(64, 1, 10) == official


@pytest.mark.parametrize(("ngf", "channels", "levels"), [(64, 1, 10), (128, 3, 10), (8, 3, 4)])
def test_our_state_dict_uses_the_official_keys(ngf, channels, levels):
    net = CondRefineNetDilated(channels=channels, sigmas=geometric_sigmas(1, 0.01, levels),
                               ngf=ngf)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == official_keys(
        ngf, channels, levels)


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_converted_checkpoint_reproduces_the_official_forward(tmp_path, prefix):
    sd = random_official_state(8, 1, 10)
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, sd, prefix)
    spec = official_spec("mnist", ngf=8, image_size=12)
    out = convert_official(ckpt, tmp_path / "converted", spec)
    assert out == tmp_path / "converted.safetensors"
    net, loaded_spec = load_model(tmp_path / "converted")
    assert loaded_spec.network == {"name": "cond_refinenet", "ngf": 8}
    sigmas = net.sigmas
    x = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    levels = torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        ours = net(x, sigmas[levels])
        expected = reference_forward(sd, x, levels)
    assert ours.abs().mean() > 1e-3
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        direct = load_official(ckpt, spec)(x, sigmas[levels])
    torch.testing.assert_close(direct, ours, rtol=0, atol=0)


def test_wrong_shapes_are_refused_with_key_names(tmp_path):
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, random_official_state(8, 1, 10))
    with pytest.raises(UserError, match=r"wrong shapes .*begin_conv\.weight \(8, 1, 3, 3\) vs "
                                        r"\(16, 1, 3, 3\)"):
        convert_official(ckpt, tmp_path / "m", official_spec("mnist", ngf=16))
    with pytest.raises(UserError,
                       match=r"res1\.0\.normalize1\.embed\.weight \(10, 24\) vs \(5, 24\)"):
        convert_official(ckpt, tmp_path / "m", official_spec("mnist", ngf=8, num_levels=5))
    assert not (tmp_path / "m.safetensors").exists()


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = random_official_state(8, 1, 10)
    del sd["refine2.msf.convs.1.bias"]
    sd["extra.weight"] = torch.zeros(1)
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, sd)
    with pytest.raises(UserError, match=r"missing keys: refine2\.msf\.convs\.1\.bias; "
                                        r"unexpected keys: extra\.weight"):
        convert_official(ckpt, tmp_path / "m", official_spec("mnist", ngf=8))


class _NotAllowed:
    pass


def test_unsafe_or_corrupt_files_are_refused(tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    torch.save([{"w": _NotAllowed()}, {}], unsafe)
    with pytest.raises(UserError, match="weights-only") as refused:
        load_official_state_dict(unsafe)
    message = str(refused.value)  # one line naming the object, no advice to drop weights_only
    assert "_NotAllowed" in message and "\n" not in message and "False" not in message
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="cannot read") as refused:
        load_official_state_dict(garbage)
    assert "\n" not in str(refused.value) and "False" not in str(refused.value)
    with pytest.raises(UserError, match="not found"):
        load_official_state_dict(tmp_path / "missing.pth")
    odd = tmp_path / "odd.pth"
    torch.save([1, 2], odd)
    with pytest.raises(UserError, match="not an official checkpoint"):
        load_official_state_dict(odd)


def test_cli_converts(tmp_path, capsys):
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, random_official_state(8, 3, 10))
    code = main(["convert-official", str(ckpt), "--out", str(tmp_path / "m.safetensors"),
                 "--preset", "cifar10", "--ngf", "8"])
    assert code == 0
    net, spec = load_model(tmp_path / "m.json")
    assert spec.channels == 3 and spec.image_size == 32 and len(spec.sigmas) == 10
    assert spec.network == {"name": "cond_refinenet", "ngf": 8}
    settings = spec.sampling.settings
    assert (settings.sampler, settings.n_steps_each, settings.step_size, settings.convention,
            spec.data.logit) == ("annealed_langevin", 100, 2e-5, "official", False)


def test_cli_wrong_checkpoint_is_one_line_exit_2(tmp_path):
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, random_official_state(8, 1, 10))
    proc = subprocess.run(
        [sys.executable, "-m", "ncsn", "convert-official", str(ckpt), "--out",
         str(tmp_path / "m"), "--preset", "mnist"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("ncsn convert-official: error: checkpoint ")
    assert "begin_conv.weight (8, 1, 3, 3) vs (64, 1, 3, 3)" in lines[0]


def test_cli_converts_with_our_config(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {name: mnist5k}\nmodel: {name: cond_refinenet, ngf: 8}\n"
                      "noise: {sigma_max: 1.0, sigma_min: 0.01, num_levels: 10}\n"
                      "sampling: {n_steps_each: 7, step_size: 3.0e-5, convention: official}\n")
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, random_official_state(8, 1, 10))
    assert main(["convert-official", str(ckpt), "--out", str(tmp_path / "m"), "--config",
                 str(config)]) == 0
    _, spec = load_model(tmp_path / "m")
    assert spec.image_size == 28 and spec.channels == 1
    settings = plan_sampling(spec, continuous=False).settings
    assert settings.n_steps_each == 7 and settings.convention == "official"
    assert main(["convert-official", str(ckpt), "--out", str(tmp_path / "m"), "--config",
                 str(config), "--ngf", "8"]) == 2


class _Stop(Exception):
    pass


def _first_steps(net, x0, sigmas, settings, count, seed):
    """The images after each of the first ``count`` steps of the model's default sampler."""
    seen = []

    def keep(info):
        seen.append(info["x"].clone())
        if len(seen) == count:
            raise _Stop

    with pytest.raises(_Stop):
        annealed_langevin(net, x0, sigmas, settings["n_steps_each"], settings["step_size"],
                          convention=settings["convention"],
                          generator=torch.Generator().manual_seed(seed), callback=keep)
    return seen


def test_converted_model_samples_with_the_official_step(tmp_path):
    """The official runner: T = 100 steps per level of x + a s + sqrt(2a) z with
    a = step_lr (sigma_i / sigma_L)^2 and step_lr = 2e-5 (paper eps 4e-5, not the text's 2e-5)."""
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, random_official_state(8, 1, 10))
    convert_official(ckpt, tmp_path / "m", official_spec("mnist", ngf=8, image_size=12))
    net, spec = load_model(tmp_path / "m")
    plan = plan_sampling(spec, continuous=False)  # what ncsn sample runs
    assert plan.sampler == "annealed_langevin" and plan.schedule == "model"
    settings = plan.settings.options()
    assert settings == {"n_steps_each": 100, "step_size": 2e-5, "convention": "official",
                        "final_denoise": False}
    sigmas = net.sigmas
    x0 = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    # The first two steps at sigma_1, and at sigma_6 (a chain over sigmas[5:] starts there; its
    # sigma_L is still 0.01), against the official update on the same noise.
    for first in (0, 5):
        seen = _first_steps(net, x0, sigmas[first:], settings, count=2, seed=1)
        gen, x = torch.Generator().manual_seed(1), x0
        a = 2e-5 * float(sigmas[first] / sigmas[-1]) ** 2
        with torch.no_grad():
            for after_step in seen:
                z = torch.randn(x.shape, generator=gen)
                x = x + a * net(x, sigmas[first].expand(2)) + (2 * a) ** 0.5 * z
                torch.testing.assert_close(after_step, x, rtol=0, atol=1e-6)
        assert float((seen[0] - x0).abs().max()) > 1e-3  # the step moved the images


def test_logit_checkpoint_takes_logits_without_rescaling(tmp_path):
    sd = random_official_state(8, 1, 10)
    ckpt = tmp_path / "checkpoint.pth"
    write_official_checkpoint(ckpt, sd)
    config = tmp_path / "logit.yaml"
    config.write_text("data: {name: mnist5k, logit: true}\nmodel: {name: cond_refinenet, ngf: 8}\n"
                      "noise: {sigma_max: 1.0, sigma_min: 0.01, num_levels: 10}\n")
    assert main(["convert-official", str(ckpt), "--out", str(tmp_path / "c"), "--config",
                 str(config)]) == 0
    assert main(["convert-official", str(ckpt), "--out", str(tmp_path / "p"), "--preset",
                 "mnist", "--ngf", "8", "--logit"]) == 0
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 3  # logits
    levels = torch.tensor([0, 4, 9])
    with torch.no_grad():
        expected = reference_forward(sd, x, levels, logit=True)
        rescaled = reference_forward(sd, x, levels)
        for stem in ("c", "p"):
            net, spec = load_model(tmp_path / stem)
            assert spec.network["logit_input"] is True and spec.data.logit is True
            ours = net(x, net.sigmas[levels])
            torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
            assert float((ours - rescaled).abs().max()) > 1e-2


@pytest.mark.parametrize(("name", "ngf", "channels", "size"), [
    ("mnist", 64, 1, 28), ("cifar10", 128, 3, 32), ("celeba", 128, 3, 32)])
def test_paper_configs_convert_to_the_official_sampler(name, ngf, channels, size):
    spec = spec_from_config(name)
    assert spec.network == {"name": "cond_refinenet", "ngf": ngf}
    assert (spec.channels, spec.image_size, len(spec.sigmas)) == (channels, size, 10)
    s = plan_sampling(spec, continuous=False).settings
    assert (s.n_steps_each, s.step_size, s.convention, s.final_denoise) == (100, 2e-5, "official",
                                                                          False)

# --- official NCSNv2 (ermongroup/ncsnv2) ------------------------------------------------------

NCSNV2_KEYS = Path(__file__).parent / "data" / "ncsnv2-official-keys.txt"
NCSNV2_YAML = ("data: {name: folder, image_size: 16, channels: 3}\nmodel: {name: ncsnv2, ngf: 8}\n"
               "noise: {sigma_max: 50.0, sigma_min: 0.01, num_levels: 232}\n")


def test_our_ncsnv2_keys_equal_the_recorded_official_ones():
    recorded: dict[str, dict[str, tuple[int, ...]]] = {}
    for line in NCSNV2_KEYS.read_text().splitlines():
        if line.startswith("#"):
            continue
        network, key, shape = line.split(" ", 2)
        recorded.setdefault(network, {})[key] = tuple(
            int(t) for t in shape.strip("()").split(",") if t.strip())
    for network, size, levels in (("NCSNv2", 32, 232), ("NCSNv2Deeper", 64, 500)):
        ours = {k: tuple(v.shape) for k, v in
                NCSNv2(channels=3, image_size=size, ngf=8).state_dict().items()}
        assert {**ours, "sigmas": (levels,)} == recorded[network]


def write_ncsnv2_checkpoint(path, net, sigmas, *, ema=True, offset=0.25):
    """[model, optimizer, epoch, step, ema] as ermongroup/ncsnv2 saves it (DataParallel keys
    with the sigmas buffer; the EMA maps unprefixed parameter names to their averages)."""
    model = {f"module.{k}": v.clone() for k, v in net.state_dict().items()}
    model["module.sigmas"] = sigmas
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4).state_dict()
    states = [model, optimizer, 3, 1000]
    if ema:
        states.append({k: p.detach() + offset for k, p in net.named_parameters()})
    torch.save(states, path)


def _ncsnv2_case(tmp_path, sigma_max=50.0, ema=True):
    torch.manual_seed(0)
    net = NCSNv2(channels=3, image_size=16, ngf=8)
    sigmas = torch.tensor(np.exp(np.linspace(np.log(sigma_max), np.log(0.01), 232))).float()
    ckpt = tmp_path / "checkpoint.pth"
    write_ncsnv2_checkpoint(ckpt, net, sigmas, ema=ema)
    config = tmp_path / "v2.yaml"
    config.write_text(NCSNV2_YAML)
    return net, ckpt, spec_from_config(str(config))


def test_ncsnv2_checkpoint_gives_its_ema_weights_by_default(tmp_path):
    net, ckpt, spec = _ncsnv2_case(tmp_path)
    ema = load_official_ncsnv2(ckpt, spec)
    raw = load_official_ncsnv2(ckpt, spec, weights="raw")
    for name, p in net.state_dict().items():
        assert torch.equal(raw.state_dict()[name], p), name
        assert torch.allclose(ema.state_dict()[name], p + 0.25), name


def test_ncsnv2_sigmas_must_be_the_configured_levels(tmp_path):
    _, ckpt, spec = _ncsnv2_case(tmp_path, sigma_max=90.0)
    with pytest.raises(UserError, match=r"noise level 1 is 90 in the checkpoint but 50 in the "
                                        r"config") as refused:
        load_official_ncsnv2(ckpt, spec)
    assert "\n" not in str(refused.value)


def test_ncsnv2_without_ema_and_through_convert_official(tmp_path):
    _, ckpt, spec = _ncsnv2_case(tmp_path, ema=False)
    with pytest.raises(UserError, match=r"holds no EMA weights \(a list of 4 entries"):
        load_official_ncsnv2(ckpt, spec)
    assert load_official_ncsnv2(ckpt, spec, weights="raw") is not None
    with pytest.raises(UserError, match="ncsn convert CKPT --from official-ncsnv2"):
        load_official(ckpt, spec)
