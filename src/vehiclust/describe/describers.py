"""The built-in image describers, each declared with its descriptors where it is defined.

* every backbone of ``describe.backbones`` as a descriptor of its name (ONNX Runtime on the CPU,
  PyTorch on a GPU); EfficientNet-Lite0's pass also gives the vehicle-type probabilities and the
  top ImageNet classes from its logits;
* the vehicle body colour (``vehicle_color``) and a colour histogram of the crop (``color_hist``).

The order of registration is the order of the default descriptors. Adding a descriptor: a
describer class here with ``@DESCRIPTORS.add(...)``, or, for a network, an entry in
``describe/backbones.py``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from vehiclust.cache import cache_root
from vehiclust.describe.backbones import BACKBONES, BackboneSpec
from vehiclust.describe.registry import CPU_AND_GPU, DESCRIPTORS, DescriptorSpec
from vehiclust.describe.vehicle_color import COLOR_NAMES, color_columns, describe_colors, row_bincount
from vehiclust.describe.vehicle_type import TYPE_COLUMNS, top_classes, type_probabilities

IMAGENET_TOP = "imagenet_top"
IMAGENET_TOP_K = 3
IMAGENET_TOP_COLUMNS = tuple(f"{kind}_{i}" for i in range(1, IMAGENET_TOP_K + 1) for kind in ("class", "p"))
CLASSES_FROM = "efficientnet_lite0"  # the backbone whose logits give vehicle_type and imagenet_top
COLOR_BINS = (8, 4, 4)  # hue x saturation x value of color_hist
N_BINS = int(np.prod(COLOR_BINS))


def imagenet_top(logits: np.ndarray) -> np.ndarray:
    """Top ImageNet classes per image as (class_1, p_1, class_2, p_2, ...); class indices are
    exact in float32. For the report's descriptions, not for clustering."""
    classes, probs = top_classes(logits, IMAGENET_TOP_K)
    return np.stack([classes.astype(np.float32), probs.astype(np.float32)], axis=2).reshape(len(logits), -1)


def default_model_cache() -> Path:
    """Exported ONNX models are shared by every run of this user."""
    return cache_root() / "models"


def image_model(name: str, device: str, threads: int | None, cache_dir: Path | None, precision: str = "auto"):
    """The network of a backbone: ONNX Runtime on the CPU (its int8 graph when ``precision``
    is auto and the backbone has one), PyTorch (fp16) on a GPU."""
    if device == "cpu":
        from vehiclust.describe.onnx_backend import OnnxImageModel, cached_onnx_model

        if runs_int8(name, device, precision):
            return OnnxImageModel(ensure_int8(name, cache_dir), threads, "int8")
        return OnnxImageModel(cached_onnx_model(name, cache_dir or default_model_cache()), threads=threads)
    from vehiclust.describe.onnx_backend import build_pipeline
    from vehiclust.describe.torch_backend import TorchImageModel

    pipeline, size = build_pipeline(name)
    return TorchImageModel(pipeline, size, device)


def ensure_int8(backbone: str, cache_dir: Path | None = None) -> Path:
    """The checked int8 graph of ``backbone`` (quantised on first use); raises
    ``Int8QuantisationError`` when it is refused."""
    from vehiclust.describe.int8 import cached_int8_model
    from vehiclust.describe.onnx_backend import cached_onnx_model

    path = cached_onnx_model(backbone, cache_dir or default_model_cache())
    return cached_int8_model(path, BACKBONES.get(backbone).square_size)


def runs_int8(backbone: str, device: str, precision: str) -> bool:
    """Whether the network of ``backbone`` runs in int8 on ``device``."""
    return precision == "auto" and device == "cpu" and BACKBONES.get(backbone).int8


class BackboneDescriber:
    """Pooled penultimate features of a backbone; with ``classes``, also the vehicle-type
    probabilities and top ImageNet classes of its logits."""

    def __init__(self, backbone: str, classes: bool = False, threads: int | None = None,
                 cache_dir: Path | None = None, device: str = "cpu", precision: str = "auto"):
        self.backbone = backbone
        self.spec = BACKBONES.get(backbone)
        self.classes = classes
        self.input_size = self.spec.square_size  # OSNet resizes 256x256 -> 256x128 in its graph
        self.outputs = {backbone: self.spec.feature_dim}
        if classes:
            self.outputs |= {"vehicle_type": len(TYPE_COLUMNS), IMAGENET_TOP: len(IMAGENET_TOP_COLUMNS)}
        self.model = image_model(backbone, device, threads, cache_dir, precision)

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]:
        features, logits = self.model.run(images)
        if not self.classes:
            return {self.backbone: features}
        return {self.backbone: features, "vehicle_type": type_probabilities(logits),
                IMAGENET_TOP: imagenet_top(logits)}

    def provenance(self) -> dict:
        preprocessing = {"preprocessing": "resize to square, bilinear"}
        if not self.spec.user_weights:
            return {"model": self.backbone, **self.model.provenance(), "input_size": self.input_size,
                    **preprocessing}
        from vehiclust.rules import sha256_file

        weights = self.spec.locate()
        return {"model": self.backbone, **self.model.provenance(),
                "weights": str(weights), "weights_sha256": sha256_file(weights),
                "input_size": list(self.spec.input_size), **preprocessing}


