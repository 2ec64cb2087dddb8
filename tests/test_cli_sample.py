"""``ncsn sample`` / ``ncsn inpaint`` end to end on a tiny random-weight model."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn import files
from ncsn.cli import main
from ncsn.core.noise import geometric_sigmas
from ncsn.imageio import NpzStream, save_pngs
from ncsn.nets import build_network
from ncsn.nets.io import save_model
from ncsn.sampling.inpainting import make_masks
from ncsn.spec.model import ModelSpec
from test_train_support import KILLED_PID

SIZE = 8

ABSENT_GPU = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: never present


def _tiny_model(path, seed=0):
    """A random-weight CondRefineNetDilated on 8x8 grey images, 3 levels, 2 steps each."""
    torch.manual_seed(seed)
    sigmas = geometric_sigmas(1.0, 0.05, 3)
    section = {"name": "cond_refinenet", "ngf": 4}
    net = build_network(section, channels=1, image_size=SIZE, sigmas=sigmas)
    save_model(path, net, ModelSpec.from_json({
        "network": section, "channels": 1, "image_size": SIZE, "sigmas": sigmas.tolist(),
        "sampling": {"n_steps_each": 2, "step_size": 1e-3}}))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def test_sample_pngs_grid_and_gif(model, tmp_path):
    out = tmp_path / "out"
    code = main(["sample", str(model), "-n", "5", "--batch-size", "2", "--out", str(out),
                 "--gif", str(tmp_path / "anneal.gif"), "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        f"{k:06d}.png" for k in range(5)]
    grid = Image.open(out / "grid.png")
    assert grid.size == (3 * (SIZE + 2) + 2, 2 * (SIZE + 2) + 2)  # 5 images, 3 per row
    gif = Image.open(tmp_path / "anneal.gif")
    assert gif.n_frames == 1 + 3 * 2  # initial + every step (6 < 100 frames)


def test_sample_npz_is_reproducible_with_seed(model, tmp_path):
    runs = []
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        assert main(["sample", str(model), "-n", "3", "--batch-size", "2", "--format", "npz",
                     "--seed", str(seed), "--out", str(tmp_path / name), "--no-progress",
                     "--convention", "official", "--final-denoise"]) == 0
        with np.load(tmp_path / name / "samples.npz") as data:
            runs.append(data["images"])
    assert runs[0].shape == (3, SIZE, SIZE, 1) and runs[0].dtype == np.uint8
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("mask", ["right", "lower", "center", "random"])
def test_inpaint_keeps_observed_pixels_exactly(model, tmp_path, mask):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, SIZE, SIZE, generator=g)
    save_pngs(images, tmp_path / "inputs")
    out = tmp_path / "out"
    code = main(["inpaint", str(model), "--images", str(tmp_path / "inputs"), "--mask", mask,
                 "-k", "2", "--batch-size", "4", "--format", "npz", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    with np.load(out / "completions.npz") as data:
        completions, originals, masks = data["images"], data["originals"], data["masks"]
    assert completions.shape == (6, SIZE, SIZE, 1) and masks.shape == (3, SIZE, SIZE)
    observed = masks.astype(bool)
    assert 0 < observed.sum() < observed.size
    for i in range(6):
        np.testing.assert_array_equal(completions[i, ..., 0][observed[i // 2]],
                                      originals[i // 2, ..., 0][observed[i // 2]])
    # rows of the grid: original, masked input, 2 completions
    assert Image.open(out / "grid.png").size == (4 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2)


def test_inpaint_with_mask_image_and_png_output(model, tmp_path):
    img = tmp_path / "x.png"
    save_pngs(torch.rand(1, 1, SIZE, SIZE), tmp_path)
    (tmp_path / "000000.png").rename(img)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, :3] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert main(["inpaint", str(model), "--images", str(img), "--mask",
                 str(tmp_path / "mask.png"), "-k", "3", "--out", str(out), "--no-progress"]) == 0
    original = np.asarray(Image.open(img))
    for k in range(3):
        completion = np.asarray(Image.open(out / "completions" / f"{k:06d}.png"))
        np.testing.assert_array_equal(completion[:, :3], original[:, :3])


def test_masks():
    right = make_masks("right", 1, 4)[0, 0]
    assert right[:, :2].eq(1).all() and right[:, 2:].eq(0).all()
    lower = make_masks("lower", 1, 4)[0, 0]
    assert lower[:2].eq(1).all() and lower[2:].eq(0).all()
    center = make_masks("center", 1, 6, box=2)[0, 0]
    assert center.sum() == 32 and center[2:4, 2:4].eq(0).all()
    rnd = make_masks("random", 4, 64, fraction=0.25, generator=torch.Generator().manual_seed(0))
    assert abs(1 - rnd.mean().item() - 0.25) < 0.02


def test_npz_stream_round_trip(tmp_path):
    data = np.arange(5 * 2 * 2 * 1, dtype=np.uint8).reshape(5, 2, 2, 1)
    stream = NpzStream(tmp_path / "s.npz", "images", data.shape)
    stream.append(data[:3])
    stream.append(data[3:])
    stream.close(extra=np.ones(2))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as loaded:
        np.testing.assert_array_equal(loaded["images"], data)
        np.testing.assert_array_equal(loaded["extra"], np.ones(2))


@pytest.mark.parametrize(("argv", "message"), [
    (["sample", "{model}", "-n", "0", "--out", "{out}"],
     "argument -n/--num-samples: '0': must be >= 1"),
    (["sample", "{tmp}/nope", "--out", "{out}"], "not found"),
    (["inpaint", "{model}", "--images", "{tmp}/none.png", "--out", "{out}"], "cannot read image"),
    (["inpaint", "{model}", "--images", "{tmp}", "--mask", "diagonal", "--out", "{out}"],
     "is not one of right, lower, center, random"),
])
def test_user_mistakes_exit_2_with_one_line(model, tmp_path, capsys, argv, message):
    save_pngs(torch.rand(1, 1, SIZE, SIZE), tmp_path)
    args = [a.format(model=model, out=tmp_path / "o", tmp=tmp_path) for a in argv]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_inpaint_from_dataset_split(model, tmp_path):
    pytest.importorskip("sklearn", reason="digits8 needs scikit-learn (the 'data' extra)")
    out = tmp_path / "out"
    assert main(["inpaint", str(model), "--dataset", "digits8", "--split", "test", "--start",
                 "5", "--num-images", "2", "--mask", "lower", "-k", "1", "--format", "npz",
                 "--out", str(out), "--no-progress"]) == 0
    from ncsn.data import load_dataset

    expected = load_dataset("digits8", "test", image_size=SIZE, channels=1)[5:7]
    with np.load(out / "completions.npz") as data:
        np.testing.assert_array_equal(data["originals"][..., 0], expected[:, 0].numpy())
        np.testing.assert_array_equal(data["images"][:, :4], data["originals"][:, :4])


def test_logit_model_samples_and_inpaints_in_pixel_space(tmp_path):
    sigmas = geometric_sigmas(1.0, 0.05, 2)
    section = {"name": "ncsnv2", "ngf": 4}
    net = build_network(section, channels=1, image_size=SIZE, sigmas=sigmas)
    save_model(tmp_path / "m", net, ModelSpec.from_json({
        "network": section, "channels": 1, "image_size": SIZE, "sigmas": sigmas.tolist(),
        "sampling": {"n_steps_each": 1, "step_size": 1e-3, "logit": True}}))
    save_pngs(torch.rand(1, 1, SIZE, SIZE), tmp_path / "in")
    assert main(["inpaint", str(tmp_path / "m"), "--images", str(tmp_path / "in"), "-k", "2",
                 "--format", "npz", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    with np.load(tmp_path / "o" / "completions.npz") as data:
        np.testing.assert_array_equal(data["images"][:, :, :4], data["originals"][[0, 0], :, :4])


@pytest.mark.parametrize(("sampler", "flags", "updates"), [
    ("predictor_corrector", ["--corrector-steps", "2"], 3 * 3),
    ("probability_flow_ode", [], 3),
    ("consistent_annealed", ["--steps-each", "2"], 3 * 2),
    ("dpm_solver_2m", [], 3),
])
def test_every_on_schedule_sampler_runs_a_discrete_level_network(model, tmp_path, sampler, flags,
                                                                  updates):
    out = tmp_path / sampler
    assert main(["sample", str(model), "-n", "3", "--sampler", sampler, *flags,
                 "--format", "npz", "--out", str(out), "--gif", str(tmp_path / "m.gif"),
                 "--no-progress"]) == 0
    with np.load(out / "samples.npz") as data:
        assert data["images"].shape == (3, SIZE, SIZE, 1)
    assert Image.open(tmp_path / "m.gif").n_frames == 1 + updates


@pytest.mark.parametrize(("argv", "message"), [
    (["--sampler", "probability_flow_ode", "--levels", "7"], "has 3 levels, not 7"),
    (["--sampler", "probability_flow_ode", "--schedule", "karras"], "--schedule model"),
    (["--sampler", "edm"], "between the noise levels"),
    (["--sampler", "probability_flow_ode", "--nfe", "4"], "more than the budget of 4"),
    (["--sampler", "dpm_solver_2m", "--corrector-steps", "2"],
     "--corrector-steps: not a setting of sampler dpm_solver_2m (a setting of "
     "predictor_corrector)"),
    (["--sampler", "predictor_corrector", "--snr", "-1"], "argument --snr: '-1': must be > 0"),
    (["--sampler", "consistent_annealed", "--eta", "auto"], "argument --eta: 'auto'"),
    (["--sampler", "consistent_annealed", "--eta", "0.1"], "eta"),
    (["--device", ABSENT_GPU], f"--device {ABSENT_GPU}"),
    (["--nfe", "0"], "argument --nfe: '0': must be >= 1"),
    (["--steps-each", "1000000"], "more than 100000 (the bound of --nfe)"),
])
def test_sampler_mistakes_are_one_line_errors(model, tmp_path, capsys, argv, message):
    assert main(["sample", str(model), "-n", "2", *argv, "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_out_that_is_a_file_is_refused(model, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    assert main(["sample", str(model), "-n", "1", "--out", str(target), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_a_smaller_set_never_mixes_with_an_earlier_larger_one(model, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["sample", str(model), "--out", str(out), "--no-progress"]
    assert main([*args, "-n", "6"]) == 0
    (out / "samples" / "notes.txt").write_text("mine")
    assert main([*args, "-n", "2"]) == 2
    assert "holds 8 files of an earlier samples set; pass --overwrite" in capsys.readouterr().err
    assert len(list((out / "samples").glob("*.png"))) == 6
    assert main([*args, "-n", "2", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "000000.png", "000001.png", "notes.txt"]  # ncsn's own files replaced, all of them


def test_outputs_are_checked_before_sampling_and_links_never_followed(model, tmp_path, capsys,
                                                                      monkeypatch):
    import ncsn

    calls = []
    monkeypatch.setattr(ncsn, "load", lambda *a, **k: calls.append(a))
    out = tmp_path / "o"
    for extra, message in ((["--gif", str(tmp_path / "anim.png")], "must end with .gif"),
                           (["--gif", str(tmp_path)], "is a folder"),
                           (["--out", "/proc/ncsn"], "cannot write in /proc")):
        assert main(["sample", str(model), "-n", "1", "--out", str(out), *extra,
                     "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert calls == []  # refused before the model was even loaded
    monkeypatch.undo()

    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "000000.png").symlink_to(victim)
    (out / "grid.png").symlink_to(victim)
    assert main(["sample", str(model), "-n", "1", "--out", str(out), "--overwrite",
                 "--no-progress"]) == 0
    assert victim.read_bytes() == b"precious"
    assert Image.open(out / "samples" / "000000.png").size == (SIZE, SIZE)


def test_non_finite_samples_are_an_error_not_black_images(tmp_path, capsys):
    sigmas = geometric_sigmas(1.0, 0.05, 3)
    section = {"name": "cond_refinenet", "ngf": 4}
    net = build_network(section, channels=1, image_size=SIZE, sigmas=sigmas)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))  # a diverged training run's weights
    save_model(tmp_path / "nan", net, ModelSpec.from_json({
        "network": section, "channels": 1, "image_size": SIZE, "sigmas": sigmas.tolist(),
        "sampling": {"n_steps_each": 1, "step_size": 1e-3}}))
    out = tmp_path / "o"
    assert main(["sample", str(tmp_path / "nan"), "-n", "2", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "became NaN or infinite" in err and err.count("\n") == 1
    assert not list(out.glob("**/*.png"))


def test_nfe_budget_sets_steps_per_level_on_the_model_schedule(model, tmp_path, capsys):
    assert main(["sample", str(model), "-n", "1", "--nfe", "10", "--final-denoise",
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    # 3 levels: T = (10 - 1) // 3 = 3 steps each, plus the final denoising step
    assert "10 network evaluations; n_steps_each=3" in capsys.readouterr().out


@pytest.mark.parametrize("sampler", ["annealed_langevin", "predictor_corrector", "dpm_solver_2m"])
def test_inpaint_with_any_sampler_keeps_observed_pixels(model, tmp_path, sampler):
    save_pngs(torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)),
              tmp_path / "in")
    out = tmp_path / "o"
    assert main(["inpaint", str(model), "--images", str(tmp_path / "in"), "--sampler", sampler,
                 "-k", "2", "--format", "npz", "--out", str(out), "--no-progress"]) == 0
    with np.load(out / "completions.npz") as data:
        observed = data["masks"][[0, 0, 1, 1]].astype(bool)
        np.testing.assert_array_equal(data["images"][..., 0][observed],
                                      data["originals"][[0, 0, 1, 1], ..., 0][observed])


def test_samplers_command_lists_the_registry(capsys):
    from ncsn.sampling import SAMPLERS

    assert main(["samplers"]) == 0
    listing = capsys.readouterr().out
    assert all(f"{name}:" in listing for name in SAMPLERS)


def test_sixteen_bit_images_are_read_at_their_full_range(tmp_path):
    from ncsn.imageio import load_image

    values = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_allclose(load_image(tmp_path / "deep.png", channels=1)[0],
                               values / 65535.0, rtol=1e-6)
    assert load_image(tmp_path / "deep.png", channels=3).shape == (3, 2, 2)


def _written(out):
    """Every file of a sample set, by its path in ``out`` (temporary files left by a kill are
    hidden and not part of it)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.endswith(".tmp")}


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_an_interrupted_sample_resumes_to_the_uninterrupted_set(model, tmp_path, capsys,
                                                                 monkeypatch, fmt):
    from ncsn.cli import sample as sample_cli

    args = ["sample", str(model), "-n", "7", "--batch-size", "2", "--seed", "5", "--format",
            fmt, "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    real_add, calls = sample_cli._Output.add, []

    def add_then_stop(self, images, start):
        if len(calls) == 2:  # Ctrl-C after two batches were written
            raise KeyboardInterrupt
        calls.append(start)
        real_add(self, images, start)

    monkeypatch.setattr(sample_cli._Output, "add", add_then_stop)
    out = tmp_path / "cut"
    assert main([*args, "--out", str(out)]) == 130
    monkeypatch.undo()
    assert not (out / "grid.png").exists()
    damaged = out / ("samples/000002.png" if fmt == "png" else ".samples-batches/000002.npy")
    damaged.write_bytes(damaged.read_bytes()[:20])  # batch 1 no longer whole: drawn again
    with monkeypatch.context() as killed:  # what its writes killed midway (kill -9) left
        killed.setattr(os, "getpid", lambda: KILLED_PID)
        leftovers = [files.temp_path(out / "grid.png"), files.temp_path(damaged)]
    for path in leftovers:
        path.write_bytes(b"half a file")
    capsys.readouterr()
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert "(1 of 4 batches were on disk already)" in capsys.readouterr().out
    assert _written(out) == _written(tmp_path / "full")
    assert not (out / ".samples-batches").exists()
    assert not any(path.exists() for path in leftovers)


def test_a_sample_killed_with_sigkill_resumes_to_the_uninterrupted_set(model, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["sample", str(model), "-n", "4", "--batch-size", "1", "--steps-each", "8",
            "--no-progress"]
    child = subprocess.Popen([sys.executable, "-m", "ncsn", *args, "--out", str(tmp_path / "k")],
                             env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "k").glob("samples/*.png"))) < 2:
        assert child.poll() is None, child.communicate()[1].decode()
        assert time.monotonic() < deadline, "sampling never started"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert len(list((tmp_path / "k").glob("samples/*.png"))) < 4
    assert main([*args, "--out", str(tmp_path / "k"), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    assert _written(tmp_path / "k") == _written(tmp_path / "full")


@pytest.mark.parametrize(("other_weights", "change", "differs"), [
    (False, ["--seed", "1"], "seed"),
    (False, ["-n", "5"], "num_samples"),
    (False, ["--sampler", "dpm_solver_2m"], "nfe, sampler, settings"),
    (False, ["--batch-size", "3"], "batch_size"),
    (True, [], "weights"),  # the same network and spec, other weights
])
def test_a_resume_with_other_settings_is_refused(model, tmp_path, capsys, other_weights, change,
                                                 differs):
    out = tmp_path / "o"
    flags = ["-n", "4", "--batch-size", "2", "--out", str(out), "--no-progress"]
    assert main(["sample", str(model), *flags]) == 0
    before = _written(out)
    resumed = _tiny_model(tmp_path / "other", seed=1) if other_weights else model
    capsys.readouterr()
    assert main(["sample", str(resumed), *flags, *change, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"other settings (differs in {differs})" in err, err
    assert _written(out) == before


def test_resume_needs_a_recorded_set_and_excludes_overwrite(model, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["sample", str(model), "-n", "2", "--out", str(out), "--no-progress"]
    assert main([*args, "--resume"]) == 0  # nothing to continue: a fresh set
    assert main([*args, "--resume", "--overwrite"]) == 2
    assert "give --resume (continue the set in --out) or --overwrite" in capsys.readouterr().err
    (out / "samples.json").unlink()  # a set drawn before ncsn recorded its settings
    assert main([*args, "--resume"]) == 2
    assert "without their settings record" in capsys.readouterr().err


def test_ranks_split_the_batches_into_the_single_process_set(model, tmp_path):
    from test_train_support import run_ranks

    args = ["sample", str(model), "-n", "5", "--batch-size", "2", "--format", "npz",
            "--no-progress"]
    codes = run_ranks([[*args, "--out", str(tmp_path / "ranks")]] * 2, tmp_path / "report")
    assert [code for code, _ in codes] == [0, 0]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert _written(tmp_path / "ranks") == _written(tmp_path / "one")


def test_a_second_writer_of_an_out_folder_in_use_is_refused(model, tmp_path, capsys):
    """While another live ncsn process writes --out (its .ncsn-lock), sample, inpaint and
    evaluate --samples-dir refuse it, even with --overwrite or --resume: nothing of its set is
    removed or mixed. A lock whose process is gone is taken over."""
    import json
    import socket
    import subprocess
    import sys

    out = tmp_path / "o"
    sample = ["sample", str(model), "-n", "3", "--out", str(out), "--no-progress"]
    assert main(sample) == 0
    before = _written(out)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / files.LOCK_NAME).write_text(json.dumps({"pid": holder.pid,
                                                       "host": socket.gethostname()}))
        for argv in ([*sample, "--overwrite"], [*sample, "--resume"],
                     ["inpaint", str(model), "--dataset", "digits8", "--num-images", "1",
                      "--out", str(out), "--overwrite", "--no-progress"],
                     ["evaluate", "--model", str(model), "--samples-dir", str(out),
                      "--num-samples", "2", "--metrics", "digits"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"in use by another ncsn process (pid {holder.pid}" in err
            assert err.count("\n") == 1
        assert {k: v for k, v in _written(out).items() if k != files.LOCK_NAME} == before
    finally:
        holder.kill()
        holder.wait()
    assert main([*sample, "--overwrite"]) == 0  # the dead holder's lock is taken over
    assert not (out / files.LOCK_NAME).exists()  # and released at the end


def test_json_nested_too_deeply_is_a_one_line_error(model, tmp_path, capsys):
    """A model spec, a planted lock or a samples.json record nested too deep for Python's
    JSON parser (RecursionError before) is refused or ignored like other malformed JSON."""
    import shutil

    deep = "[" * 100_000 + "]" * 100_000
    stem = tmp_path / "m"
    shutil.copy(model.with_suffix(".safetensors"), stem.with_suffix(".safetensors"))
    stem.with_suffix(".json").write_text(deep)
    assert main(["sample", str(stem), "-n", "1", "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot read model spec" in err and "nested too deeply" in err
    assert err.count("\n") == 1
    out = tmp_path / "b"
    out.mkdir()
    (out / files.LOCK_NAME).write_text(deep)  # unreadable lock: a killed holder's partial write
    assert main(["sample", str(model), "-n", "1", "--out", str(out), "--no-progress"]) == 0
    (out / "samples.json").write_text(deep)
    assert main(["sample", str(model), "-n", "1", "--out", str(out), "--resume",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "samples.json" in err and err.count("\n") == 1


def test_floating_point_images_are_refused_not_read_black(model, tmp_path, capsys):
    """Pillow converts a mode-F image to 8 bits by clipping, so pixels in [0, 1] became black
    (0 or 1 of 255) with exit 0; such a file is refused in one line before any sampling."""
    image = tmp_path / "x.tiff"
    Image.fromarray(np.full((SIZE, SIZE), 0.5, np.float32)).save(image)
    assert main(["inpaint", str(model), "--images", str(image), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "x.tiff: its pixels are floating-point numbers" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_refused_run_removes_nothing_of_the_earlier_set(model, tmp_path, capsys):
    """The label checks ran at the first batch, after --overwrite had removed the earlier set
    (and a fresh --out got a samples.json that blocked the next run): they run before any file
    is touched now, in sample, inpaint and restore."""
    out = tmp_path / "o"
    common = ["--out", str(out), "--no-progress"]
    completion = ["--dataset", "digits8", "--num-images", "1"]
    for argv in (["sample", str(model), "-n", "3"],
                 ["inpaint", str(model), *completion],
                 ["restore", str(model), "--task", "inpaint", *completion]):
        assert main([*argv, *common, "--overwrite"]) == 0
        before = _written(out)
        assert main([*argv, *common, "--overwrite", "--class", "3"]) == 2
        err = capsys.readouterr().err
        assert "not class-conditional" in err and err.count("\n") == 1, err
        assert _written(out) == before
    fresh = tmp_path / "fresh"
    assert main(["sample", str(model), "-n", "1", "--out", str(fresh), "--class", "3",
                 "--no-progress"]) == 2
    assert not fresh.exists()
