"""Model-only throughput: ONNX Runtime vs PyTorch eager on uint8 NHWC batches.

Run with ``.venv/bin/python benchmarks/model_throughput.py [--threads 2] [--batch 32]``.
Excludes decoding and resizing, so it bounds what feature extraction can reach. Each engine
is timed over several repeats and the best is reported, because on a shared machine the
mean mostly measures the neighbours; the load average is printed for the same reason.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vehiclust.describe.onnx_backend import OnnxImageModel, build_pipeline, cached_onnx_model


def best_rate(fn: Callable[[], object], images: int, repeats: int, warmup: int = 2) -> float:
    """Best images/s over ``repeats`` timed calls (warm-up calls excluded)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return images / best


def ort_rate(onnx_path: Path, batch: np.ndarray, threads: int, repeats: int) -> float:
    """ONNX Runtime images/s with ``threads`` intra-op threads."""
    model = OnnxImageModel(onnx_path, threads=threads)
    return best_rate(lambda: model.run(batch), len(batch), repeats)


def torch_rate(name: str, batch: np.ndarray, threads: int, repeats: int) -> float:
    """PyTorch eager images/s (inference mode) with ``threads`` intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, _ = build_pipeline(name)
        tensor = torch.from_numpy(batch)
        with torch.inference_mode():
            return best_rate(lambda: model(tensor), len(batch), repeats)
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "vehiclust-onnx-cache")
    args = parser.parse_args()

    from vehiclust.describe.backbones import BACKBONES

    size = BACKBONES.get(args.model).square_size
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8)
    onnx_path = cached_onnx_model(args.model, args.cache_dir)

    print(f"{args.model} {size}x{size}, batch {args.batch}, {args.threads} threads, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    ort = ort_rate(onnx_path, batch, args.threads, args.repeats)
    print(f"onnxruntime   : {ort:7.1f} images/s")
    eager = torch_rate(args.model, batch, args.threads, max(2, args.repeats // 2))
    print(f"pytorch eager : {eager:7.1f} images/s")
    print(f"speed-up      : {ort / eager:7.1f}x   (load average after: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
