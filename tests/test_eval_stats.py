"""Reference-statistics cache, sample sources, resumable generation and score_samples plumbing.

A cheap stand-in extractor (pixels pooled to 4x4) replaces Inception here, so these tests check
the bookkeeping, not the network (test_eval_inception.py and test_eval_cli.py run the network).
"""

import json
import os

import numpy as np
import pytest
import torch

import ncsn
from ncsn import files
from ncsn.cli import main
from ncsn.errors import UserError
from ncsn.eval import features as F
from ncsn.eval import report as R
from ncsn.eval.metrics import feature_statistics, frechet_distance
from ncsn.eval.samples import generate_samples, load_samples
from ncsn.imageio import save_npz, save_pngs
from ncsn.spec.model import ModelSpec
from test_train_support import KILLED_PID


class PooledPixels:
    """Stand-in extractor: 4x4 average-pooled grey pixels (16-d features); counts its calls."""

    source = "pooled-pixels"
    has_logits = False

    def __init__(self):
        self.calls = 0

    def __call__(self, images, batch_size=50, progress=False):
        self.calls += 1
        x = F.check_images(images).mean(1, keepdim=True)
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1).numpy(), None


@pytest.fixture
def fake(monkeypatch):
    extractor = PooledPixels()
    monkeypatch.setattr(F, "get_extractor", lambda *a, **k: extractor)
    monkeypatch.setattr(R, "get_extractor", lambda *a, **k: extractor)
    R._REFERENCE_MEMO.clear()
    return extractor


@pytest.fixture
def image_folder(tmp_path):
    gen = torch.Generator().manual_seed(0)
    folder = tmp_path / "imgs"
    save_pngs(torch.rand(12, 1, 8, 8, generator=gen), folder)
    return folder


def _stats(folder, cache, **kw):
    return F.dataset_stats("folder", "all", root=folder, cache_dir=cache, **kw)


def test_cache_miss_then_hit_then_invalidation(fake, image_folder, tmp_path):
    cache = tmp_path / "cache"
    first, path, hit = _stats(image_folder, cache)
    assert not hit and fake.calls == 1 and path.is_file() and path.parent == cache
    assert first.meta["num_images"] == 12 and first.meta["image_size"] == 8
    again, path2, hit = _stats(image_folder, cache)
    assert hit and fake.calls == 1 and path2 == path
    np.testing.assert_array_equal(again.sigma, first.sigma)
    np.testing.assert_array_equal(again.features, first.features)

    _, _, hit = _stats(image_folder, cache, force=True)  # forced recompute
    assert not hit and fake.calls == 2

    save_pngs(torch.ones(1, 1, 8, 8), image_folder)  # data changed: 000000.png overwritten
    changed, _, hit = _stats(image_folder, cache)
    assert not hit and fake.calls == 3 and changed.meta["data_sha1"] != first.meta["data_sha1"]

    stale = F.load_stats(path)  # written by another extractor version: recomputed
    stale.meta["extractor"] = "another-network"
    F.save_stats(stale, path)
    _, _, hit = _stats(image_folder, cache)
    assert not hit and fake.calls == 4
    assert json.loads(str(np.load(path)["meta"]))["extractor"] == F.EXTRACTOR_ID


def test_cache_key_separates_subsets_and_resolutions(fake, image_folder, tmp_path):
    cache = tmp_path / "cache"
    _, full, _ = _stats(image_folder, cache)
    sub, part, _ = _stats(image_folder, cache, max_images=5)
    _, big, _ = _stats(image_folder, cache, image_size=16)
    assert len({full, part, big}) == 3 and sub.num_images == 5
    assert "_n5_" in part.name and "16px" in big.name


def test_pytorch_fid_style_stats_file_gives_fid_but_not_kid(fake, tmp_path):
    gen = torch.Generator().manual_seed(1)
    ref, samples = torch.rand(30, 1, 8, 8, generator=gen), torch.rand(20, 1, 8, 8, generator=gen)
    mu, sigma = feature_statistics(fake(ref)[0])
    path = tmp_path / "fid_stats.npz"
    np.savez(path, mu=mu, sigma=sigma)
    out = R.score_samples(samples, path, metrics=["fid"])
    assert out["fid"] == pytest.approx(frechet_distance(*feature_statistics(fake(samples)[0]),
                                                        mu, sigma))
    with pytest.raises(UserError, match="KID needs the reference features"):
        R.score_samples(samples, path, metrics=["fid", "kid"])


