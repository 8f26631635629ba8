"""End-to-end throughput and peak memory: image files -> clusters.csv + report.html.

Prints each stage's seconds and share of the whole, images/s per stage and end to end, and the
peak resident memory of the process. Run:
``.venv/bin/python benchmarks/end_to_end.py [--images N] [--source demo|photos] [--descriptors a,b] [--k 2:15]``
The default is what a user gets: N images of the default demo kind, vehiclust's default
descriptors and k grid. ``--source photos`` generates JPEG crops (200-400 px) of scikit-image's
photographs instead.

``--demo`` times what ``make run`` runs (``vehiclust demo``, the default demo, its collection
built or reused from the user cache) in a fresh run folder: each stage, the demo's own steps
around the pipeline, and the rest of the process (imports):
``.venv/bin/python benchmarks/end_to_end.py --demo``
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

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


class Clock:
    """Seconds spent in each wrapped function (summed over its calls)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, attribute, timed)


def demo_benchmark(out: Path | None) -> None:
    """``vehiclust demo`` as ``make run`` runs it, with every part of its wall time."""
    import vehiclust.demo
    import vehiclust.demo_run
    from vehiclust.thirdparty import configure_process

    configure_process()
    imported = time.perf_counter() - PROCESS_STARTED
    clock = Clock()
    clock.wrap(vehiclust.demo, "build_demo", "demo collection (build or reuse)")
    clock.wrap(vehiclust.demo_run, "run_pipeline", "pipeline")
    clock.wrap(vehiclust.demo_run, "report_folder", "report, the full pass")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = out or Path(tmp) / "run"
        started = time.perf_counter()
        result = vehiclust.demo_run.run_demo(run_dir)
        total = time.perf_counter() - started
        stages = result.run.stage_timings()
        parts = result.run.stage_record("report").get("parts", {})
    pipeline = clock.seconds.pop("pipeline")
    order = ("ingest", "describe", "cluster", "compare", "outliers")
    in_pipeline = {name: stages[name] for name in order if name in stages}
    in_pipeline["report, the pipeline's pass (clusters.csv)"] = pipeline - sum(in_pipeline.values())
    rows = {"imports (before the run)": imported, **in_pipeline, **clock.seconds}
    rows["scores, contact sheet, the rest"] = total - pipeline - sum(clock.seconds.values())
    whole = total + imported
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    for name, seconds in rows.items():
        print(f"  {name:45s} {seconds:8.2f} s  {seconds / whole:5.0%}")
    print("  report parts (full pass): " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()))
    print(f"vehiclust demo: {whole:.1f} s in this process (target for `make run` with .venv present: <= 240 s)")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="time `vehiclust demo` (what `make run` runs), part by part")
    parser.add_argument("--out", type=Path, default=None, help="--demo: the run folder (default: a temporary one)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source", choices=("demo", "photos"), default="demo",
                        help="demo: the default demo kind (vehicles); photos: crops of scikit-image's photographs")
    parser.add_argument("--descriptors", default=None, help="comma-separated; default: vehiclust's defaults")
    parser.add_argument("--k", default=None, help="MIN:MAX; default: vehiclust's default grid")
    args = parser.parse_args()
    if args.demo:
        demo_benchmark(args.out)
        return
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
        parts = result.run.stage_record("report").get("parts", {})
        print("  report parts: " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()))
        for name in result.descriptors:
            meta = result.run.descriptor_meta(name)
            if "seconds" in meta:
                print(f"  extract {name}: {meta['seconds']:.2f} s, {args.images / meta['seconds']:.1f} images/s")
        print(f"end to end: {total:.2f} s, {args.images / total:.1f} images/s (target for 10,000 demo images: <= 150 s)")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
