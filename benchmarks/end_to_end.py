"""End-to-end throughput and peak memory: image files -> clusters.csv + report.html.

Prints each stage's seconds and share of the whole, images/s per stage and end to end, and the
peak resident memory of the process. Run:
``.venv/bin/python benchmarks/end_to_end.py [--images N] [--source demo|photos] [--descriptors a,b] [--k 2:15]``
The default is what a user gets: N images of the default demo kind, vehiclust's default
descriptors and k grid. ``--source photos`` generates JPEG crops (200-400 px) of scikit-image's
photographs instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import real_photos, variants  # noqa: E402

from vehiclust.cluster import ClusterSettings  # noqa: E402
from vehiclust.pipeline import RunSettings, run_pipeline  # noqa: E402


def make_images(root: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    photos = list(real_photos().values())
    for i in range(count):
        folder = root / f"{i % 200:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        variant: Image.Image = variants(photos[i % len(photos)], 1, rng)[0]
        variant.save(folder / f"{i:06d}.jpg", quality=int(rng.integers(70, 95)))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_demo_images(root: Path, count: int, seed: int = 0) -> Path:
    """The default demo kind (rendered vehicles on backgrounds), ``count`` of them."""
    from vehiclust.demo import build_demo

    return build_demo(root, size=count, seed=seed).root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source", choices=("demo", "photos"), default="demo",
                        help="demo: the default demo kind (vehicles); photos: crops of scikit-image's photographs")
    parser.add_argument("--descriptors", default=None, help="comma-separated; default: vehiclust's defaults")
    parser.add_argument("--k", default=None, help="MIN:MAX; default: vehiclust's default grid")
    args = parser.parse_args()
    from vehiclust.thirdparty import configure_process

    configure_process()  # as the `vehiclust` command does first (state folders, numba's cache)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        if args.source == "demo":
            root = make_demo_images(Path(tmp) / "demo", args.images)
        else:
            make_images(root, args.images)
        cluster = ClusterSettings()
        if args.k:
            k_min, _, k_max = args.k.partition(":")
            cluster = ClusterSettings(k_min=int(k_min), k_max=int(k_max or k_min))
        settings = RunSettings(descriptors=args.descriptors.split(",") if args.descriptors else None,
                               cluster=cluster)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        result = run_pipeline(root, Path(tmp) / "run", settings)
        total = time.perf_counter() - started
        timings = result.run.stage_timings()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        print(f"images: {args.images} ({args.source}), descriptors: {', '.join(result.descriptors)}")
        for stage, seconds in timings.items():
            print(f"  {stage:10s} {seconds:8.2f} s  {seconds / total:5.0%}  {args.images / max(seconds, 1e-9):10.1f} images/s")
        for name in result.descriptors:
            meta = result.run.descriptor_meta(name)
            if "seconds" in meta:
                print(f"  extract {name}: {meta['seconds']:.2f} s, {args.images / meta['seconds']:.1f} images/s")
        print(f"end to end: {total:.2f} s, {args.images / total:.1f} images/s (target for 10,000 demo images: <= 150 s)")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
