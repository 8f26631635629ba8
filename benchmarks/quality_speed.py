"""Throughput of the quality measurements, the checks, the duplicate search and the
descriptor-space detectors.

    python benchmarks/quality_speed.py [--images 600] [--rows 416314] [--dim 512] [--skip-detectors]

Prints images/s (wall clock, and the CPU-time equivalent on 2 cores: other processes share the
machine, so wall clock alone undersells it) and seconds for the detectors on a VeRi-Wild-sized
matrix (float16, low rank plus noise, like CNN features).
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np
import pandas as pd
from PIL import Image


def crops(count: int, rng: np.random.Generator) -> list[bytes]:
    """JPEG crops of a few hundred pixels from scikit-image's photographs."""
    from skimage import data

    photos = [np.asarray(getattr(data, n)())[..., :3] for n in ("astronaut", "chelsea", "coffee", "rocket", "retina")]
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(rng.integers(h // 3, h // 2)), int(rng.integers(w // 3, w // 2))
        y, x = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
        pil = Image.fromarray(np.ascontiguousarray(photo[y:y + ch, x:x + cw]))
        side = int(rng.integers(220, 380))
        pil = pil.resize((side, max(32, round(side * ch / cw * rng.uniform(0.5, 0.9)))))
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=int(rng.integers(70, 95)))
        out.append(buf.getvalue())
    return out


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_quality(count: int) -> None:
    from vehiclust.quality import create_checks, score_checks
    from vehiclust.quality.brisque import default_model
    from vehiclust.quality.describer import QualityDescriber
    from vehiclust.quality.features import COLUMNS

    rng = np.random.default_rng(0)
    files = crops(count, rng)
    describer = QualityDescriber(threads=2)
    default_model()  # load the SVR once, outside the timing
    images = [describer.decode(f) for f in files]
    sizes = np.array([im.shape[:2] for im in images])
    print(f"{count} JPEG crops, median {int(np.median(sizes[:, 1]))} x {int(np.median(sizes[:, 0]))} px")
    describer.describe(images[:20])  # warm up
    matrix, wall, cpu = timed(lambda: describer.describe(images)["quality"])
    print(f"measurements (all columns incl. BRISQUE), 2 threads: {count / wall:6.0f} images/s wall, "
          f"{1000 * cpu / count:.2f} ms CPU per image = {2 * count / cpu:.0f} images/s on 2 free cores")
    _, wall, cpu = timed(lambda: describer.describe([describer.decode(f) for f in files]))
    print(f"decode + measurements:                      {count / wall:6.0f} images/s wall, "
          f"{2 * count / cpu:.0f} images/s on 2 free cores")
    data = pd.DataFrame(matrix, columns=COLUMNS)
    data["width"], data["height"] = sizes[:, 1], sizes[:, 0]
    big = pd.concat([data] * max(1, 100_000 // count), ignore_index=True)
    _, wall, _ = timed(lambda: score_checks(big, create_checks()))
    print(f"all checks on {len(big):,} rows of measurements: {wall:.2f}s ({len(big) / wall:,.0f} rows/s)")


def bench_duplicates(rows: int) -> None:
    from vehiclust.quality import exact_duplicates, near_duplicates

    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2 ** 63, size=rows, dtype=np.int64).astype(np.uint64)
    hashes[rng.choice(rows, rows // 50)] = hashes[rng.choice(rows, rows // 50)]  # 2% copies
    sizes = rng.integers(0, 3000, rows)
    signature = rng.random((rows, 4))
    content = [f"{h:x}" for h in hashes]
    (_, original), wall, _ = timed(lambda: exact_duplicates(content))
    print(f"exact duplicates, {rows:,} rows: {wall:.2f}s")
    _, wall, _ = timed(lambda: near_duplicates(hashes, exact_original=original, signature=signature, size_keys=sizes))
    print(f"near duplicates, {rows:,} rows (4-bit buckets + same-size pairs): {wall:.2f}s")


def bench_detectors(rows: int, dim: int) -> None:
    from vehiclust.outliers.detectors import DetectorSettings, score_descriptor

    rng = np.random.default_rng(2)
    matrix = np.empty((rows, dim), dtype=np.float16)
    basis = rng.normal(size=(32, dim)).astype(np.float32)
    for start in range(0, rows, 65536):
        n = min(65536, rows - start)
        block = rng.normal(size=(n, 32)).astype(np.float32) @ basis + rng.normal(size=(n, dim)).astype(np.float32)
        matrix[start:start + n] = np.maximum(block, 0)  # ReLU features
    settings = DetectorSettings()
    scores, wall, cpu = timed(lambda: score_descriptor(matrix, np.arange(rows), settings))
    print(f"detectors {'+'.join(scores)} on {rows:,} x {dim} (fit on {settings.fit_sample:,}, "
          f"PCA {settings.pca_components}, k={settings.k}, faiss): {wall:.1f}s wall, {cpu:.1f}s CPU")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--rows", type=int, default=416_314)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--skip-detectors", action="store_true")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    bench_quality(args.images)
    bench_duplicates(args.rows)
    if not args.skip_detectors:
        bench_detectors(args.rows, args.dim)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
