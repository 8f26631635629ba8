"""Descriptors by name, like timm's model registry: ``create_describer(name)``.

A *describer* turns a batch of decoded images (uint8, N x S x S x 3, RGB, all resized to the
describer's ``input_size``) into one or more named matrices. Several descriptors can come from
one describer (one network pass gives pooled features and class probabilities), so requested
names are grouped by describer and each image is decoded once per extraction pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vehiclust.errors import VehiclustError


class Describer(Protocol):
    input_size: int
    outputs: dict[str, int]  # descriptor name -> width

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]: ...

    def provenance(self) -> dict: ...


@dataclass(frozen=True)
class DescriptorSpec:
    name: str
    summary: str
    describer: str  # key of the factory that computes it
    dtype: str = "float32"
    version: int = 1  # bump when the computation changes, so stored matrices are recomputed
    tags: tuple[str, ...] = field(default_factory=tuple)


DESCRIPTORS: dict[str, DescriptorSpec] = {}
DESCRIBERS: dict[str, Callable[..., Describer]] = {}
ACCELERATED: set[str] = set()  # describers whose factory takes ``device=`` (they can run on a GPU)
DEFAULT_IMAGE_DESCRIPTORS = ("efficientnet_lite0", "vehicle_type", "vehicle_color", "color_hist")


def register_describer(key: str, factory: Callable[..., Describer], specs: list[DescriptorSpec],
                       accelerated: bool = False) -> None:
    DESCRIBERS[key] = factory
    if accelerated:
        ACCELERATED.add(key)
    for spec in specs:
        DESCRIPTORS[spec.name] = spec


def get_spec(name: str) -> DescriptorSpec:
    _ensure_builtin()
    if name not in DESCRIPTORS:
        raise VehiclustError(f"unknown descriptor {name!r}; available: {', '.join(sorted(DESCRIPTORS))}")
    return DESCRIPTORS[name]


def available() -> dict[str, DescriptorSpec]:
    _ensure_builtin()
    return dict(DESCRIPTORS)


def is_accelerated(key: str) -> bool:
    _ensure_builtin()
    return key in ACCELERATED


def create_describer(key: str, **kwargs) -> Describer:
    _ensure_builtin()
    return DESCRIBERS[key](**kwargs)


def _ensure_builtin() -> None:
    # Importing registers the built-in describers; done lazily so `vehiclust --help` stays fast.
    from vehiclust.describe import builtin  # noqa: F401
    from vehiclust.quality import describer  # noqa: F401
