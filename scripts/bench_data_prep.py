"""Benchmark of the Colab data preparation: download, check and compact the ISIC 2017 archives.

Builds SYNTHETIC archives in the official ISIC 2017 layout (six zips, images at the sizes of
the real archives, JPEG quality 95, a full-size ``*_superpixels.png`` beside every image, a
metadata CSV per image folder), serves them from 127.0.0.1 and runs
``download_dataset("2017", ..., compact=True)`` on them, as Colab's first cell does. It prints
the seconds spent in each stage and writes them as JSON:

* ``download``: the HTTP transfers (``_stream``);
* ``check``: the separate whole-archive CRC pass (``check_zip``), where there is one;
* ``decode``: reading members from the zips, decoding and resizing (the rest of ``compact_extract``);
* ``write``: writing the compact files in the parent process and moving them into place;
* ``total``: the whole call; ``local`` = total - download (everything except the network);
* ``cpu``: CPU seconds of this process and its decoding processes during the call, which
  other work on a shared machine changes less than the wall-clock seconds above.

Each stage's median over ``--repeats`` runs is reported. Per-image figures are scaled to ISIC 2017's 2,750 images. The synthetic archives are cached
in ``--cache`` (default: the system's temporary folder) so that runs before and after a
change read the same bytes.

Usage::

    PYTHONPATH=$PWD python scripts/bench_data_prep.py --out results/bench_cpu/data_prep_after
"""
from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from datetime import datetime, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from skinseg.data import download as dl
from skinseg.data.isic import LAYOUTS

ISIC2017_IMAGES = 2750
# (W, H) of images in the official archives, with the share of each in the synthetic set.
# The shares are an assumption (the real distribution is not published per size); they give
# about 4 MB per image with its superpixels, close to the 13 GB / 2,750 images of ISIC 2017.
SIZE_MIX = [((1022, 767), 0.30), ((1504, 1129), 0.10), ((3008, 2000), 0.25), ((4288, 2848), 0.25),
            ((6688, 4439), 0.10)]
SPLIT_COUNTS = {"train": 32, "val": 4, "test": 12}
ARCHIVE_NAMES = {"train": ("ISIC-2017_Training_Data.zip", "ISIC-2017_Training_Part1_GroundTruth.zip"),
                 "val": ("ISIC-2017_Validation_Data.zip", "ISIC-2017_Validation_Part1_GroundTruth.zip"),
                 "test": ("ISIC-2017_Test_v2_Data.zip", "ISIC-2017_Test_v2_Part1_GroundTruth.zip")}


def _sizes(n: int) -> list[tuple[int, int]]:
    """``n`` (W, H) sizes in the proportions of SIZE_MIX, interleaved."""
    counts = [round(share * n) for _, share in SIZE_MIX]
    counts[0] += n - sum(counts)
    sizes = [size for (size, _), c in zip(SIZE_MIX, counts) for _ in range(c)]
    return [sizes[i] for i in np.random.default_rng(0).permutation(n)]


