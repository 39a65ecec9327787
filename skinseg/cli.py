"""Command line: ``python -m skinseg <command> --help``.

Errors in the input (a missing folder, a mask without an image, a checkpoint of another
model, ...) are printed as one line on stderr with exit code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from .atomic import write_text_atomic
from .cli_args import (OneLineParser, device, existing_file, image_side, nonnegative_int, output_file,
                       output_folder, positive_float, positive_int, url, width)
from .config import COMPILE_MODES, MODEL_LABELS, PROFILES, get_profile
from .data import detect_layout
from .data.folders import FOLDERS, describe_folder
from .data.isic import LAYOUTS
from .errors import ConfigError, DataError, SkinsegError
from .lab.leakage import check_held_out, training_record
from .lab.order import EXPERIMENTS
from .lab.protocols import OFFICIAL, PROTOCOLS, dataset_label, load_protocol_split, protocol_pairs
from .lab.variants import VARIANTS, with_variants
from .lock import output_lock
from .outputs import WRITTEN_BY, check_out_of_data, check_outputs, holds_keys, written_by
from .paths import BEST, HISTORY, LAST, default_data_dir, results_dir


def _profile(args, profile=None):
    """``profile`` (default: ``--profile``'s) with the variants and overrides (``--epochs``, ``--width``, ...)
    given on the command line."""
    profile = get_profile(args.profile) if profile is None else profile
    if getattr(args, "variant", None):
        profile = with_variants(profile, args.variant)
    changes = {k: getattr(args, k) for k in ("epochs", "width", "batch_size", "compile", "compile_mode") if getattr(args, k, None) is not None}
    return profile.replace(**changes) if changes else profile


def cmd_download(args) -> None:
    from .data.download import download_dataset
    root = download_dataset(args.year, args.data, base_url=args.base_url, progress=not args.quiet, compact=args.compact,
                            overwrite=args.overwrite)
    print(f"ISIC {args.year} is in {root}" + (" (compact copy: images and masks at 192x256)" if args.compact else ""))


def cmd_train(args) -> None:
    profile = _profile(args)
    check_out_of_data(args.out, [args.data])
    outputs = [args.out / name for name in (BEST, LAST, HISTORY)]

    def check() -> None:  # without last.pt, a best.pt or history.json there is a left-over of another run
        check_outputs(outputs, overwrite=args.overwrite, own=outputs if (args.out / LAST).exists() else [])

    check()  # before any work, and again once the folder is held
    train, val = (load_protocol_split(args.data, split, profile.image_size, protocol=args.protocol,
                                      limit=getattr(profile, f"max_{split}")) for split in ("train", "val"))
    # torch is imported only now, so that bad data is reported at once
    from .device import seed_everything
    from .models import build_model
    from .train import fit
    seed_everything(args.seed)
    model = build_model(args.model, profile.width)
    print(f"{args.model}, {profile.label()}: {len(train)} training images ({train.source}) and {len(val)} "
          f"validation images from {args.data}")
    before = {p: p.stat().st_mtime_ns for p in outputs if p.exists()}
    with output_lock(args.out):
        check()
        history = fit(model, train, val, profile, args.out, seed=args.seed, resume=not args.no_resume,
                      device=args.device, trained_on=training_record(train))
    print(f"best epoch {history.best_epoch}: validation IoU {history.best_val_iou:.4f}")
    for path in outputs:  # only what this call wrote
        if not path.exists():  # best.pt when no epoch had a finite validation IoU
            print(f"{path} was not written", file=sys.stderr)
        else:
            print(f"wrote {path}" if before.get(path) != path.stat().st_mtime_ns else f"kept {path} (unchanged)")


def cmd_evaluate(args) -> None:
    from .checkpoint import load_checkpoint, model_from_state
    from .device import resolve_device
    from .evaluate import evaluate_model, summarize
    from .predict import checkpoint_image_size
    out, summary_path = args.out, args.out.with_suffix(".json")

    def check() -> None:
        check_outputs([out, summary_path], [args.checkpoint], overwrite=args.overwrite,
                      own=[out, summary_path] if written_by(summary_path, "evaluate") else [],
                      input_folders=[args.data, *args.data.glob("*/"), *args.data.glob("*/*/")])

    check()  # before any work, and again once the folder is held
    state = load_checkpoint(args.checkpoint)
    model = model_from_state(state, args.checkpoint, resolve_device(args.device))
    size = tuple(args.image_size) if args.image_size else checkpoint_image_size(state)
    data = load_protocol_split(args.data, args.split, size, protocol=args.protocol, limit=args.limit)
    # LeakageError if the model was trained on these images
    note = check_held_out(state.get("trained_on"), data, model=f"checkpoint {args.checkpoint}")
    print(note)
    with output_lock(out.parent):  # one writer in the folder, as for predict
        check()
        table = evaluate_model(model, data, tta=args.tta, postprocess=args.postprocess)
        summary = summarize(table)
        print(f"{data.source}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in summary.items()))
        write_text_atomic(out, table.to_csv(float_format="%.6f"))
        write_text_atomic(summary_path, json.dumps({"source": data.source, "note": note, **summary,
                                                    WRITTEN_BY: "skinseg evaluate"}, indent=1))
    print(f"wrote {out} and {summary_path}")


def cmd_compare(args) -> None:
    from .lab.result_files import score_column
    from .lab.stats import format_p, paired_comparison
    if args.out:
        check_outputs([args.out], [args.a, args.b], overwrite=args.overwrite,
                      own=[args.out] if written_by(args.out, "compare") else [])
    tables = [score_column(path, args.metric) for path in (args.a, args.b)]
    ids_a, ids_b = set(tables[0].index), set(tables[1].index)
    if ids_a != ids_b:
        only = [f"{len(ids)} only in {path}" + (f" (e.g. {ids[0]})" if ids else "")
                for path, ids in ((args.a, sorted(ids_a - ids_b)), (args.b, sorted(ids_b - ids_a)))]
        raise DataError(f"{args.a} and {args.b} score different images: {', '.join(only)}, {len(ids_a & ids_b)} in "
                        "both; compare tables of the same images")
    result = paired_comparison(*tables, seed=args.seed)
    print(f"{args.metric}: A {result['mean_a']:.4f}, B {result['mean_b']:.4f}, B - A {result['mean_diff']:+.4f} "
          f"[95 % CI {result['ci_low']:+.4f}, {result['ci_high']:+.4f}], Wilcoxon {format_p(result['p_wilcoxon'])}, "
          f"n = {result['n']} images (B better on {result['b_better']}, A on {result['a_better']})")
    if args.out:
        write_text_atomic(args.out, json.dumps({**result, WRITTEN_BY: "skinseg compare"}, indent=1))
        print(f"wrote {args.out}")


def _check_run_folders(args, data: list) -> None:
    """``--out`` and ``--work-dir`` of experiment and sweep are never in a data folder."""
    check_out_of_data(args.out, data)
    if args.work_dir is not None:
        check_out_of_data(args.work_dir, data, "--work-dir")


def cmd_experiment(args) -> None:
    from .lab.experiment import run_experiment
    from .lab.external import parse_external
    profile = _profile(args)  # a budget decides how many runs start, never the epochs
    external = parse_external(args.external)
    _check_run_folders(args, [args.data, *external.values()])
    run_experiment(args.data, args.out, profile, seeds=args.seeds, work_dir=args.work_dir, device=args.device,
                   progress=not args.quiet, time_budget=args.time_budget, protocol=args.protocol,
                   external=external)


def cmd_slice(args) -> None:
    from .device import resolve_device
    from .lab.archive import is_slice_archive
    from .lab.slice import run_slice
    if args.epochs is not None:
        raise ConfigError("slice trains every run for its profile's epochs; --epochs is not accepted")
    check_out_of_data(args.archive.parent, [args.data], "--archive", output=args.archive)
    check_out_of_data(args.work_dir, [args.data], "--work-dir")
    check_outputs([args.archive], overwrite=args.overwrite,
                  own=[args.archive] if is_slice_archive(args.archive) else [])
    profile = None  # each experiment's own recipe
    if args.profile or os.environ.get("SKINSEG_PROFILE"):
        profile = get_profile(args.profile)
    elif resolve_device(args.device).type != "cuda":
        profile = get_profile("smoke")
        print("no --profile or $SKINSEG_PROFILE and no GPU: every experiment runs the smoke profile")
    run_slice(args.data, args.archive, time_budget=args.time_budget, work_dir=args.work_dir, committed=args.committed,
              experiments=args.experiments, profile=profile,
              adjust=functools.partial(_profile, args), device=args.device, progress=not args.quiet)


def cmd_merge(args) -> None:
    from .lab.merge import merge_archive, merge_each
    if (args.into is None) == (args.each_into is None):
        raise ConfigError("give either --into FOLDER (one experiment) or --each-into RESULTS (all of them)")
    if args.each_into is not None:
        merge_each(args.archive, args.each_into)
    else:
        merge_archive(args.archive, args.into, experiment=args.experiment)


def cmd_sweep(args) -> None:
    from .lab.sweep import run_sweep
    _check_run_folders(args, [args.data])
    if args.time_budget is not None and args.epochs is not None:
        raise ConfigError("give either --epochs or --time-budget, not both")
    run_sweep(args.data, args.out, _profile(args), args.variants, model=args.model, seed=args.seed,
              work_dir=args.work_dir, device=args.device, time_budget=args.time_budget, progress=not args.quiet,
              protocol=args.protocol)


def cmd_bench(args) -> None:
    import pandas as pd

    from .device import resolve_device
    from .lab.bench import default_settings, run_benchmark, run_operator_profiles, time_book_tests
    from .lab.bench_results import latest_bench, speedup_table
    from .lab.results import report_frame
    ops_out = args.out.with_name(args.out.stem + "_ops.json")
    outputs = [args.out] + ([ops_out] if args.ops else [])
    check_out_of_data(args.out.parent, output=args.out)
    check_outputs(outputs, overwrite=args.overwrite, own=[p for p, key in ((args.out, "results"), (ops_out, "profiles"))
                                                          if holds_keys(p, "device", "torch", key)])
    profile = _profile(args)
    device = resolve_device(args.device)
    settings = default_settings(device, profile, batch_sizes=tuple(args.batch_sizes),
                                compile_batch_sizes=tuple(args.compile_batch_sizes))
    if args.ops:  # first: a few seconds, and what a run cut short should not lose
        run_operator_profiles(profile, device, settings, out_path=ops_out)
    report = run_benchmark(profile, device, settings, out_path=args.out, steps=args.steps, repeats=args.repeats)
    if args.book:
        report["book_tests"] = time_book_tests()
        print(f"pytest --nbval book: {report['book_tests']['seconds']:.0f} s ({report['book_tests']['summary']})")
        write_text_atomic(args.out, json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    table = speedup_table(latest_bench(report_frame(report, args.out.name)))  # DataError if every setting failed
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(f"\n{report['label']}: each model against its plain step\n" + table.round(2).to_string())


def cmd_synthetic(args) -> None:
    from .lab.synthetic import write_isic_layout
    marker = args.out / ".skinseg-synthetic.json"  # says the folder's images are SYNTHETIC, to be replaced freely
    folders = [args.out / name for split in LAYOUTS[args.year].values() for name in split]
    check_outputs([f for f in folders if f.is_dir() and any(f.iterdir())], overwrite=args.overwrite,
                  own=folders if written_by(marker, "synthetic") else [])
    root = write_isic_layout(args.out, args.year, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed,
                             layout=args.layout)
    write_text_atomic(marker, json.dumps({WRITTEN_BY: "skinseg synthetic", "year": args.year}))
    print(f"wrote SYNTHETIC ISIC {args.year} layout ({args.layout}) to {root}")


def cmd_predict(args) -> None:
    from .predict import predict
    table = predict(args.checkpoint, args.inputs, args.out, image_size=args.image_size, device=args.device,
                    tta=args.tta, postprocess=args.postprocess, psi=args.psi, batch_size=args.batch_size,
                    progress=not args.quiet, overwrite=args.overwrite)
    kinds = f"{len(table)} masks, {len(table)} overlays" + (f", {len(table)} ψ pictures" if args.psi else "")
    print(f"wrote {kinds} and predictions.csv to {args.out}")


def cmd_info(args) -> None:
    year = detect_layout(args.data)
    if year == FOLDERS and args.protocol == OFFICIAL:
        print(describe_folder(args.data))
        return
    counts = ", ".join(f"{s} {len(protocol_pairs(args.data, s, year, args.protocol))}" for s in ("train", "val", "test"))
    print(f"{dataset_label(args.data, year, args.protocol)} in {args.data}: {counts}")


SHARED = {  # the options that several commands take, with one meaning
    "--data": dict(type=Path, help="dataset folder in the official ISIC layout, or images/ + masks/ (skinseg.data."
                                   "folders) (default: $SKINSEG_DATA or ../shared/data/isic2017)"),
    "--protocol": dict(choices=PROTOCOLS, default=OFFICIAL,
                       help="which images form train/val/test: official (the folder's own splits) or isic2016-"
                            "replica (the article's ISIC 2016 splits rebuilt from an ISIC 2017 folder; skinseg.lab."
                            "protocols)"),
    "--model": dict(choices=tuple(MODEL_LABELS), default="unet"),
    "--seed": dict(type=nonnegative_int, default=0),
    "--year": dict(choices=("2016", "2017"), default="2017"),
    "--checkpoint": dict(type=existing_file, required=True),
    "--image-size": dict(type=image_side, nargs=2, metavar=("H", "W"),
                         help="the model's input (default: the size the checkpoint was trained at, else 192 256)"),
    "--tta": dict(choices=("none", "flip", "d4"), default="none"),
    "--postprocess": dict(action="store_true", help="keep the largest region, holes filled"),
    "--overwrite": dict(action="store_true", help="replace existing output files that another command (or you) "
                                                  "wrote; inputs are never replaced"),
    "--quiet": dict(action="store_true", help="no progress bar"),
    "--variant": dict(nargs="+", choices=list(VARIANTS), metavar="NAME",
                      help=f"train with the changes of these variants of the recipe, among {', '.join(VARIANTS)} "
                           "(skinseg.lab.variants.VARIANTS; 'python -m skinseg sweep' recommends one); --epochs, "
                           "--batch-size and the like still override them"),
    "--profile": dict(choices=sorted(PROFILES),
                      help="recipe (default: full on CUDA, smoke on CPU, or $SKINSEG_PROFILE)"),
    "--epochs": dict(type=positive_int, help="override the profile's number of epochs"),
    "--width": dict(type=width, help="override the base channels (64 = the article's network)"),
    "--batch-size": dict(type=positive_int, help="override the batch size"),
    "--compile": dict(choices=("auto", "on", "off"), help="torch.compile (auto = on CUDA only)"),
    "--compile-mode": dict(choices=COMPILE_MODES, help="torch.compile mode; reduce-overhead also uses CUDA graphs"),
    "--device": dict(type=device, help="cuda, cpu, ... (default: cuda when available)"),
}
PROFILE_OPTIONS = ("--profile", "--epochs", "--width", "--batch-size", "--compile", "--compile-mode", "--device")


def _add(p: argparse.ArgumentParser, *flags: str, **helps: str) -> None:
    """Add the :data:`SHARED` options ``flags`` to ``p``; ``helps`` gives other help texts by dest (``batch_size=``)."""
    for flag in flags:
        dest = flag.removeprefix("--").replace("-", "_")
        p.add_argument(flag, **{**SHARED[flag], **({"help": helps[dest]} if dest in helps else {})})


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m skinseg", description="U-Net and Attention U-Net for skin-lesion segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str, *flags: str, **helps: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        _add(p, *flags, **helps)
        return p

    def run_options(p: argparse.ArgumentParser, out: Path, out_help: str) -> None:
        """What the experiment and the sweep share: output and checkpoint folders, a time budget, the recipe."""
        p.add_argument("--out", type=output_folder, default=results_dir() / out.name,
                       help=f"{out_help} (default: $SKINSEG_RESULTS/{out.name}, else {out} of this repository)")
        p.add_argument("--work-dir", type=output_folder, help="folder for checkpoints (default runs/<out name>)")
        p.add_argument("--time-budget", type=positive_float, metavar="SECONDS",
                       help="experiment: start only the whole runs whose expected time fits (the epochs stay the "
                            "profile's); sweep: measure the training speed and train as many epochs as fit")
        _add(p, "--quiet", *PROFILE_OPTIONS)

    p = command("download", cmd_download, "download and extract the official ISIC task-1 archives", "--year", "--quiet")
    p.add_argument("--data", type=output_folder, help="target folder (default: data/isic<year>)")
    p.add_argument("--base-url", type=url, help="a mirror that serves the archives under their official file names")
    p.add_argument("--compact", action="store_true",
                   help="store images and masks at the models' input size (192x256), skip the superpixel files and "
                        "delete each archive once extracted: tens of MB instead of several GB, for Colab")
    p.add_argument("--overwrite", action="store_true", help="let --compact replace a full copy in --data")

    command("info", cmd_info, "count the image/mask pairs of a dataset folder", "--data", "--protocol")

    p = command("train", cmd_train, "train one model (resumes from OUT/last.pt)", "--model", "--data", "--protocol",
                "--seed", *PROFILE_OPTIONS, "--variant", "--overwrite")
    p.add_argument("--out", type=output_folder, default=Path("runs/train"), help="folder for checkpoints and history.json")
    p.add_argument("--no-resume", action="store_true", help="start again even if OUT/last.pt exists")

    p = command("evaluate", cmd_evaluate, "per-image metrics of a checkpoint on a split", "--checkpoint", "--data",
                "--protocol", "--image-size", "--tta", "--postprocess", "--overwrite", "--device")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--limit", type=positive_int, help="only the first N images")
    p.add_argument("--out", type=output_file, default=Path("runs/evaluate/per_image.csv"))

    p = command("predict", cmd_predict, "lesion masks and overlays of your own images, at their original size",
                "--checkpoint", "--image-size", "--tta", "--postprocess", "--overwrite", "--device", "--quiet")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
                   help="image files, or folders whose images (.jpg, .png, .bmp, .tif) are all read")
    p.add_argument("--out", type=output_folder, default=Path("runs/predict"),
                   help="folder for <id>_mask.png, <id>_overlay.png (and <id>_psi.png) and predictions.csv")
    p.add_argument("--psi", action="store_true", help="Attention U-Net only: also a picture of the four gates' ψ maps")
    p.add_argument("--batch-size", type=positive_int, default=8)

    p = command("compare", cmd_compare, "paired comparison of two per-image tables (B - A)", "--seed", "--overwrite",
                seed="bootstrap seed")
    p.add_argument("a", type=Path, help="per-image CSV of model A")
    p.add_argument("b", type=Path, help="per-image CSV of model B")
    p.add_argument("--metric", default="iou")
    p.add_argument("--out", type=output_file, help="also write the result as JSON")

    p = command("experiment", cmd_experiment, "both models x several seeds: every artifact the book shows", "--data",
                "--protocol", "--variant")
    run_options(p, Path("results/isic2017"), "folder for the small result files")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", help="default: the profile's seeds")
    p.add_argument("--external", nargs="+", metavar="NAME=FOLDER", default=[],
                   help="external test sets (generic images/ + masks/ or ISIC folders): every finished run is "
                        "scored on their test split, which never selects anything")

    p = command("slice", cmd_slice, "one GPU slice: the next whole runs of the fixed order that fit, packed into one "
                "archive", "--data", "--quiet", *PROFILE_OPTIONS, "--variant",
                data=SHARED["--data"]["help"] + "; every experiment reads it, the replica through its protocol",
                profile="one recipe for every experiment (default: $SKINSEG_PROFILE, else each experiment's own on "
                        "a GPU and smoke on a CPU)")
    p.add_argument("--archive", type=output_file, required=True, help="the .tgz to write (runs and manifest)")
    p.add_argument("--overwrite", action="store_true", help="replace an --archive file that slice did not write")
    p.add_argument("--time-budget", type=positive_float, metavar="SECONDS",
                   help="start a run only if its expected time fits what is left (default: run them all)")
    p.add_argument("--work-dir", type=output_folder, default=Path("runs/slice"),
                   help="folder for the slice's results and checkpoints (default runs/slice)")
    p.add_argument("--committed", type=Path, help="the results folder whose finished runs are skipped "
                   "(default: results/ of this repository)")
    p.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), metavar="NAME",
                   help=f"only these of {', '.join(EXPERIMENTS)} (default: all, in the order of skinseg.lab.order.SLICE_ORDER)")

    p = command("merge", cmd_merge, "add the finished runs of a slice archive to a results folder")
    p.add_argument("archive", type=Path, help="a .tgz written by 'python -m skinseg slice'")
    p.add_argument("--into", type=output_folder, help="the results folder of one experiment, e.g. results/isic2017")
    p.add_argument("--experiment", help="with --into: which of the archive's experiments (default: the one named like it)")
    p.add_argument("--each-into", type=output_folder, metavar="RESULTS",
                   help="merge every experiment of the archive into RESULTS/<experiment>, e.g. results")

    p = command("sweep", cmd_sweep, "compare recipe variants on the validation set (never the test set)", "--data",
                "--protocol", "--model", "--seed")
    run_options(p, Path("results/sweep"), "folder for sweep.json")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="NAME",
                   help=f"among {', '.join(VARIANTS)} (default: all; baseline is always included)")

    p = command("bench", cmd_bench, "training-step throughput benchmark", "--overwrite", *PROFILE_OPTIONS)
    p.add_argument("--out", type=output_file, default=Path("results/bench.json"))
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[16, 32, 64])
    p.add_argument("--compile-batch-sizes", type=positive_int, nargs="*", default=[16])
    p.add_argument("--steps", type=positive_int, default=10)
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--book", action="store_true", help="also time 'pytest --nbval book' (run from the repository root)")
    p.add_argument("--ops", action="store_true",
                   help="first profile the operators of each model's plain step (written to OUT_ops.json)")

    p = command("synthetic", cmd_synthetic, "write a SYNTHETIC dataset in an official ISIC layout (demo, tests)",
                "--overwrite", "--year", "--seed", overwrite="replace the files of a folder that synthetic did not "
                                                             "write (real images would be lost)")
    p.add_argument("--out", type=output_folder, default=Path("data/synthetic"))
    p.add_argument("--n-train", type=positive_int, default=64)
    p.add_argument("--n-val", type=positive_int, default=16)
    p.add_argument("--n-test", type=positive_int, default=16)
    p.add_argument("--layout", choices=("compact", "official"), default="compact",
                   help="compact: 192x256 images (like a resized copy); official: as the official archives extract (varied original sizes, superpixels and metadata beside the images, ISIC-style ids)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "data") and args.data is None:
        args.data = Path(f"data/isic{args.year}") if args.command == "download" else default_data_dir()
    try:
        args.func(args)
    except SkinsegError as err:
        print(f"skinseg {args.command}: error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    except OSError as err:  # a file or folder the system refused (permissions, a full disk, ...)
        where = f" ({err.filename})" if err.filename else ""
        print(f"skinseg {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skinseg {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