def test_score_samples_memoises_reference_tensor(fake):
    gen = torch.Generator().manual_seed(2)
    ref = torch.rand(40, 1, 8, 8, generator=gen)
    out = R.score_samples(torch.rand(30, 1, 8, 8, generator=gen), ref)
    assert set(out) >= {"fid", "kid", "kid_std", "num_samples", "num_reference"}
    assert out["num_samples"] == 30 and out["num_reference"] == 40 and fake.calls == 2
    darker = R.score_samples(ref[:30] * 0.5, ref)  # reference features reused: one more call
    assert fake.calls == 3
    assert darker["fid"] > 5 * out["fid"] and darker["kid"] > 5 * abs(out["kid"])
    with pytest.raises(UserError, match="unknown metric"):
        R.score_samples(ref, ref, metrics=["fid", "precision"])
    for metric in ("fid", "kid"):  # one sample: a clear error, not numpy's or a ValueError
        with pytest.raises(UserError, match=f"{metric.upper()} needs at least 2 samples"):
            R.score_samples(ref[:1], ref, metrics=[metric])


def test_report_prints_count_and_flags_small_runs():
    small = R.format_report({"num_samples": 500.0, "fid": 12.0, "kid": 0.01, "kid_std": 0.001,
                             "kid_subset_size": 250.0}, reference="x", reference_split="train")
    assert "500" in small and "NOT comparable" in small and "KID" in small
    full = R.format_report({"num_samples": 50_000.0, "fid": 12.0}, reference="x",
                           reference_split="train")
    assert "NOT comparable" not in full and "50,000" in full
    assert "'test' split" in R.format_report({"num_samples": 50_000.0}, reference="x",
                                             reference_split="test")


def test_sample_sources_and_their_errors(tmp_path):
    images = torch.rand(5, 3, 6, 6)
    save_npz(images, tmp_path / "s.npz")
    loaded = load_samples(tmp_path / "s.npz")
    assert loaded.shape == (5, 3, 6, 6) and torch.allclose(loaded, images, atol=0.5 / 255 + 1e-6)
    save_pngs(images, tmp_path / "pngs")
    assert torch.equal(load_samples(tmp_path / "pngs", max_images=3), loaded[:3])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        load_samples(tmp_path / "empty")
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 6, 6, 2), np.uint8))
    with pytest.raises(UserError, match="1 or 3 channels"):
        load_samples(tmp_path / "bad.npz")
    with pytest.raises(UserError, match="neither"):
        load_samples(tmp_path / "missing.npz")


def test_generation_is_resumable_and_refuses_mixed_settings(tmp_path, one_thread):
    from ncsn.core.noise import geometric_sigmas
    from ncsn.nets import build_network
    from ncsn.nets.io import save_model

    sigmas = geometric_sigmas(1.0, 0.01, 3)
    section = {"name": "cond_refinenet", "ngf": 4}
    net = build_network(section, channels=1, image_size=8, sigmas=sigmas)
    save_model(tmp_path / "model", net, ModelSpec.from_json({
        "network": section, "channels": 1, "image_size": 8, "sigmas": sigmas.tolist()}))
    out = tmp_path / "shards"
    model = ncsn.load(tmp_path / "model")
    plan = model.plan(n_steps_each=2, step_size=1e-5)
    first = generate_samples(model, plan, out, 6, shard_size=4)
    assert first.shape == (6, 1, 8, 8) and first.min() >= 0 and first.max() <= 1
    assert sorted(p.name for p in out.glob("shard_*.npz")) == ["shard_00000.npz",
                                                               "shard_00001.npz"]
    (out / "shard_00001.npz").unlink()  # interrupted run: the second shard is missing
    with pytest.MonkeyPatch.context() as killed:  # its write, killed midway (kill -9)
        killed.setattr(os, "getpid", lambda: KILLED_PID)
        leftover = files.temp_path(out / "shard_00001.npz")
    leftover.write_bytes(b"half a shard")
    stamp = (out / "shard_00000.npz").stat().st_mtime_ns
    again = generate_samples(model, plan, out, 6, shard_size=4)
    assert torch.equal(again, first)  # same seeds per shard: identical images
    assert not leftover.exists()
    assert (out / "shard_00000.npz").stat().st_mtime_ns == stamp  # existing shard skipped
    with pytest.raises(UserError, match="other settings"):
        generate_samples(model, model.plan(n_steps_each=3, step_size=1e-5), out, 6,
                         shard_size=4)
    # shards record the device type: a rerun on another one would mix random streams
    record = json.loads((out / "settings.json").read_text())
    assert record["device"] == "cpu" and record["sampler"] == "annealed_langevin"
    (out / "settings.json").write_text(json.dumps({**record, "device": "cuda"}))
    with pytest.raises(UserError, match="drawn on cuda"):
        generate_samples(model, plan, out, 6, shard_size=4)


