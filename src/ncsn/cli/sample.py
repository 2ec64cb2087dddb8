"""``ncsn sample``, ``ncsn inpaint``, ``ncsn restore`` and ``ncsn samplers``: thin shells over
:class:`ncsn.sampling.ScoreModel` (``ncsn.load``), the object the Python API, the trainer's
grids, evaluation and the demo sample through.

Both commands run in batches (memory bounded by ``--batch-size`` for any number of images), show
a progress bar over network evaluations, take every random draw from generators seeded by
``--seed`` (``ncsn sample``: one per batch, so ``--resume`` and ranks draw a batch alone) and
write a grid PNG plus individual PNGs or one ``.npz`` (streamed to disk).
What runs is the model's stored default unless ``--sampler``, ``--nfe``, ``--schedule``,
``--levels``, ``--rho``, ``--sigma-min`` or a sampler setting flag says otherwise. The setting
flags and their help are generated from the samplers' typed settings (:mod:`ncsn.spec.samplers`);
each belongs to the samplers that have that setting (``ncsn samplers`` lists them).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import typing
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic.fields import FieldInfo

from ncsn import files
from ncsn.cli.args import count, finite, fraction, number, positive, seed, sigma, typed
from ncsn.errors import UserError
from ncsn.sampling.restoration import TASKS
from ncsn.spec.samplers import SAMPLER_CLASSES, SAMPLER_SETTINGS, SCHEDULES, setting_owners
from ncsn.spec.values import (
    MAX_BATCH,
    MAX_FRAMES,
    MAX_IMAGE_SIZE,
    MAX_IMAGES,
    MAX_LEVELS,
    MAX_NFE,
    MAX_SCALE,
)

if typing.TYPE_CHECKING:
    from torch import Tensor

    from ncsn.sampling import ScoreModel


def setting_field(name: str) -> FieldInfo:
    """The settings field ``name`` of the first sampler that has it."""
    return SAMPLER_SETTINGS[setting_owners()[name][0]].model_fields[name]


def flag_name(field: str) -> str:
    """A setting's CLI flag: its ``flag`` (e.g. ``--steps-each``) or ``--`` + its dashed name."""
    extra = setting_field(field).json_schema_extra
    flag = extra.get("flag") if isinstance(extra, dict) else None
    return str(flag) if flag else "--" + field.replace("_", "-")


def _flag_label(loc: Sequence[str]) -> str:
    return flag_name(loc[-1]) if loc and loc[-1] in setting_owners() else ".".join(loc)


def _parse_setting(field: str) -> typing.Callable[[str], Any]:
    """argparse type of a setting: validated by the field's own annotation and bounds (so
    ``--eta auto`` or ``--step-size nan`` is refused when parsing, with the field's words)."""
    info = setting_field(field)
    return typed(Annotated[(info.annotation, *info.metadata)], field)


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per sampler setting, with the field's description as help."""
    group = p.add_argument_group("sampler settings (each applies to the samplers that have it)")
    for field, owners in setting_owners().items():
        info = setting_field(field)
        help_text = f"{info.description} [{', '.join(owners)}]"
        if info.annotation is bool:
            group.add_argument(flag_name(field), dest=field, default=None, help=help_text,
                               action=argparse.BooleanOptionalAction)
        elif typing.get_origin(info.annotation) is typing.Literal:
            group.add_argument(flag_name(field), dest=field, help=help_text,
                               choices=typing.get_args(info.annotation))
        else:
            group.add_argument(flag_name(field), dest=field, help=help_text,
                               type=_parse_setting(field))


