"""EfficientNet compound scaling, B0-B7 and Lite0-2: pure arithmetic, no torch.

Every variant is the B0 base layout scaled in width (channels ``round_channels(c * width)``)
and depth (blocks ``ceil(n * depth)``). Lite differs from B in ways that matter for the
weights: no squeeze-excitation, ReLU6 instead of SiLU, and the stem (32) and head (1280) are not
width-scaled, nor are the first and last stages depth-scaled. Torch-free so that the backbone
registry can state widths and input sizes without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASE_STEM = 32
BASE_HEAD = 1280


@dataclass(frozen=True)
class StageSpec:
    """One stage of the EfficientNet-B0 base layout, before width/depth scaling."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


BASE_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    """Compound-scaling coefficients of one EfficientNet variant."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    lite: bool = False  # Lite: no SE, ReLU6, unscaled stem/head and first/last stage depth


VARIANTS: dict[str, Variant] = {
    v.name: v for v in (
        Variant("efficientnet_b0", 1.0, 1.0, 224, 0.2),
        Variant("efficientnet_b1", 1.0, 1.1, 240, 0.2),
        Variant("efficientnet_b2", 1.1, 1.2, 260, 0.3),
        Variant("efficientnet_b3", 1.2, 1.4, 300, 0.3),
        Variant("efficientnet_b4", 1.4, 1.8, 380, 0.4),
        Variant("efficientnet_b5", 1.6, 2.2, 456, 0.4),
        Variant("efficientnet_b6", 1.8, 2.6, 528, 0.5),
        Variant("efficientnet_b7", 2.0, 3.1, 600, 0.5),
        Variant("efficientnet_lite0", 1.0, 1.0, 224, 0.2, lite=True),
        Variant("efficientnet_lite1", 1.0, 1.1, 240, 0.2, lite=True),
        Variant("efficientnet_lite2", 1.1, 1.2, 260, 0.3, lite=True),
    )
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count the way the TF reference does, so scaled weights fit."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's block count (ceil, as in the TF reference)."""
    return int(math.ceil(depth * repeats))


def stem_channels(variant: Variant) -> int:
    return BASE_STEM if variant.lite else round_channels(BASE_STEM, variant.width)


def feature_dim(variant: Variant) -> int:
    """Width of the pooled features: the head's channels."""
    return BASE_HEAD if variant.lite else round_channels(BASE_HEAD, variant.width)


@dataclass(frozen=True)
class BlockConfig:
    cin: int
    cout: int
    kernel: int
    stride: int
    expand: int


def stage_configs(variant: Variant) -> list[list[BlockConfig]]:
    """Per stage, the blocks after width/depth scaling."""
    stages = []
    cin = stem_channels(variant)
    last = len(BASE_STAGES) - 1
    for i, st in enumerate(BASE_STAGES):
        cout = round_channels(st.out_channels, variant.width)
        keep_depth = variant.lite and i in (0, last)  # Lite keeps one block there at any depth
        repeats = st.repeats if keep_depth else round_repeats(st.repeats, variant.depth)
        blocks = []
        for r in range(repeats):
            blocks.append(BlockConfig(cin, cout, st.kernel, st.stride if r == 0 else 1, st.expand))
            cin = cout
        stages.append(blocks)
    return stages
