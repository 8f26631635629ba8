"""OSNet x1.0 (Omni-Scale Network, Zhou et al. 2019), loading torchreid checkpoints.

The re-identification backbone behind the case's ``osnet.pickle`` (512-d). Module names mirror
torchreid's ``osnet_x1_0`` so its checkpoints load strictly: ``conv1`` (7x7 stem), ``conv2`` ..
``conv4`` (two omni-scale blocks each; ``conv2``/``conv3`` end with a 1x1 conv + 2x2 average
pool transition), ``conv5`` (1x1), global average pool, ``fc`` (Linear 512 -> 512, BatchNorm1d,
ReLU). The 512-d output of ``fc`` in eval mode is the descriptor (what torchreid's feature
extractor returns). The identity ``classifier`` is sized for the training set (751 Market-1501
identities, 4101 MSMT17 ones, 1000 ImageNet classes) and is never used: its keys are ignored.

Checkpoints may be a plain state dict (the ImageNet-pretrained ``osnet_x1_0_imagenet.pth``) or
torchreid's training checkpoint ``{'state_dict': ..., 'epoch': ..., 'rank1': ..., 'optimizer':
...}`` with ``module.`` prefixes from DataParallel; both are handled by ``checkpoints``.

Input: RGB resized to 256 x 128 (height x width), 0..1, ImageNet mean/std (torchreid's test
transform). ``forward_features`` takes any size; ``input_hw`` set makes it resize internally,
so that a pipeline feeding square images still gets the 2:1 input the weights expect.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vehiclust.describe.models.checkpoints import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedBackbone,
    detect_layout,
    load_state_strict,
    read_checkpoint,
    verify_sha256,
)
from vehiclust.describe.models.weights import WeightsFile, accepted_entry, resolve_weights

NAME = "osnet"
INPUT_HW = (256, 128)
CHANNELS = (64, 256, 384, 512)  # stem, then the three stages (x1.0 width)
BLOCKS_PER_STAGE = (2, 2, 2)
FEATURE_DIM = 512
GATE_REDUCTION = 16
BOTTLENECK_REDUCTION = 4

_ZOO = "torchreid model zoo (https://kaiyangzhou.github.io/deep-person-reid/MODEL_ZOO)"
_SUFFIX = "_256x128_amsgrad_ep150_stp60_lr0.0015_b64_fb10_softmax_labelsmooth_flip.pth"
ACCEPTED: tuple[WeightsFile, ...] = (
    WeightsFile(f"osnet_x1_0_msmt17{_SUFFIX}", "torchreid", _ZOO, note="re-id, MSMT17"),
    WeightsFile(f"osnet_x1_0_market{_SUFFIX}", "torchreid", _ZOO, note="re-id, Market-1501"),
    WeightsFile(f"osnet_x1_0_duke{_SUFFIX}", "torchreid", _ZOO, note="re-id, DukeMTMC-reID"),
    WeightsFile("osnet_x1_0_msmt17.pt", "torchreid", "boxmot's re-id weights", note="re-id, MSMT17"),
    WeightsFile("osnet_x1_0_imagenet.pth", "torchreid", _ZOO, note="ImageNet only, not re-id"),
    WeightsFile("osnet_x1_0.pth", "torchreid", "your own torchreid training run",
                note="e.g. trained on vehicles"),
)
LAYOUT_SIGNATURES = {"torchreid": ("conv1.conv.weight", "conv2.0.conv1.conv.weight", "conv5.conv.weight")}
IGNORED_PREFIXES = ("classifier.",)


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU, attributes ``conv`` and ``bn``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LiteConv3x3(nn.Module):
    """Linear 1x1 conv then depthwise 3x3, BatchNorm, ReLU (OSNet's "lite" 3x3)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Shared aggregation gate: global average -> 1x1 (C/16) -> ReLU -> 1x1 (C) -> sigmoid."""

    def __init__(self, channels: int, reduction: int = GATE_REDUCTION) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * gate


def lite_stack(channels: int, depth: int) -> nn.Module:
    """``depth`` lite 3x3 convs: one stream of the block (receptive field grows with depth)."""
    if depth == 1:
        return LiteConv3x3(channels, channels)
    return nn.Sequential(*(LiteConv3x3(channels, channels) for _ in range(depth)))


class OSBlock(nn.Module):
    """Omni-scale residual bottleneck: four streams of 1..4 lite convs, fused by one gate."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // BOTTLENECK_REDUCTION
        self.conv1 = ConvBNReLU(cin, mid)
        self.conv2a = lite_stack(mid, 1)
        self.conv2b = lite_stack(mid, 2)
        self.conv2c = lite_stack(mid, 3)
        self.conv2d = lite_stack(mid, 4)
        self.gate = ChannelGate(mid)
        self.conv3 = ConvBNReLU(mid, cout, relu=False)
        self.downsample = ConvBNReLU(cin, cout, relu=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        y = sum(self.gate(stream(y)) for stream in (self.conv2a, self.conv2b, self.conv2c, self.conv2d))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(y) + identity)


def make_stage(cin: int, cout: int, blocks: int, reduce: bool) -> nn.Sequential:
    layers: list[nn.Module] = [OSBlock(cin if i == 0 else cout, cout) for i in range(blocks)]
    if reduce:  # transition: 1x1 conv, then halve the resolution
        layers.append(nn.Sequential(ConvBNReLU(cout, cout), nn.AvgPool2d(2, stride=2)))
    return nn.Sequential(*layers)


class OSNet(nn.Module):
    """OSNet x1.0 feature extractor (no identity classifier): images -> 512-d features."""

    num_classes = 0  # the identity classifier is training-set specific and not kept

    def __init__(self, input_hw: tuple[int, int] | None = None) -> None:
        super().__init__()
        c = CHANNELS
        self.input_hw = input_hw
        self.conv1 = ConvBNReLU(3, c[0], 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = make_stage(c[0], c[1], BLOCKS_PER_STAGE[0], reduce=True)
        self.conv3 = make_stage(c[1], c[2], BLOCKS_PER_STAGE[1], reduce=True)
        self.conv4 = make_stage(c[2], c[3], BLOCKS_PER_STAGE[2], reduce=False)
        self.conv5 = ConvBNReLU(c[3], c[3])
        self.fc = nn.Sequential(nn.Linear(c[3], FEATURE_DIM), nn.BatchNorm1d(FEATURE_DIM), nn.ReLU())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """512-d features of ImageNet-normalised NCHW RGB input (resized first if ``input_hw``)."""
        if self.input_hw is not None and tuple(x.shape[-2:]) != tuple(self.input_hw):
            x = F.interpolate(x, size=self.input_hw, mode="bilinear", align_corners=False)
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.conv4(self.conv3(self.conv2(x))))
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The features: a re-identification network has no ImageNet logits."""
        return self.forward_features(x)


def locate_weights(weights: str | os.PathLike | None = None) -> Path:
    return resolve_weights(NAME, ACCEPTED, weights)


def load_osnet(weights: str | os.PathLike | None = None, *, sha256: str | None = None,
               input_hw: tuple[int, int] | None = None) -> LoadedBackbone:
    """OSNet x1.0 with torchreid weights from ``weights`` (file or folder) or the cache folder.

    ``input_hw=(256, 128)`` makes the model resize whatever it is fed to the training shape.
    """
    path = locate_weights(weights)
    if sha256:
        verify_sha256(path, sha256)
    elif (entry := accepted_entry(path, ACCEPTED)) and entry.sha256_prefix:
        verify_sha256(path, entry.sha256_prefix)
    state = read_checkpoint(path)
    layout = detect_layout(state, LAYOUT_SIGNATURES, path, "osnet_x1_0")
    model = OSNet(input_hw=input_hw)
    load_state_strict(model, state, path=path, layout=layout, model_name="osnet_x1_0",
                      ignore_prefixes=IGNORED_PREFIXES)
    head = state.get("classifier.weight")
    details = {"ignored_classifier_classes": int(head.shape[0]) if head is not None else 0,
               "resize": "to 256x128 (h x w), bilinear"}
    return LoadedBackbone(NAME, model.eval(), path, layout, INPUT_HW, IMAGENET_MEAN, IMAGENET_STD,
                          FEATURE_DIM, 0, details)


def load_for_pipeline(weights: str | os.PathLike | None = None, **kwargs) -> LoadedBackbone:
    """OSNet that resizes whatever it is fed to 256 x 128, for pipelines that decode squares."""
    kwargs.setdefault("input_hw", INPUT_HW)
    return load_osnet(weights, **kwargs)
