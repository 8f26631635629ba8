"""An int8 copy of an exported backbone for the CPU: quantised once, checked against fp32, cached.

ONNX Runtime's static quantisation (QDQ format, per-channel int8 weights at 7 bits, uint8
activations) with activation ranges calibrated on fixed photographs bundled with scikit-image,
so that the graph, and therefore every feature, does not depend on the user's collection.

The convolutions that read the stem's full resolution (the image and the 1/2-scale maps) stay
in float32, as do the pooled mean and the classifier: quantising them both loses the most
(demo feature cosine: 0.79 minimum with them, 0.95 without) and costs the most, because the
quantise/dequantise pairs then run over the largest tensors. The rest (the 1/4-scale maps and
deeper) runs in int8. Measured with ``benchmarks/int8_backbone.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vehiclust.errors import VehiclustError

# Bump when the recipe (calibration images, excluded nodes, quantisation options) changes.
INT8_FORMAT = "q1"
INT8_KEY = f"int8{INT8_FORMAT}"  # in the descriptor keys: features of another recipe are recomputed
# Photographs of scikit-image's data folder (shipped with the package, no download). The test
# suite's photos (astronaut, chelsea, coffee, rocket, the left motorcycle, ...) are not among
# them, so the tests check the int8 graph on images it was not calibrated on.
CALIBRATION_PHOTOS = ("retina.jpg", "brick.png", "grass.png", "gravel.png", "camera.png", "coins.png",
                      "moon.png", "color.png", "horse.png", "page.png", "cell.png", "clock_motion.png",
                      "microaneurysms.png", "logo.png", "motorcycle_right.png", "chessboard_RGB.png")
CROPS_PER_PHOTO = 7
CALIBRATION_BATCH = 16
# Checked after quantising, on other crops of the same photographs: a graph further from fp32
# than this is refused (on the demo the accepted recipe gives mean 0.986, minimum 0.89).
MIN_MEAN_COSINE = 0.97
FULL_RESOLUTION_SHARE = 0.5  # convolutions reading maps at least this share of the input side


class Int8QuantisationError(VehiclustError):
    """The quantised graph is too far from the fp32 one it was made from."""


def int8_path(fp32_path: Path) -> Path:
    return Path(fp32_path).with_name(f"{Path(fp32_path).stem}-{INT8_KEY}.onnx")


def refusal_path(int8: Path) -> Path:
    """Where a refused int8 graph's reason is kept, so that later runs do not quantise again."""
    return Path(int8).with_suffix(".refused.json")


def cached_int8_model(fp32_path: Path, size: int) -> Path:
    """The int8 graph beside the cached fp32 one (its name carries the fp32 file's key),
    quantised and checked on first use. A graph refused by the check is refused again, without
    quantising, until onnxruntime changes (its quantiser made the graph)."""
    path = int8_path(fp32_path)
    if not path.is_file():
        _raise_if_refused(path)
        try:
            quantise(Path(fp32_path), path, size)
        except Int8QuantisationError as exc:
            _remember_refusal(path, str(exc))
            raise
    return path


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _raise_if_refused(path: Path) -> None:
    from vehiclust.runfolder import read_json

    try:
        record = read_json(refusal_path(path))
    except (OSError, ValueError):  # none, or damaged: quantise and check again
        return
    if isinstance(record, dict) and record.get("onnxruntime") == _onnxruntime_version():
        raise Int8QuantisationError(str(record.get("reason", "refused before")))


def _remember_refusal(path: Path, reason: str) -> None:
    from vehiclust.runfolder import write_json

    write_json(refusal_path(path), {"reason": reason, "onnxruntime": _onnxruntime_version()})


def quantise(fp32_path: Path, path: Path, size: int) -> None:
    """Quantise ``fp32_path`` to ``path``: written beside it, checked, then moved into place."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix=".int8-", dir=path.parent) as work:
        prepared, quantised = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        with _quiet_quantiser():
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_static(
                str(prepared), str(quantised), _Calibration(calibration_images(size, seed=0)),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                per_channel=True, reduce_range=True, calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=float_nodes(prepared, size))
        verify_int8(fp32_path, quantised, size)
        quantised.chmod(0o644)
        os.replace(quantised, path)


def float_nodes(model_path: Path, size: int) -> list[str]:
    """Nodes kept in float32: convolutions whose input is at least half the image side, the last
    convolution (its output is the pooled features), the pooling and the classifier. A rule for
    convolutional backbones of the EfficientNet kind only: it is what was measured."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    sides = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
             for v in [*model.graph.value_info, *model.graph.input]}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if not convs:
        raise Int8QuantisationError(f"{model_path.name}: no convolution to quantise")
    wide = [n.name for n in convs if _side(sides.get(n.input[0])) >= FULL_RESOLUTION_SHARE * size]
    head = [n.name for n in model.graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool", "Gemm", "MatMul")]
    return sorted(set(wide) | {convs[-1].name} | set(head))


def _side(shape: list[int] | None) -> int:
    """Spatial side of an NCHW tensor shape; 0 when unknown."""
    return shape[2] if shape and len(shape) == 4 else 0


def calibration_images(size: int, seed: int) -> np.ndarray:
    """uint8 [N, size, size, 3]: random crops (30-100% of each side), every other one mirrored."""
    import skimage
    from PIL import Image, ImageOps

    folder = Path(skimage.__file__).parent / "data"
    rng = np.random.default_rng(seed)
    images = []
    for name in CALIBRATION_PHOTOS:
        with Image.open(folder / name) as photo:
            photo = photo.convert("RGB")
        width, height = photo.size
        for i in range(CROPS_PER_PHOTO):
            scale = rng.uniform(0.3, 1.0)
            w, h = int(width * scale), int(height * scale)
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            crop = photo.crop((x, y, x + w, y + h)).resize((size, size), Image.Resampling.BILINEAR)
            images.append(np.asarray(ImageOps.mirror(crop) if i % 2 else crop))
    return np.stack(images)


class _Calibration:
    """The calibration images in batches, as ONNX Runtime's CalibrationDataReader reads them."""

    def __init__(self, images: np.ndarray) -> None:
        from vehiclust.describe.onnx_backend import INPUT_NAME

        self._batches = iter([{INPUT_NAME: images[i:i + CALIBRATION_BATCH]}
                              for i in range(0, len(images), CALIBRATION_BATCH)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def verify_int8(fp32_path: Path, int8_path: Path, size: int) -> float:
    """Mean feature cosine of the two graphs on crops the calibration did not see; raises below
    ``MIN_MEAN_COSINE``."""
    from vehiclust.describe.onnx_backend import OnnxImageModel

    images = calibration_images(size, seed=1)
    reference = OnnxImageModel(fp32_path, threads=1).run(images)[0]
    features = OnnxImageModel(int8_path, threads=1).run(images)[0]
    cosine = float(np.mean(feature_cosine(reference, features)))
    if not cosine >= MIN_MEAN_COSINE:
        raise Int8QuantisationError(
            f"the int8 graph of {Path(fp32_path).name} is too far from fp32 (mean feature cosine "
            f"{cosine:.3f} < {MIN_MEAN_COSINE}); run with --precision fp32, or report the "
            "onnxruntime version")
    return cosine


def feature_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0)


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    """Drop the quantiser's records: one warning per layer (bias scales it adjusts), logged on
    the root logger itself. The handler keeps ``logging.warning`` from installing a stderr
    handler for the rest of the process; the filter sees only records of the root logger."""
    root = logging.getLogger()
    handler, quiet = logging.NullHandler(), _BelowError()
    root.addHandler(handler)
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        root.removeHandler(handler)


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR
