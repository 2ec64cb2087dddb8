"""score_sde_pytorch checkpoints: EMA weights by default (shadow list in parameters() order, the
fixed Fourier W from the model), raw on request, numpy-1 and numpy-2 files, and one-line refusals
for malicious, corrupt, mismatched or inconsistent files."""

from __future__ import annotations

import pytest
import torch

from checkpoint_writers import (
    RunsCommand,
    as_numpy1_file,
    tiny_config,
    tiny_ncsnpp,
    write_score_sde_checkpoint,
)
from ncsn.cli.convert import spec_from_config
from ncsn.errors import UserError
from ncsn.nets.score_sde import load_score_sde


@pytest.fixture
def ckpt(tmp_path):
    net = tiny_ncsnpp()
    path = tmp_path / "checkpoint_7.pth"
    shadow = write_score_sde_checkpoint(path, net)
    return path, net, shadow, spec_from_config(str(tiny_config(tmp_path)))


def test_ema_weights_by_default_raw_on_request(ckpt, tmp_path):
    path, net, shadow, spec = ckpt
    ema = load_score_sde(path, spec)
    trainable = [(k, p) for k, p in ema.named_parameters() if p.requires_grad]
    assert len(trainable) == len(shadow)
    for (name, p), average in zip(trainable, shadow, strict=True):
        assert torch.equal(p, average), name
    assert torch.equal(ema.all_modules[0].W, net.all_modules[0].W)  # not in the EMA list
    raw = load_score_sde(as_numpy1_file(path, tmp_path / "numpy1.pth"), spec, weights="raw")
    for (name, p), q in zip(raw.state_dict().items(), net.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    x, sigma = torch.rand(2, 3, 8, 8), torch.tensor([0.02, 30.0])
    with torch.no_grad():
        assert torch.equal(raw(x, sigma), net(x, sigma))
        assert float((ema(x, sigma) - net(x, sigma)).abs().max()) > 1e-3


def test_wrong_config_is_named_before_any_work(ckpt, tmp_path):
    path, _, _, spec = ckpt
    wider = spec.model_copy(update={"network": {**spec.network, "nf": 16}})
    with pytest.raises(UserError, match=r"wrong shapes .*all_modules\.1\.weight"):
        load_score_sde(path, wider)
    other_range = spec_from_config(str(tiny_config(tmp_path, sigma_max=348.0, name="b.yaml")))
    with pytest.raises(UserError, match="noise level 1 is 50 in the checkpoint but 348 in the "
                                        "config"):
        load_score_sde(path, other_range)
    with pytest.raises(UserError, match="weights must be one of ema, raw"):
        load_score_sde(path, spec, weights="best")


def test_inconsistent_ema_and_missing_ema(ckpt, tmp_path):
    path, net, shadow, spec = ckpt
    obj = torch.load(path, weights_only=False)
    obj["ema"]["shadow_params"] = shadow[:-1]
    short = tmp_path / "short.pth"
    torch.save(obj, short)
    with pytest.raises(UserError, match=r"EMA holds \d+ tensors but the configured network "
                                        r"has \d+ trainable"):
        load_score_sde(short, spec)
    del obj["ema"]
    none = tmp_path / "none.pth"
    torch.save(obj, none)
    with pytest.raises(UserError, match="holds no EMA weights; use --weights raw"):
        load_score_sde(none, spec)
    assert load_score_sde(none, spec, weights="raw") is not None


def test_malicious_corrupt_and_foreign_files(ckpt, tmp_path):
    path, _, _, spec = ckpt
    marker = tmp_path / "ran"
    obj = torch.load(path, weights_only=False)
    obj["optimizer"]["param_groups"][0]["lr"] = RunsCommand(f"touch {marker}")
    evil = tmp_path / "evil.pth"
    torch.save(obj, evil)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:2000])
    foreign = tmp_path / "list.pth"
    torch.save([{"w": torch.ones(1)}], foreign)
    for bad, message in ((evil, "refused for safety"), (truncated, "cannot read"),
                         (foreign, "not a score_sde checkpoint")):
        with pytest.raises(UserError, match=message) as refused:
            load_score_sde(bad, spec)
        assert "\n" not in str(refused.value)
    assert not marker.exists()
