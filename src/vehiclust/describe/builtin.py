"""The backbone describers: every backbone of ``describe.backbones`` as a descriptor of its name
(ONNX Runtime on the CPU, PyTorch on a GPU); EfficientNet-Lite0's pass also gives the
vehicle-type probabilities and the top ImageNet classes from its logits."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from vehiclust.cache import cache_root
from vehiclust.describe.backbones import BACKBONES, BackboneSpec
from vehiclust.describe.registry import CPU_AND_GPU, DESCRIPTORS, DescriptorSpec
from vehiclust.describe.vehicle_type import TYPE_COLUMNS, top_classes, type_probabilities

IMAGENET_TOP = "imagenet_top"
IMAGENET_TOP_K = 3
IMAGENET_TOP_COLUMNS = tuple(f"{kind}_{i}" for i in range(1, IMAGENET_TOP_K + 1) for kind in ("class", "p"))
CLASSES_FROM = "efficientnet_lite0"  # the backbone whose logits give vehicle_type and imagenet_top


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
    """Pooled penultimate features of a backbone; with ``classes``, also the vehicle-type
    probabilities and top ImageNet classes of its logits."""

    def __init__(self, backbone: str, classes: bool = False, threads: int | None = None,
                 cache_dir: Path | None = None, device: str = "cpu"):
        self.backbone = backbone
        self.spec = BACKBONES.get(backbone)
        self.classes = classes
        self.input_size = self.spec.square_size  # OSNet resizes 256x256 -> 256x128 in its graph
        self.outputs = {backbone: self.spec.feature_dim}
        if classes:
            self.outputs |= {"vehicle_type": len(TYPE_COLUMNS), IMAGENET_TOP: len(IMAGENET_TOP_COLUMNS)}
        self.model = image_model(backbone, device, threads, cache_dir)

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
        from vehiclust.describe.models.checkpoints import sha256_file

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
