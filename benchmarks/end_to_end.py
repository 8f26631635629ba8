"""End-to-end throughput and peak memory: image files -> clusters.csv + report.html.

Prints images/s per stage and for the whole path, and the peak resident memory of the process.
Run: ``.venv/bin/python benchmarks/end_to_end.py [--images N] [--descriptors efficientnet_lite0]``
It generates N JPEG crops (200-400 px, from scikit-image's photographs) in a temp folder.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--descriptors", default="efficientnet_lite0")
    parser.add_argument("--k", default="2:15")
    args = parser.parse_args()
    k_min, _, k_max = args.k.partition(":")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_images(root, args.images)
        settings = RunSettings(descriptors=args.descriptors.split(","),
                               cluster=ClusterSettings(k_min=int(k_min), k_max=int(k_max or k_min)))
        started = time.perf_counter()
        result = run_pipeline(root, Path(tmp) / "run", settings)
        total = time.perf_counter() - started
        timings = result.run.stage_timings()
        print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
        print(f"images: {args.images}, descriptors: {args.descriptors}")
        for stage, seconds in timings.items():
            print(f"  {stage:10s} {seconds:8.2f} s  {args.images / max(seconds, 1e-9):10.1f} images/s")
        for name in settings.descriptors:
            meta = result.run.descriptor_meta(name)
            print(f"  extract {name}: {meta['seconds']:.2f} s, {args.images / meta['seconds']:.1f} images/s")
        print(f"end to end: {total:.2f} s, {args.images / total:.1f} images/s")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
