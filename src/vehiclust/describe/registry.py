"""Descriptors by name, like timm's model registry: ``create_describer(name)``.

A *describer* turns a batch of decoded images (uint8, N x S x S x 3, RGB, all resized to the
describer's ``input_size``) into one or more named matrices. Several descriptors can come from
one describer (one network pass gives pooled features and class probabilities): their specs
share the ``describer`` key and the factory, requested names are grouped by it and each image is
decoded once per extraction pass.

Each descriptor is declared where its describer is defined, with a :class:`DescriptorSpec` that
states every option and role (nothing is probed from the describer object)::

    @DESCRIPTORS.add("color_hist", summary="HSV colour histogram of the crop (128-d)", width=128,
                     default=True, tags=("classical", "colour"))
    class ColorHistogramDescriber: ...

The built-in modules are imported on the first lookup (see :class:`vehiclust.registry.Registry`);
their order is the registration order, which is the order of the default descriptors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vehiclust.registry import Registry

CPU = ("cpu",)
CPU_AND_GPU = ("cpu", "cuda")


class Describer(Protocol):
    input_size: int  # side of the square view it reads (unless its spec says needs_original)
    outputs: dict[str, int]  # descriptor name -> width

    def describe(self, images: np.ndarray) -> dict[str, np.ndarray]: ...

    def provenance(self) -> dict: ...


@dataclass(frozen=True)
class DescriptorSpec:
    name: str
    summary: str
    factory: Callable[..., Describer]  # factory(threads=, [device=]) -> the describer of its pass
    width: int  # columns of the matrix
    describer: str = ""  # the pass that computes it; descriptors with one key share one describer
    dtype: str = "float32"  # storage dtype
    version: int = 1  # bump when the computation changes, so stored matrices are recomputed
    columns: tuple[str, ...] | None = None  # column names, stored in the provenance
    # roles
    default: bool = False  # computed and clustered when the user names no descriptor
    support: bool = False  # computed whenever the collection has images (checks, descriptions)
    clustered: bool = True  # False: a measurement, never clustered unless asked for by name
    # how it runs
    devices: tuple[str, ...] = CPU  # where it runs; with "cuda" the factory takes ``device=``
    accepts_tensors: bool = False  # on a GPU it takes GPU-decoded uint8 tensors (nvjpeg)
    needs_original: bool = False  # reads each image at its own resolution, not a square view
    max_side: int | None = None  # longer side of the original view (with needs_original)
    backbone: str = ""  # the backbone whose weights it runs (see ``describe.backbones``)
    weights: str = ""  # what weights it needs, for listings ("" when none)
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.describer:
            object.__setattr__(self, "describer", self.name)
        if self.default and not self.clustered:
            raise ValueError(f"descriptor {self.name!r}: a default descriptor must be clustered")
        if self.columns is not None and len(self.columns) != self.width:
            raise ValueError(f"descriptor {self.name!r}: {len(self.columns)} columns for width {self.width}")


DESCRIPTORS: Registry[DescriptorSpec] = Registry("descriptor", DescriptorSpec, builtins=(
    "vehiclust.describe.describers", "vehiclust.quality.describer"))


def get_spec(name: str) -> DescriptorSpec:
    return DESCRIPTORS.get(name)


def available() -> dict[str, DescriptorSpec]:
    return {spec.name: spec for spec in DESCRIPTORS.specs()}


def create_describer(name: str, threads: int | None = None, device: str = "cpu",
                     precision: str = "auto") -> Describer:
    """The describer that computes descriptor ``name`` (and the others of its pass);
    ``precision`` reaches the describers that run a backbone (auto | fp32)."""
    spec = get_spec(name)
    options = {"precision": precision} if spec.backbone else {}
    if "cuda" in spec.devices:
        return spec.factory(threads=threads, device=device, **options)
    return spec.factory(threads=threads, **options)


def default_descriptors() -> tuple[str, ...]:
    """Computed and clustered when the user names none and the input brought none."""
    return tuple(DESCRIPTORS.names(lambda spec: spec.default))


def support_descriptors() -> tuple[str, ...]:
    """Computed whenever the collection has images, in the same decode pass, for the outlier
    checks and the cluster descriptions; clustered only when asked for (or a default)."""
    return tuple(DESCRIPTORS.names(lambda spec: spec.support))


def never_clustered() -> tuple[str, ...]:
    """Measurements for checks and descriptions, not clustered unless named explicitly."""
    return tuple(DESCRIPTORS.names(lambda spec: not spec.clustered))


def descriptor_listing() -> list[str]:
    """One line per descriptor, by name: what ``vehiclust descriptors`` prints."""
    return [f"{row['name']:24s} {row['summary']}" for row in sorted(DESCRIPTORS.table(), key=lambda r: r["name"])]