def _photo(w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A skin-like RGB photo ``(h, w, 3)`` uint8 (smooth shading, a dark textured lesion, sensor
    noise, so that JPEG sizes are like real photos') and its 0/255 lesion mask ``(h, w)``."""
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    cx, cy, rx, ry = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.5)
    r = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    lesion = r < 1
    shade = 1 - 0.25 * (xx ** 2 + yy ** 2)
    texture = np.sin(xx * rng.uniform(20, 60)) * np.cos(yy * rng.uniform(20, 60))
    image = np.empty((h, w, 3), np.uint8)
    for c, (skin, spot) in enumerate(((215, 110), (170, 70), (150, 55))):
        channel = np.where(lesion, spot + 18 * texture, skin * shade)
        channel += rng.integers(-18, 19, size=(h, w), dtype=np.int16)
        image[..., c] = np.clip(channel, 0, 255).astype(np.uint8)
    return image, lesion.astype(np.uint8) * 255


def _superpixels(w: int, h: int) -> np.ndarray:
    """A stand-in superpixel label image ``(h, w, 3)`` uint8: blocks of about 1/40 of the width."""
    step = max(w // 40, 8)
    labels = (np.arange(h)[:, None] // step) * (w // step + 1) + np.arange(w)[None, :] // step
    return np.stack([labels % 256, labels // 256, np.zeros_like(labels)], -1).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def split_counts(images: int) -> dict[str, int]:
    """``images`` shared among the splits as in :data:`SPLIT_COUNTS` (2/3 train, 1/12 val, 1/4 test)."""
    total = sum(SPLIT_COUNTS.values())
    counts = {split: max(1, round(images * n / total)) for split, n in SPLIT_COUNTS.items() if split != "train"}
    return {"train": images - sum(counts.values()), **counts}


def build_archives(folder: Path, images: int = sum(SPLIT_COUNTS.values())) -> dict:
    """Write the six synthetic ISIC 2017 zips of ``images`` images into ``folder`` (skipped when
    archives of that many images are already there)."""
    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text())["images"] == images:
        return json.loads(manifest.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    sizes = _sizes(images)
    rng = np.random.default_rng(1)
    k = 0
    for split, n in split_counts(images).items():
        data_dir, truth_dir = LAYOUTS["2017"][split]
        data_zip, truth_zip = ARCHIVE_NAMES[split]
        # Deflated, as zip tools store files by default.
        with zipfile.ZipFile(folder / data_zip, "w", zipfile.ZIP_DEFLATED) as zd, \
                zipfile.ZipFile(folder / truth_zip, "w", zipfile.ZIP_DEFLATED) as zt:
            rows = ["image_id,age_approximate,sex"]
            for _ in range(n):
                stem = f"ISIC_{12000 + 13 * k:07d}"
                w, h = sizes[k]
                image, mask = _photo(w, h, rng)
                zd.writestr(f"{data_dir}/{stem}.jpg", _encode(Image.fromarray(image), "JPEG", quality=95))
                zd.writestr(f"{data_dir}/{stem}_superpixels.png",
                            _encode(Image.fromarray(_superpixels(w, h)), "PNG", compress_level=6))
                zt.writestr(f"{truth_dir}/{stem}_segmentation.png", _encode(Image.fromarray(mask), "PNG"))
                rows.append(f"{stem},{5 * (k % 17)},{'female' if k % 2 else 'male'}")
                k += 1
            zd.writestr(f"{data_dir}/{data_dir}_metadata.csv", "\n".join(rows) + "\n")
    info = {"images": k, "sizes_wh": [list(s) for s in sizes],
            "archive_bytes": {p.name: p.stat().st_size for p in sorted(folder.glob("*.zip"))}}
    manifest.write_text(json.dumps(info, indent=1))
    return info


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Stages:
    """Wall-clock seconds per stage, collected by wrapping the downloader's functions."""

    def __init__(self) -> None:
        self.seconds = {"download": 0.0, "check": 0.0, "extract": 0.0, "write": 0.0}
        self._saved: list[tuple[object, str, object]] = []

    def wrap(self, owner, name: str, stage: str) -> None:
        if not hasattr(owner, name):
            return
        original = getattr(owner, name)
        seconds = self.seconds

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start
        self._saved.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)


def run(archives: Path, work: Path, workers: int | None) -> dict:
    handler = functools.partial(_Quiet, directory=str(archives))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stages = Stages()
    stages.wrap(dl, "_stream", "download")
    stages.wrap(dl, "check_zip", "check")
    stages.wrap(dl, "compact_extract", "extract")
    for name in ("_move_into_place", "_write_output"):
        stages.wrap(dl, name, "write")
    stages.wrap(Image.Image, "save", "write")  # where the parent process encodes and writes the files itself
    kwargs = {"workers": workers} if workers is not None and "workers" in dl.download_dataset.__code__.co_varnames else {}
    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    try:
        cpu_start, start = cpu(), time.perf_counter()
        dl.download_dataset("2017", work, base_url=f"http://127.0.0.1:{server.server_address[1]}",
                            progress=False, compact=True, **kwargs)
        total, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
    finally:
        stages.restore()
        server.shutdown()
        server.server_close()
    s = stages.seconds
    return {"download": s["download"], "check": s["check"], "decode": s["extract"] - s["write"],
            "write": s["write"], "total": total, "local": total - s["download"], "cpu": cpu_seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix (.json and .txt)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "skinseg-bench-data-prep")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (where supported)")
    parser.add_argument("--repeats", type=int, default=3, help="runs; each stage's median is reported")
    parser.add_argument("--images", type=int, default=sum(SPLIT_COUNTS.values()),
                        help="images in the synthetic archives (default %(default)s; ISIC 2017 has 2,750)")
    args = parser.parse_args(argv)
    if args.images < 3:
        parser.error(f"--images must be at least 3 (one per split), got {args.images}")
    t0 = time.perf_counter()
    info = build_archives(args.cache / "archives", args.images)
    built = time.perf_counter() - t0
    runs = []
    for _ in range(args.repeats):
        work = Path(tempfile.mkdtemp(prefix="bench-data-prep-"))
        try:
            runs.append(run(args.cache / "archives", work / "isic2017", args.workers))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    seconds = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    n = info["images"]
    total_bytes = sum(info["archive_bytes"].values())
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "data": f"SYNTHETIC ISIC 2017 official layout: {n} images, sizes {[f'{w}x{h}' for (w, h), _ in SIZE_MIX]} "
                f"(W x H), JPEG q95, superpixel PNGs, {total_bytes / 1e6:.0f} MB in 6 zips",
        "images": n, "archive_bytes": total_bytes, "seconds_to_build_archives": round(built, 1),
        "repeats": args.repeats,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "seconds_of_each_run": [{k: round(v, 2) for k, v in r.items()} for r in runs],
        "seconds_per_image": {k: round(v / n, 4) for k, v in seconds.items()},
        "isic2017_minutes_scaled": {k: round(v / n * ISIC2017_IMAGES / 60, 1) for k, v in seconds.items()},
        "mb_per_s_download_localhost": round(total_bytes / 1e6 / max(seconds["download"], 1e-9), 1),
    }
    lines = [f"data preparation benchmark, {report['date']}, {report['machine']}",
             report["data"],
             f"{'stage':<10}{'seconds':>10}{'s/image':>10}{'ISIC 2017 (2,750 images), min':>33}"]
    for k, v in seconds.items():
        lines.append(f"{k:<10}{v:>10.2f}{v / n:>10.4f}{v / n * ISIC2017_IMAGES / 60:>33.1f}")
    lines.append(f"medians of {args.repeats} runs; local of each run: " + ", ".join(f"{r['local']:.2f}" for r in runs)
                 + " s; download is from 127.0.0.1 (no network); local = total - download; "
                 f"1-min load average after the runs: {report['load_average_1min_after']}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".txt").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
