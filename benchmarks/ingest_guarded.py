"""What the input guards cost at ingest, and what re-reading only changed files saves.

Writes an image folder of N small JPEGs (50 per vehicle folder) into a temporary folder, then
times ``ingest`` three times into one run folder: the first time, again with nothing changed,
and again after one image was replaced (only that file is read again).

Run::

    .venv/bin/python benchmarks/ingest_guarded.py              # 10,000 images
    .venv/bin/python benchmarks/ingest_guarded.py --images 50000

Timings on a shared machine are noisy: other processes take CPU time from the reads.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vehiclust.collection import ingest
from vehiclust.runfolder import RunFolder


def write_images(root: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = root / f"{i // 50:05d}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def timed(label: str, images: Path, run: RunFolder) -> None:
    started = time.perf_counter()
    ingest(images, run)
    print(f"{label:>12}: {time.perf_counter() - started:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, run = Path(tmp) / "images", RunFolder(Path(tmp) / "run")
        paths = write_images(images, args.images)
        timed("first", images, run)
        timed("unchanged", images, run)
        paths[0].write_bytes(paths[-1].read_bytes())
        timed("one changed", images, run)


if __name__ == "__main__":
    main()
