"""Descriptor extraction throughput: JPEG files -> stored descriptor, beside the model-only rate.

Measured in one run on the same machine: (1) ONNX Runtime on ready uint8 batches (the ceiling),
(2) the describe stage end to end (read, decode, resize, infer, write chunks), (3) the same with
the quality describer in the pass. Prints images/s and the ratio end-to-end / model-only.

Run: ``.venv/bin/python benchmarks/describe_throughput.py [--images 2000]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from end_to_end import make_images, peak_rss_mb  # noqa: E402

from vehiclust.collection import ingest  # noqa: E402
from vehiclust.describe import DescribeSettings, describe  # noqa: E402
from vehiclust.describe.describers import BackboneDescriber  # noqa: E402
from vehiclust.runfolder import RunFolder  # noqa: E402


def model_only(batches: int = 20, batch_size: int = 32) -> float:
    describer = BackboneDescriber("efficientnet_lite0")
    images = np.random.default_rng(0).integers(0, 255, (batch_size, 224, 224, 3), dtype=np.uint8)
    describer.model.run(images)
    started = time.perf_counter()
    for _ in range(batches):
        describer.model.run(images)
    return batches * batch_size / (time.perf_counter() - started)


def extraction(root: Path, work: Path, names: list[str], workers: int) -> float:
    run = RunFolder(work)
    table = ingest(root, run)
    started = time.perf_counter()
    describe(run, names, DescribeSettings(decode_threads=workers))
    return len(table) / (time.perf_counter() - started)


@contextlib.contextmanager
def one_after_the_other():
    """The pass as it was before the numpy describers ran beside the network (for comparison)."""
    from vehiclust.describe import extract

    def serial(work, images):
        outputs = {}
        for planned in work.planned:
            outputs.update(extract._run_batches(planned.describer, images[planned.view], work.batch_size))
        return outputs

    saved, extract._describe_views = extract._describe_views, serial
    try:
        yield
    finally:
        extract._describe_views = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_images(root, args.images)
        ceiling = model_only()
        print(f"model only (ONNX Runtime, batch 32, 224): {ceiling:8.1f} images/s")
        lite = extraction(root, Path(tmp) / "run1", ["efficientnet_lite0"], args.workers)
        print(f"end to end efficientnet_lite0:            {lite:8.1f} images/s  "
              f"({lite / ceiling:.0%} of model only)")
        defaults = ["efficientnet_lite0", "vehicle_type", "vehicle_color", "color_hist", "quality"]
        full = extraction(root, Path(tmp) / "run2", defaults, args.workers)
        print(f"end to end, all default descriptors:      {full:8.1f} images/s  "
              f"({full / lite:.2f} of efficientnet_lite0 alone; target >= 0.80)")
        with one_after_the_other():
            serial = extraction(root, Path(tmp) / "run3", defaults, args.workers)
        print(f"  the same, describers one after the other: {serial:6.1f} images/s  ({serial / lite:.2f})")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