def _backbone_descriptor(spec: BackboneSpec, factory, **fields) -> DescriptorSpec:
    return DescriptorSpec(spec.name, spec.summary, factory, spec.feature_dim, dtype=spec.dtype,
                          devices=CPU_AND_GPU, accepts_tensors=True, backbone=spec.name,
                          weights=spec.weights, tags=spec.tags, **fields)


def _register_backbone_descriptors() -> None:
    classes = BACKBONES.get(CLASSES_FROM)
    with_classes = partial(BackboneDescriber, CLASSES_FROM, True)
    shared = dict(describer=CLASSES_FROM, devices=CPU_AND_GPU, accepts_tensors=True, backbone=CLASSES_FROM,
                  weights=classes.weights)
    DESCRIPTORS.register(_backbone_descriptor(classes, with_classes, default=True))
    DESCRIPTORS.register(DescriptorSpec(
        "vehicle_type", "vehicle-type probabilities from ImageNet classes (13-d, incl. not_a_vehicle), "
        "EfficientNet-Lite0", with_classes, len(TYPE_COLUMNS), columns=tuple(TYPE_COLUMNS), default=True,
        support=True, tags=("vehicle", "type"), **shared))
    DESCRIPTORS.register(DescriptorSpec(
        IMAGENET_TOP, f"top {IMAGENET_TOP_K} ImageNet classes and their probabilities (for cluster "
        "descriptions; not clustered), EfficientNet-Lite0", with_classes, len(IMAGENET_TOP_COLUMNS),
        columns=IMAGENET_TOP_COLUMNS, support=True, clustered=False, tags=("support",), **shared))
    for spec in BACKBONES.specs():
        if spec.descriptor and spec.name != CLASSES_FROM:
            DESCRIPTORS.register(_backbone_descriptor(spec, partial(BackboneDescriber, spec.name)))


_register_backbone_descriptors()


# --- colour -----------------------------------------------------------------------------------

@DESCRIPTORS.add("vehicle_color", summary="vehicle body colour: named-colour shares, paint Lab, hue/lightness "
                 "histogram (35-d)", width=len(color_columns()), columns=tuple(color_columns()), default=True,
                 tags=("vehicle", "colour"))
class VehicleColorDescriber:
    """Describer wrapper (see describe.registry) for :func:`describe_colors`."""

    input_size = 224
    outputs = {"vehicle_color": len(color_columns())}

    def __init__(self, threads: int | None = None):
        del threads  # numpy work; nothing to tune

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {"vehicle_color": describe_colors(images)}

    def provenance(self) -> dict:
        return {"model": "CIELAB named-colour votes with centre and border-contrast weights",
                "names": list(COLOR_NAMES), "input_size": self.input_size}


@DESCRIPTORS.add("color_hist", summary="HSV colour histogram of the crop (128-d)", width=N_BINS,
                 default=True, tags=("classical", "colour"))
class ColorHistogramDescriber:
    """Hue x saturation x value histogram of the whole crop, square-rooted (Hellinger geometry).

    A weight-free baseline that separates colour and lighting; it sees the background too.
    """

    input_size = 224
    outputs = {"color_hist": N_BINS}

    def __init__(self, threads: int | None = None):
        del threads  # numpy work; nothing to tune

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]:
        small = images[:, ::4, ::4].astype(np.float32) / 255.0  # 56 x 56 is plenty for a histogram
        hue, sat, val = _rgb_to_hsv(small)
        bins = [np.minimum((c * n).astype(np.int64), n - 1) for c, n in zip((hue, sat, val), COLOR_BINS)]
        index = (bins[0] * COLOR_BINS[1] + bins[1]) * COLOR_BINS[2] + bins[2]
        counts = row_bincount(index, N_BINS)
        return {"color_hist": np.sqrt(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)}

    def provenance(self) -> dict:
        return {"model": "hsv histogram", "bins": list(COLOR_BINS), "input_size": self.input_size}


def _rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised RGB -> HSV, each channel in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = np.maximum(np.maximum(r, g), b)  # (a max over a 3-long last axis is several times slower)
    minc = np.minimum(np.minimum(r, g), b)
    delta = maxc - minc
    safe = np.where(delta == 0, 1.0, delta)
    hue = np.where(maxc == r, (g - b) / safe, np.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    sat = np.where(maxc == 0, 0.0, delta / np.where(maxc == 0, 1.0, maxc))
    return hue, sat, maxc