def add_sampler_args(parser: argparse.ArgumentParser) -> None:
    """--sampler, --nfe, --schedule, --levels, --rho and every sampler-setting flag."""
    p = parser.add_argument_group("sampler (default: the model's own choice)")
    p.add_argument("--sampler", choices=list(SAMPLER_SETTINGS),
                   help="sampling algorithm (default: the model's; see `ncsn samplers`)")
    p.add_argument("--nfe", type=count(MAX_NFE),
                   help="budget of network evaluations per image: sets the number of levels or "
                        "the steps per level")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="noise levels: the model's own, or geometric / Karras (rho) over its "
                        "sigma range (networks conditioned on continuous sigma only)")
    p.add_argument("--levels", type=count(MAX_LEVELS), dest="num_levels",
                   help="number of noise levels")
    p.add_argument("--rho", type=positive, help="Karras schedule exponent (default 7)")
    p.add_argument("--sigma-min", type=sigma,
                   help="lowest level of a geometric / Karras schedule (default: the model's)")
    _add_setting_flags(parser)


def sampler_choices(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling choices of :meth:`ncsn.sampling.ScoreModel.plan` given on the command
    line (a setting of another sampler than the one that runs is refused when planning)."""
    settings = {f: getattr(args, f) for f in setting_owners() if getattr(args, f) is not None}
    return {"sampler": args.sampler, "nfe": args.nfe, "schedule": args.schedule,
            "num_levels": args.num_levels, "rho": args.rho, "sigma_min": args.sigma_min,
            **settings}


def plan_from_args(model: ScoreModel, args: argparse.Namespace) -> Any:
    """The model's sampling plan for the command line's choices (errors name the flags)."""
    return model.plan(label=_flag_label, **sampler_choices(args))


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model .safetensors/.json, their stem, or a run directory")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the images an earlier run wrote into --out (only ncsn's "
                        "grid.png, .npz and numbered PNGs are removed; default: refuse)")
    add_sampler_args(p)
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=count(MAX_BATCH), default=64,
                   help="images per batch (memory bound)")
    p.add_argument("--format", choices=["png", "npz"], default="png",
                   help="individual PNGs (default) or one .npz (uint8 N,H,W,C under 'images')")
    p.add_argument("--grid-max", type=count(MAX_IMAGES), default=64,
                   help="most images in grid.png")
    p.add_argument("--scale", type=count(MAX_SCALE), default=1,
                   help="enlarge grid pixels by this factor")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    c = p.add_argument_group("class-conditional models (network num_classes > 0)")
    c.add_argument("--class", dest="labels", type=_class_choice, metavar="K|balanced|none",
                   help="the class to draw: K, 'balanced' (image i gets class i mod the class "
                        "count; sample's default) or 'none' (the unconditional score; "
                        "inpaint's default)")
    c.add_argument("--guidance-scale", type=finite, dest="guidance",
                   help="classifier-free guidance w >= 0: s(x|y) + w (s(x|y) - s(x)), twice the "
                        "network work per evaluation (default 0); with --classifier the "
                        "classifier's weight (default 1)")


def _class_choice(text: str) -> int | str:
    """``--class``: a class number or one of 'balanced', 'none'."""
    if text in ("balanced", "none"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a class number, 'balanced' or 'none', got {text!r}") from None


def _add_input_args(p: argparse.ArgumentParser) -> None:
    """The model and output flags, the images to complete and the pixel-mask flags."""
    _add_common_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="image files and/or folders of images")
    src.add_argument("--dataset", help="data set name (see ncsn.data.DATASETS)")
    p.add_argument("--split", default="test", help="data set split (default test)")
    p.add_argument("--data-root", help="data set folder (default: the data set's own)")
    p.add_argument("--start", type=count(MAX_IMAGES, minimum=0), default=0,
                   help="first data set image")
    p.add_argument("--num-images", type=count(MAX_IMAGES), default=8,
                   help="data set images to complete")
    p.add_argument("--mask", default="right",
                   help="right | lower | center | random | a mask image file (white = observed)")
    p.add_argument("--fraction", type=fraction, default=0.5,
                   help="random mask: fraction of pixels hidden (default 0.5)")
    p.add_argument("--box", type=count(MAX_IMAGE_SIZE),
                   help="center mask: box side (default half the image)")
    p.add_argument("-k", "--completions", type=count(MAX_IMAGES), default=4,
                   help="completions per image")


def register(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw images from a model",
                       description="Sample N images from a model with any registered sampler "
                                   "(default: the model's own choice; the paper's annealed "
                                   "Langevin dynamics for the paper's models).")
    _add_common_args(p)
    p.add_argument("-n", "--num-samples", type=count(MAX_IMAGES), default=64,
                   help="number of images")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out with the same settings: keep "
                        "the images it wrote (checked) and draw only the missing batches; the "
                        "set equals an uninterrupted run's (each batch draws from its own "
                        "seed)")
    p.add_argument("--gif", help="write the sampling of the first batch as an animated GIF")
    p.add_argument("--gif-frames", type=count(MAX_FRAMES), default=100,
                   help="about this many GIF frames")
    g = p.add_argument_group("classifier guidance (docs/controllable.md)")
    g.add_argument("--classifier", help="noise-conditional classifier stem (ncsn "
                                        "train-classifier) guiding the sampler towards "
                                        "--class K with s + w grad log p(K | x, sigma), w = "
                                        "--guidance-scale (default 1 here)")
    g.add_argument("--classifier-input", choices=["noisy", "denoised"], default="noisy",
                   help="what the classifier sees: the noisy sample x (default) or the model's "
                        "denoised estimate x + sigma^2 s(x, sigma), the gradient through the "
                        "network (a backward pass through it added; helps a weak classifier, "
                        "docs/controllable.md)")
    p.set_defaults(func=run_sample)

    q = sub.add_parser("inpaint", help="complete masked images (paper Algorithm 2)",
                       description="Fill the hidden pixels of images with a sampler that keeps "
                                   "the observed pixels at the current noise level after every "
                                   "step (paper Algorithm 2 for annealed Langevin); observed "
                                   "pixels are kept exactly. grid.png rows: original, masked "
                                   "input, completions.")
    _add_input_args(q)
    q.set_defaults(func=run_inpaint)

    t = sub.add_parser("restore", help="solve a linear inverse problem (inpaint, colorize, "
                                       "super-resolve, denoise, missing frequencies)",
                       description="Sample images given an observation y = M (U x) + s e made "
                                   "from the input images (U an orthonormal basis, M a mask, s "
                                   "the noise std), with a sampler that imposes the observed "
                                   "components at the current noise level after every step "
                                   "(paper Algorithm 2 generalised; docs/controllable.md). "
                                   "grid.png rows: observation, completions, original.")
    _add_input_args(t)
    t.add_argument("--task", required=True, choices=list(TASKS),
                   help="inpaint (--mask), colorize (grey observed), superres (--factor), "
                        "denoise (--noise-std), frequencies (--keep-fraction)")
    t.add_argument("--noise-std", type=number(ge=0), default=None,
                   help="observation noise std (default 0; denoise: 0.2)")
    t.add_argument("--factor", type=count(MAX_IMAGE_SIZE), default=2,
                   help="superres: downsampling factor")
    t.add_argument("--keep-fraction", type=fraction, default=0.25,
                   help="frequencies: share of lowest DCT frequencies observed (default 0.25)")
    t.set_defaults(func=run_restore)

    r = sub.add_parser("samplers", help="list the samplers, their settings and costs",
                       description="The sampler registry: name, cost in network evaluations, "
                                   "prior, default schedule and settings with defaults.")
    r.set_defaults(func=run_samplers)


NUMBERED_PNG = re.compile(r"^\d{6,}\.png$")
NUMBERED_BATCH = re.compile(r"^\d{6,}\.npy$")


def batches_dir(out: Path, name: str) -> Path:
    """Where ``--format npz`` keeps finished batches until they are streamed into the .npz."""
    return out / f".{name}-batches"


def earlier_output(out: Path, name: str) -> list[Path]:
    """What an earlier ``sample``/``inpaint`` wrote into ``out``: ``grid.png``,
    ``<name>.npz``, ``<name>.json`` (the settings record), the numbered ``<name>/NNNNNN.png``
    and the batches of an unfinished .npz (nothing else counts or is removed)."""
    found = [p for p in (out / "grid.png", out / f"{name}.npz", out / f"{name}.json")
             if p.is_file() or p.is_symlink()]
    for folder, numbered in ((out / name, NUMBERED_PNG), (batches_dir(out, name), NUMBERED_BATCH)):
        if folder.is_dir() and not folder.is_symlink():
            found += sorted(p for p in folder.iterdir() if numbered.match(p.name))
    return found


def _out_dir(args: argparse.Namespace, name: str) -> tuple[Path, list[Path]]:
    """``--out`` checked before any work (a writable folder whose ``name`` folder is no link)
    and the earlier output in it that ``--overwrite`` replaces or ``--resume`` continues
    (refused without either: a smaller set over a larger one would leave stale images that an
    evaluation counts)."""
    out = files.check_output_dir(args.out, "--out")
    for folder in (out / name, batches_dir(out, name)):
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UserError(f"--out {out}: {folder} is a link or a file; ncsn writes its images "
                            "into a folder of its own there: remove it or choose another --out")
    earlier = earlier_output(out, name)
    resume = getattr(args, "resume", False)
    if resume and args.overwrite:
        raise UserError("give --resume (continue the set in --out) or --overwrite (replace "
                        "it), not both")
    if earlier and not (args.overwrite or resume):
        more = " or --resume to continue it" if name == "samples" else ""
        raise UserError(f"--out {out} holds {len(earlier)} files of an earlier {name} set; pass "
                        f"--overwrite to replace them (only grid.png, the .npz, the .json and "
                        f"the numbered PNGs of {name}/ are removed){more} or choose another "
                        "--out")
    return out, earlier


def _launch_rank() -> int:
    """torchrun's rank of this process (0 alone); rank 0 holds --out's lock for the job."""
    from ncsn.training.distributed import launch_rank

    return launch_rank()


def _remove(earlier: list[Path]) -> None:
    """Delete the earlier output (``--overwrite``), once every check has passed."""
    for path in earlier:
        path.unlink(missing_ok=True)
    for folder in {p.parent for p in earlier if p.parent.name.endswith("-batches")}:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _remove_partial(out: Path, name: str) -> None:
    """Delete the temporary files that a killed run left in ``out`` and its image folders."""
    for folder in (out, out / name, batches_dir(out, name)):
        files.remove_partial_writes(folder)


def _png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)


class _Output:
    """The images of one set in ``folder``: numbered PNGs in ``folder/name/``, or (``npz``)
    finished batches kept in :func:`batches_dir` until :meth:`close` streams them into
    ``folder/name.npz``. Every file is written atomically, so what is on disk is whole: a
    resumed run keeps the batches :meth:`done` finds and draws the others."""

    def __init__(self, folder: Path, fmt: str, n: int, shape: tuple[int, int, int],
                 name: str, batch_size: int) -> None:
        from ncsn.sampling.pipeline import batch_ranges

        self.folder, self.fmt, self.n, self.shape = folder, fmt, n, shape
        self.ranges = list(batch_ranges(n, batch_size))
        self.png_dir, self.npz = folder / name, folder / f"{name}.npz"
        self.parts = batches_dir(folder, name)

    def _part(self, start: int) -> Path:
        return self.parts / f"{start:06d}.npy"

    def add(self, images: Tensor, start: int) -> None:
        """Write a batch of images in [0, 1] numbered from ``start``."""
        from ncsn.imageio import save_pngs, to_uint8

        if self.fmt == "npz":
            with files.atomic_open(self._part(start), durable=False) as fh:
                np.save(fh, to_uint8(images), allow_pickle=False)
        else:
            save_pngs(images, self.png_dir, start=start)

    def _read(self, start: int, stop: int) -> np.ndarray | None:
        """Images start..stop of one batch as uint8 (N, H, W, C) from disk, or None when any
        is missing or unreadable."""
        from ncsn.imageio import UNREADABLE_IMAGE

        c, h, w = self.shape
        try:
            if self.fmt == "npz":
                arr = np.load(self._part(start), allow_pickle=False)
            else:
                arr = np.stack([_png_pixels(self.png_dir / f"{i:06d}.png")
                                for i in range(start, stop)]).reshape(stop - start, h, w, -1)
        except UNREADABLE_IMAGE:
            return None
        return arr if arr.shape == (stop - start, h, w, c) and arr.dtype == np.uint8 else None

    @functools.cached_property
    def finished(self) -> np.ndarray | None:
        """The images of a complete ``name.npz`` (a run that stopped after writing it)."""
        try:
            with np.load(self.npz, allow_pickle=False) as data:
                arr = data["images"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            return None
        return arr if arr.shape == (self.n, *self.shape[1:], self.shape[0]) else None

    def done(self, batch: int) -> bool:
        """Whether batch ``batch``'s images are on disk, whole and of the right shape."""
        if self.fmt == "npz" and self.finished is not None:
            return True
        return self._read(*self.ranges[batch]) is not None

    def first(self, count: int) -> Tensor:
        """The first ``count`` images read back from disk, (count, C, H, W) in [0, 1]."""
        import torch

        arr = self.finished if self.fmt == "npz" else None
        if arr is None:
            needed = [r for r in self.ranges if r[0] < count]
            arr = np.concatenate([self._read_whole(*r) for r in needed])
        return torch.from_numpy(arr[:count].transpose(0, 3, 1, 2).astype(np.float32) / 255.0)

    def _read_whole(self, start: int, stop: int) -> np.ndarray:
        arr = self._read(start, stop)
        if arr is None:
            raise UserError(f"images {start}..{stop - 1} in {self.folder} went missing or were "
                            "damaged while sampling; run again with --resume")
        return arr

    def close(self, **extra: np.ndarray) -> str:
        """Finish writing; ``extra`` arrays go into the .npz (PNG output: the grid shows them)."""
        from ncsn.imageio import NpzStream

        if self.fmt != "npz":
            return f"{self.png_dir}/"
        if self.finished is None:
            c, h, w = self.shape
            stream = NpzStream(self.npz, "images", (self.n, h, w, c))
            for start, stop in self.ranges:
                stream.append(self._read_whole(start, stop))
            stream.close(**extra)
        for start, _ in self.ranges:
            self._part(start).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.parts.rmdir()
        return str(self.npz)


def load_for(args: argparse.Namespace) -> tuple[ScoreModel, Any]:
    """The model (``ncsn.load``) and its plan for the command line (all checks before work)."""
    import ncsn

    model = ncsn.load(args.model, device=process_device(args.device))
    return model, plan_from_args(model, args)


def process_device(name: str) -> Any:
    """``--device``; under torchrun, ``cuda`` is this process's GPU ``LOCAL_RANK``."""
    import os

    from ncsn.devices import resolve_device

    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        name = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return resolve_device(name, "--device")


def _sample_record(args: argparse.Namespace, model: ScoreModel, plan: Any) -> dict[str, Any]:
    """What decides the images of ``ncsn sample`` (``samples.json``; ``--resume`` must match)."""
    from ncsn.eval.samples import weights_key
    from ncsn.nets.classifier import classifier_stem, load_classifier
    from ncsn.nets.io import file_sha256

    classifier = None
    if args.classifier is not None:
        load_classifier(args.classifier)  # its own refusals first (missing, foreign)
        stem = classifier_stem(args.classifier)
        classifier = "sha256:" + file_sha256(stem.with_suffix(".safetensors"))
    return {"weights": weights_key(model), "num_samples": args.num_samples,
            "batch_size": args.batch_size, "seed": args.seed, "format": args.format,
            "labels": args.labels, "guidance": args.guidance, "classifier": classifier,
            "classifier_input": None if classifier is None else args.classifier_input,
            "device": model.device.type, **plan.record()}


def _start_set(out: Path, earlier: list[Path], record: dict[str, Any], resume: bool) -> None:
    """Check ``--resume`` against the earlier set's record (``samples.json``), or remove the
    earlier set (``--overwrite``) and record this one's settings."""
    path = out / "samples.json"
    if not resume:
        _remove(earlier)
        _remove_partial(out, "samples")
        files.write_json(path, record, sort_keys=True)
        return
    diff = files.compare_record(path, record)
    if diff is None and earlier:
        raise UserError(f"--resume: {out} holds samples without their settings record "
                        f"({path.name}: drawn by an older ncsn?), so they cannot be continued; "
                        "pass --overwrite or choose another --out")
    if diff:
        raise UserError(f"--resume: the samples in {out} were drawn with other settings (differs "
                        f"in {', '.join(diff)}); resume with the model, -n, --seed, "
                        "--batch-size, --format, --device and sampler flags of that run, or "
                        "choose another --out")
    _remove_partial(out, "samples")
    if diff is None:
        files.write_json(path, record, sort_keys=True)


def run_sample(args: argparse.Namespace) -> int:
    """``ncsn sample``: N images in batches -> grid.png + samples/ (PNGs) or samples.npz, and
    their settings in samples.json; ``--resume`` draws only the batches missing in --out.
    Under torchrun each process draws the batches b = rank mod world size (--out shared)."""
    from ncsn.training.distributed import init_distributed, shutdown

    out, earlier = _out_dir(args, "samples")
    with files.writing_in(out, main=_launch_rank() == 0):
        if args.gif is not None:
            files.check_output_file(args.gif, "--gif", suffixes=(".gif",))
        if args.classifier is not None and not isinstance(args.labels, int):
            raise UserError("--classifier guides towards one class: give --class K")
        model, plan = load_for(args)
        record = _sample_record(args, model, plan)
        ranks = init_distributed(model.device)
        try:
            return _sample_set(args, out, earlier, model, plan, record, ranks)
        finally:
            shutdown(ranks)


def _sample_set(args: argparse.Namespace, out: Path, earlier: list[Path], model: ScoreModel,
                plan: Any, record: dict[str, Any], ranks: Any) -> int:
    """This process's batches of ``ncsn sample``; rank 0 writes the grid, .npz and GIF."""
    from ncsn.data import to_pixels
    from ncsn.imageio import save_gif, save_grid
    from ncsn.training.distributed import together

    writer = _Output(out, args.format, args.num_samples, model.image_shape, "samples",
                     args.batch_size)
    assigned = range(ranks.rank, len(writer.ranges), ranks.world_size)
    mine = [b for b in assigned if not (args.resume and writer.done(b))]
    kept = len(assigned) - len(mine)
    gif = args.gif is not None and ranks.is_main
    if gif and mine[:1] != [0]:
        mine.insert(0, 0)  # the GIF records batch 0's sampling: draw it again (same images)
    every = max(1, plan.nfe // args.gif_frames)
    frames: list[Tensor] = []
    seen = {"last": -1, "recorded": -1}

    def record_frame(info: dict[str, Any]) -> None:
        if info["batch_start"] != 0:
            return
        seen["last"] = info["index"]
        if (info["index"] + 1) % every == 0:
            frames.append(to_pixels(info["x"][: args.grid_max], plan.logit).cpu())
            seen["recorded"] = info["index"]

    common = {"plan": plan, "seed": args.seed, "batch_size": args.batch_size,
              "progress": not args.no_progress, "batches": mine,
              "callback": record_frame if gif else None}
    with together(ranks, model.device):  # every argument checked before a file is touched
        if args.classifier is None:
            batches = model.sample_batches(args.num_samples, labels=args.labels,
                                           guidance=args.guidance or 0.0, **common)
        else:
            batches = model.sample_class_batches(
                args.num_samples, args.labels, args.classifier,
                scale=1.0 if args.guidance is None else args.guidance,
                classifier_input=args.classifier_input, **common)
        if ranks.is_main:
            _start_set(out, earlier, record, args.resume)
    with together(ranks, model.device):
        for b, images in zip(mine, batches, strict=True):
            writer.add(images, writer.ranges[b][0])
    if not ranks.is_main:
        return 0
    shown = writer.first(min(args.grid_max, args.num_samples))
    grid = save_grid(shown, out / "grid.png", scale=args.scale)
    written = [str(grid), writer.close()]
    if gif:
        if seen["recorded"] != seen["last"]:
            frames.append(shown[: writer.ranges[0][1]])
        written.append(str(save_gif(frames, args.gif, scale=args.scale)))
    again = f" ({kept} of {len(assigned)} batches were on disk already)" if kept else ""
    print(f"{args.num_samples} samples, {plan.describe()}{again}: wrote {', '.join(written)}")
    return 0


def _fit(image: np.ndarray, size: int, source: str) -> Tensor:
    """(C, H, W) image -> (C, size, size); resizes square images (bilinear, antialiased)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(image)
    if x.shape[-2:] != (size, size):
        if x.shape[-1] != x.shape[-2]:
            raise UserError(f"{source} is {x.shape[-1]}x{x.shape[-2]}; the model takes square "
                            f"{size}x{size} images; crop it first")
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
    return x


def load_inputs(args: argparse.Namespace, channels: int, size: int) -> Tensor:
    """Images to complete, (N, C, S, S) in [0, 1], from files/folders or a data set split."""
    import torch

    from ncsn.imageio import list_images, load_image

    if args.images:
        files: list[Path] = []
        for item in map(Path, args.images):
            files.extend(list_images(item) if item.is_dir() else [item])
        return torch.stack([_fit(load_image(f, channels), size, str(f))
                            for f in files])
    from ncsn.data import load_dataset, to_float

    data = load_dataset(args.dataset, args.split, root=args.data_root, image_size=size,
                        channels=channels)
    if not 0 <= args.start < data.shape[0]:
        raise UserError(f"--start {args.start} is outside the {data.shape[0]} images of "
                        f"{args.dataset}/{args.split}")
    return to_float(data[args.start: args.start + args.num_images])


def _conditioning(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--class`` (default ``none``: the unconditional score) and ``--guidance-scale`` of
    a completion command."""
    return {"labels": args.labels or "none", "guidance": args.guidance or 0.0}


def _write_completions(out: Path, args: argparse.Namespace, n: int,
                       shape: tuple[int, int, int],
                       batches: typing.Iterable[tuple[int, Tensor]]) -> tuple[_Output, Tensor]:
    """Stream the ``--completions`` k per image of ``n`` images that ``batches`` yields
    (start, images) into ``out``; returns the writer and the grid's (shown, k, C, H, W)."""
    k = args.completions
    writer = _Output(out, args.format, n * k, shape, "completions", args.batch_size)
    for start, done in batches:
        writer.add(done, start)
    shown = min(n, args.grid_max)
    return writer, writer.first(shown * k).reshape(shown, k, *shape)


def run_inpaint(args: argparse.Namespace) -> int:
    """``ncsn inpaint``: k completions per image -> grid.png + completions/ or completions.npz.

    Completion j of image i is number i * k + j.
    """
    import torch

    from ncsn.imageio import save_grid, to_uint8

    out, earlier = _out_dir(args, "completions")
    with files.writing_in(out, main=_launch_rank() == 0):
        model, plan = load_for(args)
        channels, size, _ = model.image_shape
        images = load_inputs(args, channels, size)
        masks = model.masks(args.mask, images.shape[0], fraction=args.fraction, box=args.box,
                            seed=args.seed)
        k, n = args.completions, images.shape[0]
        batches = model.inpaint_batches(  # every argument checked before a file is touched
            images, masks, k=k, plan=plan, seed=args.seed, batch_size=args.batch_size,
            progress=not args.no_progress, **_conditioning(args))
        _remove(earlier)
        _remove_partial(out, "completions")
        writer, completions = _write_completions(out, args, n, model.image_shape, batches)
        shown = completions.shape[0]
        masked = images[:shown] * masks[:shown] + 0.5 * (1 - masks[:shown])
        rows = torch.cat([images[:shown, None], masked[:, None], completions], dim=1)
        grid = save_grid(rows.reshape(-1, channels, size, size), out / "grid.png", nrow=k + 2,
                         scale=args.scale)
        saved = writer.close(originals=to_uint8(images), masks=masks[:, 0].to(torch.uint8).numpy())
        print(f"{n} images x {k} completions, {plan.describe()}: wrote {grid}, {saved}")
        return 0


DEFAULT_DENOISE_STD = 0.2


def run_restore(args: argparse.Namespace) -> int:
    """``ncsn restore``: k samples per observation -> grid.png (observation, completions,
    original) + completions/ or completions.npz (with the originals and observations)."""
    import torch

    from ncsn.imageio import save_grid, to_uint8

    out, earlier = _out_dir(args, "completions")
    with files.writing_in(out, main=_launch_rank() == 0):
        model, plan = load_for(args)
        channels, size, _ = model.image_shape
        images = load_inputs(args, channels, size)
        n, k = images.shape[0], args.completions
        noise_std = args.noise_std if args.noise_std is not None else \
            DEFAULT_DENOISE_STD if args.task == "denoise" else 0.0
        operator = model.operator(args.task, n, noise_std=noise_std, factor=args.factor,
                                  keep_fraction=args.keep_fraction, mask=args.mask,
                                  fraction=args.fraction, box=args.box, seed=args.seed)
        y = operator.observe(images, fill=0.5, generator=torch.Generator().manual_seed(args.seed))
        batches = model.restore_batches(  # every argument checked before a file is touched
            y, operator, k=k, plan=plan, seed=args.seed, batch_size=args.batch_size,
            progress=not args.no_progress, **_conditioning(args))
        _remove(earlier)
        _remove_partial(out, "completions")
        writer, completions = _write_completions(out, args, n, model.image_shape, batches)
        shown = completions.shape[0]
        rows = torch.cat([y[:shown, None].clamp(0, 1), completions, images[:shown, None]], dim=1)
        grid = save_grid(rows.reshape(-1, channels, size, size), out / "grid.png", nrow=k + 2,
                         scale=args.scale)
        saved = writer.close(originals=to_uint8(images), observations=to_uint8(y.clamp(0, 1)))
        print(f"{args.task}: {n} images x {k} completions, {plan.describe()}: wrote {grid}, "
              f"{saved}")
        return 0


def samplers_table() -> str:
    """The registry, one block per sampler (``ncsn samplers``)."""
    blocks = []
    for cls in SAMPLER_CLASSES:
        settings = ", ".join(f"{name}={cls.model_fields[name].default}"
                             for name in cls.option_names()) or "none"
        blocks.append(f"{cls.name()}: {cls.summary}: {cls.cost_formula} evaluations for L "
                      f"levels\n    prior {cls.prior}, default schedule {cls.default_schedule}, "
                      f"settings: {settings}")
    return "\n".join(blocks)


def run_samplers(args: argparse.Namespace) -> int:
    """``ncsn samplers``: the registry, one block per sampler."""
    del args
    print(samplers_table())
    return 0
