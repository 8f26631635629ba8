"""The uint8-in wrapper every backbone is exported and run through."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImagePipelineModel(nn.Module):
    """uint8 NHWC RGB images in, (features, logits) out, with all pixel work in the graph.

    Putting the cast, scaling and transpose inside the model lets the exported ONNX graph
    take the PIL-resized arrays as they are, so Python never touches individual pixels.
    ``mean`` and ``std`` are in 0..255 units, scalar or per RGB channel.
    """

    def __init__(self, backbone: nn.Module, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("scale", 1.0 / torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).to(self.mean.dtype)  # float32, or float16 on a GPU
        x = (x - self.mean) * self.scale
        features = self.backbone.forward_features(x)
        if getattr(self.backbone, "num_classes", None) == 0:  # feature-only weights (MobileNetV2, OSNet)
            return features, features[:, :0]
        return features, self.backbone.classify(features)


def pipeline_of(loaded) -> ImagePipelineModel:
    """The export wrapper of a ``LoadedBackbone``, in eval mode."""
    return ImagePipelineModel(loaded.model, loaded.mean_255(), loaded.std_255()).eval()
