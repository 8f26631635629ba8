"""Image backbones: architectures, their weight packages, and the uint8-in pipeline wrapper."""

from vehiclust.describe.models.efficientnet_lite import (
    BACKBONES,
    BackboneSpec,
    EfficientNetLite,
    ImagePipelineModel,
    MissingWeightsError,
    backbone_spec,
    create_backbone,
)

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "EfficientNetLite",
    "ImagePipelineModel",
    "MissingWeightsError",
    "backbone_spec",
    "create_backbone",
]