def test_shards_are_keyed_by_the_weights_content_not_their_path(tmp_path, one_thread):
    from ncsn.core.noise import geometric_sigmas
    from ncsn.nets import build_network
    from ncsn.nets.io import save_model

    sigmas = geometric_sigmas(1.0, 0.01, 3)
    section = {"name": "cond_refinenet", "ngf": 4}
    spec = ModelSpec.from_json({"network": section, "channels": 1, "image_size": 8,
                                "sigmas": sigmas.tolist()})
    out = tmp_path / "shards"
    for seed in (0, 1):  # retrained weights written to the same path
        torch.manual_seed(seed)
        save_model(tmp_path / "model", build_network(section, channels=1, image_size=8,
                                                     sigmas=sigmas), spec)
        model = ncsn.load(tmp_path / "model")
        plan = model.plan(n_steps_each=1, step_size=1e-5)
        if seed == 0:
            generate_samples(model, plan, out, 2, shard_size=2)
            record = json.loads((out / "settings.json").read_text())
            assert record["weights"] == "sha256:" + model.spec.provenance["weights_sha256"]
            continue
        with pytest.raises(UserError, match="other settings .*differs in weights"):
            generate_samples(model, plan, out, 2, shard_size=2)


def _digit_model(path):
    """A random-weight model of 28x28 grey digits: ``--metrics digits`` needs no Inception."""
    from ncsn.core.noise import geometric_sigmas
    from ncsn.nets import build_network
    from ncsn.nets.io import save_model

    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.01, 2)
    section = {"name": "cond_refinenet", "ngf": 4}
    save_model(path, build_network(section, channels=1, image_size=28, sigmas=sigmas),
               ModelSpec.from_json({"network": section, "channels": 1, "image_size": 28,
                                    "sigmas": sigmas.tolist()}))
    return path


def _evaluate(model, shards, report=None):
    """``ncsn evaluate --model`` of 5 digits in 3 shards of 2 (one Langevin step per level)."""
    return ["evaluate", "--model", str(model), "--samples-dir", str(shards), "--num-samples", "5",
            "--shard-size", "2", "--steps-each", "1", "--metrics", "digits",
            *(["--json", str(report)] if report else [])]


def test_ranks_share_the_shards_out_into_the_single_process_set(tmp_path, one_thread):
    from test_train_support import run_ranks

    model = _digit_model(tmp_path / "model")
    ranks = _evaluate(model, tmp_path / "ranks", tmp_path / "ranks.json")
    (code0, out0), (code1, out1) = run_ranks([ranks] * 2, tmp_path / "report")
    assert (code0, code1, out1) == (0, 0, "")  # rank 1 draws its shards and says nothing
    assert "5 generated from" in out0 and "sampling: 100%" in out0
    assert main(_evaluate(model, tmp_path / "one", tmp_path / "one.json")) == 0

    def written(name):
        return {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}

    assert list(written("one")) == ["settings.json", "shard_00000.npz", "shard_00001.npz",
                                    "shard_00002.npz"]
    assert written("ranks") == written("one")  # byte for byte
    results = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ranks", "one")]
    assert [r.pop("seconds") > 0 for r in results] == [True, True]
    assert results[0] == results[1] and results[0]["num_samples"] == 5


def test_a_refusal_on_one_rank_stops_both(tmp_path, one_thread):
    from test_train_support import run_ranks

    model = _digit_model(tmp_path / "model")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "shard_00001.npz").write_bytes(b"damaged")  # shard 1 is rank 1's
    (code0, out0), (code1, out1) = run_ranks([_evaluate(model, shards)] * 2, tmp_path / "report")
    assert (code0, code1) == (2, 2)
    assert out1.count("\n") == 1 and "shard_00001.npz is not an .npz file" in out1, out1
    assert "another process of this job stopped with an error" in out0


def test_ranks_that_do_not_share_the_samples_dir_are_refused(tmp_path, one_thread):
    from test_train_support import run_ranks

    model = _digit_model(tmp_path / "model")  # nodes without a shared file system:
    argvs = [_evaluate(model, tmp_path / "node0"), _evaluate(model, tmp_path / "node1")]
    (code0, out0), (code1, _) = run_ranks(argvs, tmp_path / "report")
    assert (code0, code1) == (2, 0)  # rank 0 finds rank 1's shard missing
    assert "lacks shard_00001.npz (1 shard(s)), drawn by another process" in out0, out0
