"""Is an int8 EfficientNet-Lite0 worth it on the CPU? Dynamic quantisation (onnxruntime.quantization)
of the cached fp32 model, compared with it side by side: feature cosine and images/s.

Run: ``.venv/bin/python benchmarks/int8_backbone.py [--threads 2] [--out /tmp/lite0_int8.onnx]``
Measured 2026-12-01 on the shared 2-core machine (load ~10): int8 5-6 images/s against fp32
11-17, feature cosine 0.70 (min) / 0.81 (mean) on random batches: slower and not close, so the
CPU default stays fp32 (ONNX Runtime runs the quantised convolutions as ConvInteger, which has
no fast kernel here).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vehiclust.describe.describers import default_model_cache
from vehiclust.describe.onnx_backend import OnnxImageModel, cached_onnx_model


def rate(model: OnnxImageModel, batch: np.ndarray, repeats: int = 5) -> float:
    model.run(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        model.run(batch)
    return repeats * len(batch) / (time.perf_counter() - started)


def main() -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lite0_int8.onnx")
    args = parser.parse_args()
    fp32_path = cached_onnx_model("efficientnet_lite0", default_model_cache())
    quantize_dynamic(str(fp32_path), str(args.out), weight_type=QuantType.QUInt8)
    fp32, int8 = OnnxImageModel(fp32_path, args.threads), OnnxImageModel(args.out, args.threads)
    batch = np.random.default_rng(0).integers(0, 255, (32, 224, 224, 3), dtype=np.uint8)
    a, b = fp32.run(batch)[0], int8.run(batch)[0]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"feature cosine int8 vs fp32: min {cosine.min():.3f}, mean {cosine.mean():.3f}")
    for _ in range(2):  # interleaved: the machine's load changes under the measurement
        print(f"fp32 {rate(fp32, batch):6.1f} images/s   int8 {rate(int8, batch):6.1f} images/s")


if __name__ == "__main__":
    main()
